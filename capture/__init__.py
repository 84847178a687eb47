"""Capture files and live interfaces into the fingerprint engine.

``read_hellos(path)`` is the library entry point: every hello of a capture file.
"""

from ja3svc.capture.hellos import read_hellos

__all__ = ["read_hellos"]
