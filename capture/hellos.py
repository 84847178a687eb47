"""Every hello of a capture file, as the engine's ``HelloRecord`` objects (the library's IO).

The core fingerprints bytes and frames; reading files is this package's job.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ja3svc.capture.capture_file import open_capture

from ja3svc.dovecot import DEFAULT_PROFILE
from ja3svc.record import HelloRecord

__all__ = ["read_hellos"]


def read_hellos(
    source: str | Path | BinaryIO, *, dovecot_profile: str = DEFAULT_PROFILE
) -> Iterator[HelloRecord]:
    """The ClientHellos and ServerHellos of a pcap/pcapng file (gzip-compressed too), in order.

    ``source`` is a path or a binary stream. Raises ``CaptureError`` (``NotACaptureError``,
    ``CaptureDamagedError`` after the hellos before the damage) as ``ja3svc pcap`` reports them.
    """
    if isinstance(source, str | Path):
        with open(source, "rb") as stream:
            yield from _hellos(stream, str(source), dovecot_profile)
    else:
        yield from _hellos(source, getattr(source, "name", "<stream>"), dovecot_profile)


def _hellos(stream: BinaryIO, name: str, dovecot_profile: str) -> Iterator[HelloRecord]:
    from ja3svc.engine import FingerprintEngine  # not at import: see ja3svc/__init__.py

    engine = FingerprintEngine(dovecot_profile=dovecot_profile)
    feed = engine.feed_frame
    for ts, linktype, frame, wire_length in open_capture(stream, name):
        found = feed(ts, linktype, frame, wire_length)
        if found:
            yield from found
    engine.finish()
