"""Dovecot 2.3 test instances shared by the end-to-end tests (test_dovecot_e2e.py,
test_correlation_e2e.py): a private configuration in a temporary directory (own base_dir,
listeners on a chosen address, a self-signed certificate, a passwd-file with test users) asking
a ja3svc policy service over HTTP.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

DH_FILE = Path("/usr/share/dovecot/dh.pem")

DOVECOT_CONF = """\
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = imap
listen = {listen}
ssl = yes
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
ssl_dh = <{dh}
disable_plaintext_auth = yes
auth_mechanisms = plain login
mail_location = maildir:{d}/home/%u/Maildir
# Failed logins from 127.0.0.1 would otherwise add Dovecot's own penalty delay to the
# following logins and spoil the tarpit measurement.
login_trusted_networks = 127.0.0.0/8
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = {listen}
    port = {imap}
  }}
  inet_listener imaps {{
    address = {listen}
    port = {imaps}
    ssl = yes
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
auth_policy_server_url = http://127.0.0.1:{policy}/policy?
auth_policy_server_api_header = X-API-Key: {key}
auth_policy_hash_nonce = nonce123
auth_policy_request_attributes = login=%{{requested_username}} pwhash=%{{hashed_password}} \
remote=%{{rip}} device_id=%{{client_id}} protocol=%s session_id=%{{session}} \
conn/real_rip=%{{real_rip}} conn/real_rport=%{{real_rport}} conn/lip=%{{real_lip}} \
conn/lport=%{{real_lport}}
"""


def prepare_dovecot_files(workdir: Path, users: Iterable[str], password: str) -> None:
    """Certificate, key, passwd-file and a home directory the imap process (nobody) can use."""
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=localhost", "-keyout", str(workdir / "key.pem"),
            "-out", str(workdir / "cert.pem"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    (workdir / "passwd").write_text("".join(f"{u}:{{PLAIN}}{password}::::::\n" for u in users))
    home = workdir / "home"
    home.mkdir()
    home.chmod(0o777)  # the imap process runs as nobody


def dovecot_conf(
    workdir: Path,
    policy_port: int,
    api_key: str,
    *,
    imap: int,
    imaps: int,
    listen: str = "127.0.0.1",
) -> str:
    """dovecot.conf text: IMAP (STARTTLS) and IMAPS on ``listen``; the policy service on
    127.0.0.1:``policy_port`` with the Dovecot 2.3 correlation attributes."""
    return DOVECOT_CONF.format(
        d=workdir, dh=DH_FILE, policy=policy_port, key=api_key, imap=imap, imaps=imaps,
        listen=listen,
    )  # fmt: skip
