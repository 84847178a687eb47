"""Local spool of sighting batches the database could not take, replayed when it is back.

One JSON-lines file per writer (``<sensor>.<pid>.<random>.jsonl``), each line
``{"sensor": ..., "record": {...}}`` with ``record`` exactly as given to the writer. Appends are
fsync'd before the writer moves on, so an acknowledged sighting survives a crash of the process.

Several writers may share a spool directory (two ``ja3svc pcap --store`` runs, a capture worker
restarting): every access holds an exclusive ``flock`` on the file, a replayer removes a file
only after its content is in the database, and an appender that finds its file removed or
replaced under it starts a new one. Replaying twice is harmless because the sighting insert is
idempotent.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

SpoolItem = tuple[str, dict[str, Any]]  # (sensor, record)

SUFFIX = ".jsonl"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60] or "sensor"


@contextmanager
def _locked(path: Path, mode: str, *, blocking: bool = True) -> Iterator[IO[str] | None]:
    """Open ``path`` and hold an exclusive lock; yield None if it vanished or is busy."""
    try:
        fh = open(path, mode, encoding="utf-8")
    except FileNotFoundError:
        yield None
        return
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield None
            return
        # Between open and lock another process may have replayed and removed (or replaced)
        # the file; writing to that orphaned inode would lose data.
        try:
            same = os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino
        except FileNotFoundError:
            same = False
        yield fh if same else None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """The spool file of one writer, plus replay of any spool file in the directory."""

    def __init__(self, directory: Path, sensor: str) -> None:
        self.directory = Path(directory)
        self._prefix = _safe(sensor)
        self.path = self._new_path()

    def _new_path(self) -> Path:
        return self.directory / f"{self._prefix}.{os.getpid()}.{uuid.uuid4().hex[:8]}{SUFFIX}"

    def append(self, items: list[SpoolItem]) -> None:
        if not items:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        data = "".join(
            json.dumps({"sensor": s, "record": r}, separators=(",", ":")) + "\n" for s, r in items
        )
        while True:
            created = not self.path.exists()
            if created:
                self.path.touch()
            with _locked(self.path, "a") as fh:
                if fh is None:  # replayed and removed under us: start a fresh file
                    self.path = self._new_path()
                    continue
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if created:
                _fsync_dir(self.directory)
            return

    def has_data(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except FileNotFoundError:
            return False

    def files(self) -> list[Path]:
        """Every spool file in the directory, oldest first (replay order across writers)."""
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if p.name.endswith(SUFFIX)]
        return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


class Replay:
    """A spool file being replayed (see :func:`replaying`): its ``items``, in order, and how
    many of them are in the database (``done``), set by the replayer as it goes."""

    __slots__ = ("done", "items")

    def __init__(self, items: list[SpoolItem]) -> None:
        self.items = items
        self.done = 0

    def batches(self, size: int) -> Iterator[list[SpoolItem]]:
        """The items, ``size`` at a time; a batch counts as ``done`` once the next one is asked
        for (its write returned), so a write that raises leaves it for the next attempt."""
        for start in range(0, len(self.items), size):
            yield self.items[start : start + size]
            self.done = min(start + size, len(self.items))


@contextmanager
def replaying(path: Path, *, blocking: bool = True) -> Iterator[Replay | None]:
    """Hold a spool file locked while its items are written; None if it vanished, or is
    locked by another replayer and ``blocking`` is false.

    On a normal exit the file is removed; on an exception, what was written (``done``) stays
    written and the rest is kept in the file for the next attempt. For a replayer that writes
    synchronously (:func:`replay_file`) or awaits its writes (the policy writer on PostgreSQL).
    """
    with _locked(path, "r+", blocking=blocking) as fh:
        if fh is None:
            yield None
            return
        items: list[SpoolItem] = []
        for lineno, line in enumerate(fh, 1):
            if not line.endswith("\n"):
                # A crash mid-append leaves a partial last line; its batch was never
                # acknowledged to the caller, so dropping it loses nothing promised.
                log.warning("%s:%d: incomplete line of an interrupted write, ignored", path, lineno)
                break
            try:
                obj = json.loads(line)
                items.append((str(obj["sensor"]), dict(obj["record"])))
            except (ValueError, KeyError, TypeError):
                log.warning("%s:%d: unreadable spool line, ignored", path, lineno)
        replay = Replay(items)
        try:
            yield replay
        except BaseException:
            if replay.done:
                _rewrite(path, items[replay.done :])
            raise
        path.unlink()


def replay_file(
    path: Path,
    write: Callable[[list[SpoolItem]], None],
    batch_size: int,
    *,
    blocking: bool = True,
) -> int:
    """Write a spool file's batches in order, then remove it; return the items written.

    ``write`` raises on failure: what was written stays written (the insert is idempotent),
    the rest is kept in the file for the next attempt. A file locked by another replayer is
    skipped when ``blocking`` is false.
    """
    with replaying(path, blocking=blocking) as replay:
        if replay is None:
            return 0
        for batch in replay.batches(batch_size):
            write(batch)
        return replay.done


def _rewrite(path: Path, rest: list[SpoolItem]) -> None:
    """Replace ``path`` by the items not yet written (atomically, via rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for s, r in rest:
            out.write(json.dumps({"sensor": s, "record": r}, separators=(",", ":")) + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
