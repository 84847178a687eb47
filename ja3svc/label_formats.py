"""Readers and writers of fingerprint label lists: text lines in, label rows out (and back).

Pure functions, no files and no database: ``ja3svc labels import|export`` and the store glue
(``store.labels``) do the IO. Readers never stop at a bad line: comments, blank lines, trailing
spaces and stray quotes are tolerated; a value that is not a valid fingerprint is reported with
its line number and skipped. Formats (see ../shared/spec/fingerprints.md):

- ``sslbl``: abuse.ch SSLBL JA3 CSV, ``ja3_md5,Firstseen,Lastseen,Listingreason``, ``#`` comments;
- ``salesforce``: salesforce/ja3 ``osx-nix-ja3.csv``, ``md5,"name1,name2"`` after a quoted
  multi-line copyright record;
- ``trisul``: Trisul ``ja3fingerprint.json``, one JSON object (desc, ja3_hash, ja3_str) per line;
- ``foxio``: FoxIO ``ja4plus-mapping.csv``, a header row naming ``Application,Library,Device,OS,
  ...,ja4,...``; only the JA4 (TLS client) column is imported;
- ``ja3svc-csv`` / ``ja3svc-json``: this project's own lossless export formats.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ja3svc.ja3 import md5_hex
from ja3svc.vocabulary import (
    LABEL_TEXT_LIMITS,
    InvalidLabel,
    check_label,
    fingerprint_value,
)

JA3_STRING_RE = re.compile(r"\d+,[\d-]*,[\d-]*,[\d-]*,[\d-]*")
# SSLBL's first/last-seen columns; no other list has a timestamp in its second column.
_TIMESTAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?")
# What list publishers wrap values in by accident: spaces, quotes, a stray separator.
_JUNK = " \t\r\n\"',;"


@dataclass(frozen=True, slots=True)
class LabelRow:
    """One label as read from a list; None means "not given" (the importer's default applies)."""

    kind: str
    value: str
    client_name: str | None = None
    category: str | None = None
    action: str | None = None
    tarpit_seconds: int | None = None
    source: str | None = None
    confidence: int | None = None
    note: str | None = None
    created_at: float | None = None
    updated_at: float | None = None


LABEL_FIELDS = tuple(f.name for f in fields(LabelRow))


@dataclass(frozen=True, slots=True)
class Problem:
    line: int  # 1-based line of the input (entry number for a JSON array document)
    message: str
    where: str = "line"

    def __str__(self) -> str:
        return f"{self.where} {self.line}: {self.message}"


@dataclass
class ParseResult:
    rows: list[LabelRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # Set when the input is not this format at all: nothing of it may be imported.
    refused: Problem | None = None
    # What the file holds that is not imported (e.g. FoxIO's JA4S column), for the user.
    notes: list[str] = field(default_factory=list)

    def refuse(self, line: int, message: str) -> ParseResult:
        self.refused = Problem(line, message)
        self.rows.clear()
        return self


@dataclass(frozen=True, slots=True)
class ImportFormat:
    name: str
    parse: Callable[[Iterable[str]], ParseResult]
    source: str  # default label source for rows that do not name one
    confidence: int  # default confidence: how far this list is trusted on its own
    description: str


def normalize_value(kind: str, raw: str) -> str | None:
    """The canonical form of a fingerprint value in a list (wrapping junk dropped), or None if
    it is not one of ``kind`` (``_invalid`` says why)."""
    try:
        return fingerprint_value(kind, raw.strip(_JUNK))
    except InvalidLabel:
        return None


def check_row(row: LabelRow) -> LabelRow:
    """``row`` with its value in canonical form, or InvalidLabel with the reason where the
    label validator (``ja3svc.vocabulary.check_label``) refuses it."""
    value = check_label(
        row.kind,
        row.value,
        action=row.action,
        client_name=row.client_name,
        category=row.category,
        source=row.source,
        confidence=row.confidence,
        tarpit_seconds=row.tarpit_seconds,
    )
    return row if value == row.value else replace(row, value=value)


def _invalid(kind: str, raw: str) -> str:
    """The validator's reason for refusing ``raw`` as a value of ``kind``, as a problem line."""
    try:
        fingerprint_value(kind, raw.strip(_JUNK))
    except InvalidLabel as exc:
        return f"{exc}, skipped"
    raise AssertionError(f"{raw!r} is a valid {kind} value")


def _skipped(exc: Exception) -> str:
    msg = str(exc)
    if msg.endswith("skipped"):
        return msg
    # The validator's reasons read like the readers' own ("invalid MD5 hash 'x', skipped").
    return f"{msg}, skipped" if isinstance(exc, InvalidLabel) else f"{msg}; skipped"


def _text(raw: Any) -> str | None:
    if raw is None:
        return None
    s = str(raw).strip(_JUNK)
    return s or None


def _content_lines(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """(line number, stripped line) for lines that are neither blank nor ``#`` comments."""
    for n, line in enumerate(lines, 1):
        s = line.strip().lstrip("\ufeff")
        if s and not s.startswith("#"):
            yield n, s


class _NumberedLines:
    """Line iterator for csv.reader that remembers where the current record started."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._it = iter(lines)
        self.line = 0

    def __iter__(self) -> _NumberedLines:
        return self

    def __next__(self) -> str:
        self.line += 1
        return next(self._it)


def _csv_records(lines: Iterable[str], out: ParseResult) -> Iterator[tuple[int, list[str]]]:
    """CSV records with the line each starts on; skips blank and ``#`` comment records.

    A record the csv module cannot read is reported in ``out`` and skipped.
    """
    numbered = _NumberedLines(line.lstrip("\ufeff") for line in lines)
    reader = csv.reader(numbered, skipinitialspace=True)
    while True:
        start = numbered.line + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            out.problems.append(Problem(start, f"unreadable CSV ({exc}), skipped"))
            continue
        cells = [c.strip() for c in record]
        if not any(cells) or cells[0].startswith("#"):
            continue
        yield start, cells


# -- readers ----------------------------------------------------------------------------------


def parse_sslbl(lines: Iterable[str]) -> ParseResult:
    out = ParseResult()
    checked = False
    for n, cells in _csv_records(lines, out):
        if cells[0].lower().strip(_JUNK) == "ja3_md5":  # an uncommented header
            continue
        if not checked:
            # The first row decides whether this is SSLBL's list at all: hash, two timestamps.
            checked = True
            if len(cells) < 3 or not _TIMESTAMP_RE.fullmatch(cells[1]):
                return out.refuse(
                    n, "not an SSLBL row (ja3_md5,Firstseen,Lastseen,Listingreason expected)"
                )
        value = normalize_value("ja3", cells[0])
        if value is None:
            out.problems.append(Problem(n, _invalid("ja3", cells[0])))
            continue
        first = cells[1] if len(cells) > 1 else ""
        last = cells[2] if len(cells) > 2 else ""
        reason = _text(",".join(cells[3:])) if len(cells) > 3 else None
        seen = ", ".join(
            p for p in (first and f"first seen {first}", last and f"last seen {last}") if p
        )
        out.rows.append(
            LabelRow(
                kind="ja3",
                value=value,
                client_name=reason,
                category="malware",
                note=f"SSLBL listing: {reason or 'no reason given'}"
                + (f" ({seen})" if seen else ""),
            )
        )
    return out


def parse_salesforce(lines: Iterable[str]) -> ParseResult:
    out = ParseResult()
    first = True
    for n, cells in _csv_records(lines, out):
        was_first, first = first, False
        raw = cells[0]
        value = normalize_value("ja3", raw)
        if value is None:
            # The file opens with one quoted multi-line copyright record: not a data row.
            if was_first and (len(cells) == 1 or "copyright" in raw.lower()):
                continue
            if not out.rows and not out.problems:
                return out.refuse(n, 'not a salesforce row (md5,"name1,name2" expected)')
            out.problems.append(Problem(n, _invalid("ja3", raw)))
            continue
        if len(cells) >= 3 and _TIMESTAMP_RE.fullmatch(cells[1]):
            # An SSLBL row (hash, first seen, last seen, reason) would import dates as names.
            if not out.rows:
                return out.refuse(n, "an SSLBL row (dates after the hash), not salesforce's")
            out.problems.append(Problem(n, "dates after the hash (an SSLBL row?), skipped"))
            continue
        # The names column is itself comma-joined; unquoted it spills into more cells.
        names = [_text(x) for cell in cells[1:] for x in cell.split(",")]
        out.rows.append(
            LabelRow(kind="ja3", value=value, client_name=", ".join(x for x in names if x) or None)
        )
    return out


# A value may open with a stray `", ` left over from the list's generator; it is skipped.
_TRISUL_FIELD_RE = re.compile(r'"(desc|ja3_hash|ja3_str)"\s*:\s*"(?:"\s*,\s*)?([^"]*)')


def parse_trisul(lines: Iterable[str]) -> ParseResult:
    out = ParseResult()
    for n, line in _content_lines(lines):
        if not line.startswith("{"):
            # One JSON object per line: anything else is another list, or damage.
            if not out.rows and not out.problems:
                return out.refuse(n, "not a Trisul line (one JSON object per line expected)")
            out.problems.append(Problem(n, "not a JSON object, skipped"))
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError
        except ValueError:
            # Stray quotes and separators break some lines as JSON; the three fields are still
            # recognisable by name.
            obj = dict(_TRISUL_FIELD_RE.findall(line))
        raw_hash = str(obj.get("ja3_hash") or "")
        if not raw_hash:
            out.problems.append(Problem(n, "no ja3_hash in this line, skipped"))
            continue
        value = normalize_value("ja3", raw_hash)
        if value is None:
            out.problems.append(Problem(n, _invalid("ja3", raw_hash)))
            continue
        note = None
        # Not _text(): a JA3 string legitimately ends in commas (empty fields). Some strings
        # open with a stray `", ` and are whole after it.
        ja3_str = str(obj.get("ja3_str") or "").strip(" \t\r\n\"'").lstrip('", ')
        if ja3_str:
            if not JA3_STRING_RE.fullmatch(ja3_str):
                out.problems.append(Problem(n, f"malformed ja3_str {ja3_str!r} ignored"))
            elif md5_hex(ja3_str) != value:
                out.problems.append(Problem(n, "ja3_str does not hash to ja3_hash; string ignored"))
            else:
                note = f"JA3 string: {ja3_str}"
        out.rows.append(
            LabelRow(kind="ja3", value=value, client_name=_text(obj.get("desc")), note=note)
        )
    return out


def parse_foxio(lines: Iterable[str]) -> ParseResult:
    out = ParseResult()
    unsupported: dict[str, int] = {}
    _read_foxio(lines, out, unsupported)
    if unsupported and out.refused is None:
        out.notes.append(
            "not imported (ja3svc keeps the TLS client's ja4 only): "
            + ", ".join(f"{n} value(s) in column {c}" for c, n in unsupported.items())
        )
    return out


def _read_foxio(lines: Iterable[str], out: ParseResult, unsupported: dict[str, int]) -> None:
    header: list[str] | None = None
    for n, cells in _csv_records(lines, out):
        if header is None:
            header = [c.strip(_JUNK).lower() for c in cells]
            if "ja4" not in header or "application" not in header:
                out.refuse(
                    n, "not FoxIO's header (Application,Library,Device,OS,...,ja4,... expected)"
                )
                return
            continue
        row = {name: _text(cell) for name, cell in zip(header, cells, strict=False)}
        for name, cell in row.items():
            if cell and name.startswith("ja4") and name != "ja4":
                unsupported[name] = unsupported.get(name, 0) + 1
        raw = row.get("ja4")
        if raw is None:  # a row for another JA4+ method (ja4s, ja4h, ja4x, ...)
            continue
        value = normalize_value("ja4", raw)
        if value is None:
            out.problems.append(Problem(n, _invalid("ja4", raw)))
            continue
        parts = [row.get(c) for c in ("application", "library", "device", "os")]
        out.rows.append(
            LabelRow(
                kind="ja4",
                value=value,
                client_name=" / ".join(p for p in parts if p) or None,
                note=row.get("notes"),
            )
        )


def _project_row(obj: dict[str, Any]) -> LabelRow:
    """Validate one object of the project's own formats; raise ValueError with the reason
    (InvalidLabel from ``check_label`` for what the store would refuse)."""

    def number(name: str, cast: type = int) -> Any:
        raw = obj.get(name)
        if raw is None or (isinstance(raw, str) and not raw.strip(_JUNK)):
            return None
        try:
            v = cast(raw.strip(_JUNK) if isinstance(raw, str) else raw)
        except (TypeError, ValueError):
            raise ValueError(f"{name} {raw!r} is not a number") from None
        # Ranges are check_label's; only the times are this format's own.
        if cast is float and v < 0:
            raise ValueError(f"{name} {raw!r} out of range")
        return v

    kind = (_text(obj.get("kind")) or "").lower()
    action = (_text(obj.get("action")) or "").lower() or None
    client_name = _text(obj.get("client_name"))
    category = _text(obj.get("category"))
    source = _text(obj.get("source"))
    confidence = number("confidence")
    tarpit_seconds = number("tarpit_seconds")
    value = check_label(
        kind,
        str(obj.get("value") or "").strip(_JUNK),
        action=action,
        client_name=client_name,
        category=category,
        source=source,
        confidence=confidence,
        tarpit_seconds=tarpit_seconds,
    )
    return LabelRow(
        kind=kind,
        value=value,
        client_name=client_name,
        category=category,
        action=action,
        tarpit_seconds=tarpit_seconds,
        source=source,
        confidence=confidence,
        note=_text(obj.get("note")),
        created_at=number("created_at", float),
        updated_at=number("updated_at", float),
    )


def parse_project_csv(lines: Iterable[str]) -> ParseResult:
    out = ParseResult()
    header: list[str] | None = None
    for n, cells in _csv_records(lines, out):
        if header is None:
            header = [c.strip(_JUNK).lower() for c in cells]
            if "kind" not in header or "value" not in header:
                return out.refuse(n, "not a ja3svc-csv header (at least 'kind' and 'value')")
            continue
        try:
            out.rows.append(_project_row(dict(zip(header, cells, strict=False))))
        except ValueError as exc:
            out.problems.append(Problem(n, _skipped(exc)))
    return out


def parse_project_json(lines: Iterable[str]) -> ParseResult:
    out = ParseResult()
    text = "".join(lines)
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if doc is not None:
        entries = doc.get("labels") if isinstance(doc, dict) else doc
        if not isinstance(entries, list):
            return out.refuse(1, "not a JSON array of labels (or {'labels': [...]})")
        numbered: Iterable[tuple[int, Any]] = enumerate(entries, 1)
        where = "entry"
    else:
        # Not one JSON document: read it as JSON lines (our export puts one label per line),
        # so a damaged line costs that label only. It must still start like JSON.
        for n, line in _content_lines(text.splitlines()):
            if not line.startswith(("[", "{")):
                return out.refuse(n, "not JSON (a ja3svc-json export is a JSON array)")
            break
        numbered = _json_lines(text.splitlines(), out)
        where = "line"
    for n, obj in numbered:
        if (
            not out.rows
            and not out.problems
            and not (isinstance(obj, dict) and "kind" in obj and "value" in obj)
        ):
            return out.refuse(n, "not a ja3svc label (an object with 'kind' and 'value')")
        try:
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
            out.rows.append(_project_row(obj))
        except ValueError as exc:
            out.problems.append(Problem(n, _skipped(exc), where))
    return out


def _json_lines(lines: list[str], out: ParseResult) -> Iterator[tuple[int, Any]]:
    for n, line in _content_lines(lines):
        s = line.rstrip(",")
        if s in ("[", "]", "{", "}", ""):
            continue
        try:
            yield n, json.loads(s)
        except ValueError as exc:
            out.problems.append(Problem(n, f"not JSON ({exc.args[0]}); skipped"))


IMPORT_FORMATS: dict[str, ImportFormat] = {
    f.name: f
    for f in (
        ImportFormat("sslbl", parse_sslbl, "sslbl", 50, "abuse.ch SSLBL JA3 fingerprints CSV"),
        ImportFormat(
            "salesforce", parse_salesforce, "salesforce", 40, "salesforce/ja3 osx-nix-ja3.csv"
        ),
        ImportFormat(
            "trisul", parse_trisul, "trisul", 40, "Trisul ja3fingerprint.json (JSON lines)"
        ),
        ImportFormat("foxio", parse_foxio, "foxio", 60, "FoxIO ja4plus-mapping.csv (JA4 column)"),
        ImportFormat("ja3svc-csv", parse_project_csv, "import", 50, "this project's CSV export"),
        ImportFormat("ja3svc-json", parse_project_json, "import", 50, "this project's JSON export"),
    )
}


def merge_duplicates(rows: Iterable[LabelRow]) -> list[LabelRow]:
    """One row per (kind, value, source), in first-seen order.

    Lists repeat a fingerprint for several clients (FoxIO: one JA4 for many applications); the
    database keeps one label per source, so their names and notes are joined rather than the
    last one silently winning.
    """
    merged: dict[tuple[str, str, str | None], LabelRow] = {}
    for row in rows:
        key = (row.kind, row.value, row.source)
        prev = merged.get(key)
        if prev is None:
            merged[key] = row
            continue
        merged[key] = replace(
            row,
            client_name=_join(
                prev.client_name, row.client_name, "; ", LABEL_TEXT_LIMITS["client_name"]
            ),
            note=_join(prev.note, row.note, "; "),
        )
    return list(merged.values())


def _join(a: str | None, b: str | None, sep: str, limit: int | None = None) -> str | None:
    """``a`` and ``b`` joined, once each; with a ``limit``, names that would not fit are left
    out (the label validator refuses a longer client name, and one list's many names for a
    single fingerprint must not cost the fingerprint its label)."""
    if not a or not b:
        return a or b
    parts = a.split(sep)
    if b in parts or (limit is not None and len(a) + len(sep) + len(b) > limit):
        return a
    return a + sep + b


# -- writers ----------------------------------------------------------------------------------

EXPORT_FORMATS = ("ja3svc-json", "ja3svc-csv", "suricata", "zeek")


def render_project_csv(rows: Iterable[LabelRow]) -> Iterator[str]:
    yield ",".join(LABEL_FIELDS) + "\r\n"
    buf = io.StringIO()
    writer = csv.writer(buf)
    for row in rows:
        writer.writerow(["" if v is None else v for v in asdict(row).values()])
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()


def render_project_json(rows: Iterable[LabelRow]) -> Iterator[str]:
    """A JSON array with one label per line: one document, and still readable line by line."""
    yield "[\n"
    sep = ""
    for row in rows:
        yield sep + json.dumps(asdict(row), ensure_ascii=False, separators=(",", ":"))
        sep = ",\n"
    yield "\n]\n"


@dataclass(frozen=True, slots=True)
class SuricataTarget:
    """How a Suricata 7 rule reaches one fingerprint kind.

    ``ja3.hash`` holds the 32 hex characters, while a ``type md5`` dataset compares 16 raw
    bytes, so ``ja3.hash; dataset:isset,...,type md5`` is accepted and never fires. The rule
    therefore hashes the JA3 string itself (``to_md5`` yields the raw digest), and JA4, which is
    no hash, goes into a ``type string`` dataset, whose file holds each value base64-encoded.
    """

    buffer: str
    dataset_type: str


SURICATA_TARGETS: dict[str, SuricataTarget] = {
    "ja3": SuricataTarget("ja3.string; to_md5", "md5"),
    "ja3s": SuricataTarget("ja3s.string; to_md5", "md5"),
    "ja4": SuricataTarget("ja4.hash", "string"),
}


class UnsupportedExport(ValueError):
    """The target tool computes no fingerprint of this kind: a list of it could never match."""


def suricata_target(kind: str) -> SuricataTarget:
    target = SURICATA_TARGETS.get(kind)
    if target is None:
        raise UnsupportedExport(
            f"Suricata computes no {kind} fingerprint, so a dataset of them would never match; "
            f"export one of: {', '.join(SURICATA_TARGETS)}"
        )
    return target


def render_suricata_dataset(rows: Iterable[LabelRow], kind: str = "ja3") -> Iterator[str]:
    """A Suricata dataset file of ``kind``'s values, each once, in the dataset type's encoding."""
    target = suricata_target(kind)
    seen: set[str] = set()
    for row in rows:
        if row.kind != kind or row.value in seen:
            continue
        seen.add(row.value)
        if target.dataset_type == "string":
            yield base64.b64encode(row.value.encode("ascii")).decode("ascii") + "\n"
        else:
            yield row.value + "\n"


def suricata_rule(dataset: str, path: str, kind: str = "ja3", sid: int = 9000001) -> str:
    """The rule that alerts when a TLS hello's ``kind`` fingerprint is in the dataset."""
    target = suricata_target(kind)
    return (
        f'alert tls any any -> any any (msg:"ja3svc {dataset}"; {target.buffer}; '
        f"dataset:isset,{dataset},type {target.dataset_type},load {path}; sid:{sid}; rev:1;)"
    )


def _zeek_field(value: str | None) -> str:
    # Tabs and newlines would break the TSV; Zeek writes '-' for an unset field.
    if not value:
        return "-"
    return re.sub(r"[\t\r\n]+", " ", value)


def render_zeek_intel(rows: Iterable[LabelRow]) -> Iterator[str]:
    """Zeek intel framework file, type ``Intel::JA3`` (salesforce/ja3's Zeek package).

    Only standard JA3 rows: that is the hash Zeek computes, so a JA3N or Dovecot-variant value
    would never match there.
    """
    yield "#fields\tindicator\tindicator_type\tmeta.source\tmeta.desc\n"
    for row in rows:
        if row.kind != "ja3":
            continue
        desc = " - ".join(p for p in (row.client_name, row.category, row.action) if p)
        yield (
            f"{row.value}\tIntel::JA3\t{_zeek_field('ja3svc-' + (row.source or 'unknown'))}"
            f"\t{_zeek_field(desc)}\n"
        )


# Suricata's dataset depends on the kind: see render_suricata_dataset.
RENDERERS: dict[str, Callable[[Iterable[LabelRow]], Iterator[str]]] = {
    "ja3svc-json": render_project_json,
    "ja3svc-csv": render_project_csv,
    "zeek": render_zeek_intel,
}
