"""Names shared by the database, the list formats and the CLI, without importing SQLAlchemy.

The command line builds every sub-command's parser on each start; keeping these here spares
`ja3svc pcap` the cost of loading the ORM just to list the fingerprint kinds.
"""

from __future__ import annotations

FINGERPRINT_KINDS = ("ja3", "ja3n", "ja4", "ja3s", "ja3_dovecot")
LABEL_ACTIONS = ("allow", "deny", "tarpit", "none")
HELLO_KINDS = ("client", "server")

# Which keys of HelloRecord.as_dict() carry each fingerprint kind: (value key, full string key).
# The sighting writer and the queries share this table so a new kind is added in one place.
FINGERPRINT_FIELDS: dict[str, tuple[str, str]] = {
    "ja3": ("ja3_hash", "ja3"),
    "ja3n": ("ja3n_hash", "ja3n"),
    "ja4": ("ja4", "ja4_r"),
    "ja3_dovecot": ("ja3_dovecot_hash", "ja3_dovecot"),
    "ja3s": ("ja3s_hash", "ja3s"),
}
