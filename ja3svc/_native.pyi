"""Type stubs of the extension module built from native/python (the Rust engine's binding)."""

from typing import Any

# True once every part of the hot path (QUIC and DTLS included) is in Rust.
COMPLETE: bool
# The columns of the database rows PcapRun builds for ``store_sensor`` (the sighting writer's
# ROW_COLUMNS).
STORE_COLUMNS: list[str]

class PcapRun:
    """One capture through one Rust engine: feed the capture's bytes in chunks, then finish.

    With ``json=True`` every call returns the JSON lines (each ending in a newline) of the
    hellos the bytes completed, exactly as ``ja3svc pcap`` prints them; with ``json=False`` a
    list of dicts ``{"file": label, "frame": n, **HelloSighting.as_dict(dovecot_profile)}``.
    With a ``store_sensor`` every call returns the pair (that, list of the hellos' database
    rows for that sensor: tuples in ``STORE_COLUMNS`` order).
    The GIL is released while the engine works.
    """

    def __init__(
        self,
        label: str,
        dovecot_profile: str,
        json: bool,
        max_flows: int = 200_000,
        idle_timeout: float = 300.0,
        store_sensor: str | None = None,
    ) -> None: ...
    def feed(self, chunk: bytes) -> Any: ...
    def finish(self) -> Any: ...
    def abandon(self) -> None:
        """The input broke off: end the engine without the format's end-of-input checks."""
    @property
    def error(self) -> tuple[str, str] | tuple[str, int, str] | None:
        """None, ("not_a_capture", message) or ("damaged", offset, reason)."""
    @property
    def format(self) -> str: ...
    @property
    def packets_read(self) -> int: ...
    @property
    def bytes_read(self) -> int: ...
    def counters(self) -> dict[str, int]: ...
    def flow_stats(self) -> dict[str, int]: ...

class LiveRun:
    """One live capture through one Rust engine, fed a whole TPACKET_V3 ring block per call
    (or, on the recv path, a list of packets); hellos come back as dicts shaped like
    ``PcapRun``'s (``file`` is "live"). The GIL is released while the engine works."""

    def __init__(
        self, dovecot_profile: str, max_flows: int = 200_000, idle_timeout: float = 300.0
    ) -> None: ...
    def feed_block(
        self, block: bytes, linktype: int
    ) -> tuple[list[dict[str, Any]], int, int, int, bool]:
        """(hellos, packets, wire bytes, truncated packets, block malformed)."""
    def feed_packets(
        self, packets: list[tuple[float, int, bytes, int]]
    ) -> list[dict[str, Any]]: ...
    def finish(self) -> list[dict[str, Any]]: ...
    def counters(self) -> dict[str, int]: ...
    def flow_stats(self) -> dict[str, int]:
        """flows, evicted_full, expired_idle, closed, and active (flows in the table now)."""
