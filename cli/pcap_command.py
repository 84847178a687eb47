"""``ja3svc pcap FILE...``: fingerprint every TLS hello in capture files.

Output goes to stdout (one record per hello, or a summary); counters, progress and errors go to
stderr so stdout stays machine-readable. Exit status: 0 every input read completely, 2 an input
was damaged or truncated (what was readable is still output), 1 usage error or an input that
is unreadable or not a capture.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from ja3svc.capture.capture_file import NotACaptureError
from ja3svc.capture.pcap_run import (
    ENGINE_ENV,
    ENGINES,
    RunTotals,
    default_engine,
    fingerprint_stream,
    fingerprint_stream_native,
    native_module,
)
from ja3svc.cli.main import EXIT_DAMAGED, EXIT_OK, EXIT_USAGE
from ja3svc.cli.store_options import database_error_message, first_line

from ja3svc.dovecot import DEFAULT_PROFILE, PROFILE_CHOICES
from ja3svc.record import HelloRecord

if TYPE_CHECKING:
    from ja3svc.config.settings import Settings
    from ja3svc.store.dbapi import Target
    from ja3svc.store.sighting_writer import SightingWriter

# The output object of one hello: HelloRecord.as_dict() with the file and frame it came from.
OutputRow = dict[str, Any]
Emit = Callable[[OutputRow], None]

CSV_COLUMNS = (
    "file", "frame", "ts", "src", "sport", "dst", "dport", "transport", "hello", "index", "sni",
    "alpn", "tls_version", "ja3", "ja3_hash", "ja3n", "ja3n_hash", "ja4", "ja4_r", "ja3_dovecot",
    "ja3_dovecot_hash", "ja3s", "ja3s_hash",
)  # fmt: skip

# Files smaller than this finish before a progress bar would be worth drawing.
PROGRESS_MIN_BYTES = 32 << 20


def register(sub: Any) -> None:
    p = sub.add_parser(
        "pcap",
        help="fingerprint the TLS hellos in pcap/pcapng files",
        description="Read pcap or pcapng captures ('-' for standard input) and print one "
        "record per TLS ClientHello/ServerHello: JA3, JA3N, JA4, Dovecot's JA3 and JA3S.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="capture file, or - for stdin")
    p.add_argument(
        "--format", choices=("json", "csv", "table"), default="json",
        help="json: one object per line (default); csv: with a header row; table: for people",
    )  # fmt: skip
    p.add_argument(
        "--summary", action="store_true",
        help="print the distinct fingerprints with their counts instead of every hello",
    )  # fmt: skip
    p.add_argument(
        "--dovecot-profile", choices=PROFILE_CHOICES, default=None,
        help="OpenSSL known-extension set for the ja3_dovecot column: the OpenSSL the Dovecot "
        f"links (default {DEFAULT_PROFILE}, i.e. 3.2-3.5 as distribution packages of Dovecot "
        "2.4; openssl-3.0 for builds on Debian 12 or Ubuntu 22.04/24.04; or the configured "
        "one). JSON output always carries every profile's hash in ja3_dovecot_hashes",
    )  # fmt: skip
    p.add_argument(
        "--engine", choices=ENGINES, default=None,
        help="native: the Rust engine (default when built); python: the pure-Python reference "
        f"engine, for comparison (also ${ENGINE_ENV})",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="never draw a progress bar")
    p.add_argument("-q", "--quiet", action="store_true", help="no counters on stderr")
    p.add_argument(
        "--store", action="store_true",
        help="also record every hello as a sighting in the fingerprint database",
    )  # fmt: skip
    p.add_argument("--database-url", help="database URL for --store (default: settings)")
    p.add_argument("--sensor", help="sensor name recorded with --store (default: file:NAME)")
    p.set_defaults(func=run)


def _configured() -> bool:
    """Whether any setting is given (a config file or a JA3SVC_ variable other than the
    engine's): without one the settings are the defaults, and loading them (pydantic, a sixth
    of a second) is skipped, which keeps `ja3svc pcap`, with `--store` too, fast on a small
    capture (`--store` then takes its defaults from ja3svc.config.defaults)."""
    if os.environ.get("JA3SVC_CONFIG"):
        return True
    return any(k.startswith("JA3SVC_") and k != ENGINE_ENV for k in os.environ)


def run(args: argparse.Namespace) -> int:
    settings: Settings | None = None
    if _configured():
        from ja3svc.config.settings import load_settings

        overrides = {"database_url": args.database_url} if args.database_url else {}
        try:
            settings = load_settings(**overrides)
        except (OSError, ValueError) as exc:  # TOML and validation errors are ValueErrors
            if args.store:
                print(f"ja3svc pcap: bad settings: {exc}", file=sys.stderr)
                return EXIT_USAGE
            # Offline analysis needs no settings: say so, and go on with the defaults.
            print(f"ja3svc pcap: ignoring bad settings ({exc})", file=sys.stderr)
            settings = None
    profile = args.dovecot_profile or (
        settings.dovecot_openssl_profile if settings else DEFAULT_PROFILE
    )
    engine = args.engine or default_engine()
    if engine == "native" and native_module() is None:
        if args.engine or os.environ.get(ENGINE_ENV):
            print(
                "ja3svc pcap: the Rust engine is not built in this install (it needs a Rust "
                "toolchain at install time); use --engine python",
                file=sys.stderr,
            )
            return EXIT_USAGE
        engine = "python"
    if engine == "python" and args.engine is None and native_module() is None:
        # The extension is missing: say once why this run is slower.
        print(
            "ja3svc pcap: the Rust engine is not built in this install (no Rust toolchain at "
            "install time); using the slower pure-Python engine",
            file=sys.stderr,
        )
    store = None
    if args.store:
        try:
            store = _Store(args, _StoreTarget.of(settings, args.database_url))
        except _StoreRefused as exc:
            print(f"ja3svc pcap: {exc}", file=sys.stderr)
            return EXIT_USAGE
    refused: tuple[type[BaseException], ...] = (store.error,) if store is not None else ()
    try:
        return _process(args, engine, profile, store)
    except refused as exc:
        # A batch the database refused (an outage is spooled instead): say which, once.
        print(f"ja3svc pcap: {database_error_message(exc)}", file=sys.stderr)
        with contextlib.suppress(*refused):
            store.close()  # type: ignore[union-attr]
        return EXIT_USAGE


def _process(args: argparse.Namespace, engine: str, profile: str, store: _Store | None) -> int:
    out = sys.stdout
    emit, finish = _output(args.format, args.summary, out)
    # The default output on the Rust engine: Rust writes the JSON lines itself.
    native_json = engine == "native" and args.format == "json" and not args.summary
    line_buffered = out.isatty()

    def write_json(text: str) -> None:
        out.write(text)
        if line_buffered:
            out.flush()

    totals = RunTotals()
    status = EXIT_OK
    stdin_used = False
    for name in args.files:
        if name == "-":
            if stdin_used:
                print("ja3svc pcap: '-' given twice", file=sys.stderr)
                return EXIT_USAGE
            stdin_used = True
        try:
            stream = sys.stdin.buffer if name == "-" else open(name, "rb")
        except OSError as exc:
            print(f"ja3svc pcap: cannot read {name}: {exc.strerror or exc}", file=sys.stderr)
            status = EXIT_USAGE
            continue
        label = "<stdin>" if name == "-" else name
        writer = None if store is None else store.writer_for(label)
        store_add = None if writer is None else writer.add

        def sink(
            s: HelloRecord,
            frame: int,
            label: str = label,
            store_add: Callable[[HelloRecord], None] | None = store_add,
        ) -> None:
            emit({"file": label, "frame": frame, **s.as_dict()})
            if store_add is not None:
                store_add(s)

        progress = _progress_bar(stream, label) if not args.no_progress else None
        damaged_before = len(totals.damaged)
        try:
            if engine == "python":
                fingerprint_stream(stream, label, sink, totals, progress, dovecot_profile=profile)
            else:
                fingerprint_stream_native(
                    stream, label, totals, profile,
                    write_json=write_json if native_json else None,
                    sink=None if native_json else emit,
                    # The Rust engine builds the database rows: a list a chunk.
                    store=None if writer is None else writer.add_rows,
                    store_sensor="" if writer is None else writer.sensor,
                    progress=progress, path=None if name == "-" else name,
                )  # fmt: skip
        except NotACaptureError as exc:
            print(f"ja3svc pcap: {exc}", file=sys.stderr)  # the message names the file
            status = EXIT_USAGE
            continue
        except BrokenPipeError:
            # The reader of our output has gone (`ja3svc pcap big.pcap | head`): not damage.
            return _output_closed(store)
        except OSError as exc:
            print(f"ja3svc pcap: error reading {label}: {exc}", file=sys.stderr)
            status = max(status, EXIT_DAMAGED) if status != EXIT_USAGE else status
            continue
        finally:
            if progress is not None:
                progress.close()
            if name != "-":
                stream.close()
        out.flush()
        for message in totals.damaged[damaged_before:]:
            print(f"ja3svc pcap: {message}", file=sys.stderr)
            if status == EXIT_OK:
                status = EXIT_DAMAGED
    try:
        finish()
        out.flush()
    except BrokenPipeError:
        return _output_closed(store)
    if store is not None:
        store.close()
    if not args.quiet:
        _print_totals(totals, sys.stderr)
        if store is not None:
            store.print_totals(sys.stderr)
    return status


# --- output formats ----------------------------------------------------------------------


def _output_closed(store: _Store | None) -> int:
    """Stdout's reader has exited: keep what was stored, and say nothing more."""
    if store is not None:
        store.close()
    # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_OK


def _output(fmt: str, summary: bool, out: TextIO) -> tuple[Emit, Callable[[], None]]:
    if summary:
        return _summary_output(fmt, out)
    if fmt == "csv":
        writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()

        def emit_csv(row: OutputRow) -> None:
            row = dict(row)
            row["alpn"] = ";".join(row["alpn"])
            writer.writerow(row)

        return emit_csv, lambda: None
    if fmt == "table":
        return _table_output(out)
    return _json_lines(out), lambda: None


def _json_lines(out: TextIO) -> Emit:
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    line_buffered = out.isatty()

    def emit_json(d: OutputRow) -> None:
        out.write(dumps(d) + "\n")
        if line_buffered:
            out.flush()

    return emit_json


def utc_time(ts: float) -> str:
    """ISO 8601 with microseconds and the zone: what a person can compare across machines."""
    # Rounded, not truncated: 0.968745 is 0.96874499... as a float.
    seconds, micros = divmod(round(ts * 1_000_000), 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


def _table_output(out: TextIO) -> tuple[Emit, Callable[[], None]]:
    row = "{:<27} {:<5} {:<6} {:<4} {:<46} {:<32} {:<36} {}\n"
    out.write(
        row.format("time (UTC)", "proto", "hello", "#", "connection", "ja3/ja3s hash", "ja4", "sni")
    )

    def emit(d: OutputRow) -> None:
        conn = f"{_hostport(d['src'], d['sport'])} > {_hostport(d['dst'], d['dport'])}"
        out.write(
            row.format(
                utc_time(d["ts"]),
                d["transport"],
                d["hello"],
                d["index"],
                conn,
                d.get("ja3_hash") or d.get("ja3s_hash"),
                d.get("ja4") or "",
                d.get("sni") or "",
            )
        )

    return emit, lambda: None


SUMMARY_COLUMNS = ("count", "hello", "hash", "ja4", "example")


def _summary_output(fmt: str, out: TextIO) -> tuple[Emit, Callable[[], None]]:
    counts: Counter[tuple[str, str, str]] = Counter()
    examples: dict[tuple[str, str, str], dict[str, Any]] = {}

    def emit(d: OutputRow) -> None:
        key = (d["hello"], d.get("ja3_hash") or d["ja3s_hash"], d.get("ja4") or "")
        counts[key] += 1
        examples.setdefault(key, d)

    def rows() -> list[OutputRow]:
        out_rows = []
        for key, n in counts.most_common():
            d = examples[key]
            example = d.get("sni") or d.get("ja3") or d.get("ja3s") or ""
            out_rows.append(dict(zip(SUMMARY_COLUMNS, (n, *key, example), strict=True)))
        return out_rows

    def finish_table() -> None:
        out.write(
            f"{'count':>7}  {'hello':<6} {'ja3/ja3s hash':<32} {'ja4':<36} example sni / string\n"
        )
        for r in rows():
            out.write(
                f"{r['count']:>7}  {r['hello']:<6} {r['hash']:<32} {r['ja4']:<36} {r['example']}\n"
            )

    def finish_csv() -> None:
        writer = csv.DictWriter(out, SUMMARY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows())

    def finish_json() -> None:
        emit_json = _json_lines(out)
        for r in rows():
            emit_json(r)

    finish = {"table": finish_table, "csv": finish_csv}.get(fmt, finish_json)
    return emit, finish


def _hostport(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


# --- progress and totals -----------------------------------------------------------------


class _ProgressBar:
    def __init__(self, total: int, label: str) -> None:
        self.total = total
        self.label = os.path.basename(label)
        self.last = 0.0
        self.drawn = False

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.25:
            return
        self.last = now
        frac = min(done / self.total, 1.0) if self.total else 0.0
        width = 30
        bar = "#" * int(frac * width)
        sys.stderr.write(f"\r{self.label[:30]:<30} [{bar:<{width}}] {frac * 100:5.1f}%")
        sys.stderr.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            sys.stderr.write("\r" + " " * 72 + "\r")
            sys.stderr.flush()


def _progress_bar(stream: io.BufferedIOBase | Any, label: str) -> _ProgressBar | None:
    if not sys.stderr.isatty():
        return None
    try:
        size = os.fstat(stream.fileno()).st_size
    except (OSError, AttributeError, io.UnsupportedOperation):
        return None
    if size < PROGRESS_MIN_BYTES:
        return None
    return _ProgressBar(size, label)


def _print_totals(t: RunTotals, err: TextIO) -> None:
    rate = t.packets / t.seconds if t.seconds else 0.0
    err.write(
        f"packets {t.packets}  bytes {t.bytes}  flows {t.flows}  hellos {t.hellos} "
        f"(client {t.counters['hellos.client']}, server {t.counters['hellos.server']})  "
        f"{t.seconds:.2f}s  {rate:,.0f} packets/s\n"
    )
    problems = sorted((k, v) for k, v in t.counters.items() if not k.startswith("hellos.") and v)
    if problems:
        err.write("not fingerprinted: " + ", ".join(f"{k} {v}" for k, v in problems) + "\n")


# --- optional database sink -------------------------------------------------------------


# Sightings per transaction for `pcap --store`: large enough that a commit's cost stops
# mattering, small enough that the database starts early and the last batch, written after
# the capture is read, is short (10,000 left 0.2 s of writing after the engine's end on the
# benchmark capture; 2,500 about a third less, and the same total).
PCAP_STORE_BATCH = 2_500


class _StoreRefused(Exception):
    """``--store`` cannot work: the message is the one line the user sees."""


class _StoreTarget(NamedTuple):
    """The settings `--store` uses: from the loaded settings, or, with nothing configured,
    their defaults (``ja3svc.config.defaults``), without loading the settings machinery."""

    database_url: str
    auto_upgrade: bool | None
    batch_size: int
    spool_dir: Path

    @classmethod
    def of(cls, settings: Settings | None, database_url: str | None) -> _StoreTarget:
        if settings is not None:  # --database-url is among its overrides
            return cls(
                settings.resolved_database_url(),
                settings.store.auto_upgrade,
                settings.store.batch_size,
                settings.resolved_spool_dir(),
            )
        from ja3svc.config import defaults

        data_dir = defaults.default_data_dir()
        return cls(
            database_url or defaults.default_database_url(data_dir),
            None,
            defaults.STORE_BATCH_SIZE,
            defaults.default_spool_dir(data_dir),
        )


class _Store:
    """Records each hello as a sighting through the store's batched, spooling writer.

    A database already at the schema's head (every run but a fresh SQLite file's first, or one
    after an upgrade of ja3svc) is checked and written through the driver alone: SQLAlchemy,
    which the migrations and the error reporting of an unusual URL need, costs 0.2 s to import.
    """

    def __init__(self, args: argparse.Namespace, options: _StoreTarget) -> None:
        from ja3svc.store.dbapi import Target

        self.options = options
        self.target = Target.parse(options.database_url)
        if self.target is None or not self._ready(self.target):
            self.target = self._open(options.database_url)
        self.error = self.target.errors()[0]  # what the writers raise for a refused batch
        self.sensor = args.sensor
        self.writers: list[Any] = []

    @staticmethod
    def _ready(target: Target) -> bool:
        """Whether the driver alone will do: the database is at the schema's head, or it is a
        PostgreSQL server that cannot be reached (its sightings are spooled, and replayed by a
        later writer once it is back; said here once)."""
        from ja3svc.store.dbapi import head_revision, schema_revision

        if not target.pg and not Path(target.args[0]).is_file():
            return False  # created and migrated through SQLAlchemy
        error, outage = target.errors()
        try:
            conn = target.connect()
        except error as exc:
            if not (target.pg and isinstance(exc, outage)):
                return False  # a SQLite file that cannot be opened: the full path says why
            print(
                f"ja3svc pcap: database {target.display} unreachable: {first_line(exc)}; "
                "sightings are spooled",
                file=sys.stderr,
            )
            return True
        try:
            return schema_revision(conn, target.pg) == head_revision()
        except error:
            return False
        finally:
            conn.close()

    def _open(self, url: str) -> Target:
        """Open the database through SQLAlchemy: migrate a SQLite file (or any database the
        settings say to upgrade), refuse a schema that is out of date, and say what is wrong
        with a URL."""
        from ja3svc.store.database import Database, DatabaseUnavailable
        from ja3svc.store.dbapi import Target

        try:
            db = Database.from_url(url, upgrade=self.options.auto_upgrade)
            try:
                db.check()
            except DatabaseUnavailable as exc:
                # Outages lose nothing: the writer spools until the database is back.
                print(f"ja3svc pcap: {first_line(exc)}; sightings are spooled", file=sys.stderr)
            else:
                db.require_head()
            try:
                return Target.of_engine(db.engine)
            finally:
                db.dispose()
        except ValueError as exc:  # an in-memory SQLite database
            raise _StoreRefused(str(exc)) from None
        except Exception as exc:
            message = database_error_message(exc)
            if message is None:
                raise
            raise _StoreRefused(message) from None

    def writer_for(self, label: str) -> SightingWriter:
        """What stores the hellos of one input (its own writer: the sensor names the file)."""
        from ja3svc.store.sighting_writer import SightingWriter

        writer = SightingWriter(
            self.target,
            sensor=self.sensor or f"file:{os.path.basename(label)}",
            # Offline, nothing waits for a sighting: bigger batches than the live capture's.
            batch_size=max(self.options.batch_size, PCAP_STORE_BATCH),
            spool_dir=self.options.spool_dir,
        )
        self.writers.append(writer)
        return writer

    def close(self) -> None:
        for writer in self.writers:
            writer.close()

    def print_totals(self, err: TextIO) -> None:
        """What each input's writer did: new sightings, those already stored (a capture stored
        again), and those spooled because the database could not be reached."""
        for w in self.writers:
            s = w.stats
            line = (
                f"sightings of {w.sensor} in {self.target.display}: {s.stored} stored, "
                f"{s.duplicates} already there"
            )
            if s.replayed:
                line += f", {s.replayed} replayed from the spool"
            if s.spooled:
                line += f", {s.spooled} spooled until the database is back"
            err.write(line + "\n")
