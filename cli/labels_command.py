"""``ja3svc labels``: what is known about fingerprints, by hand or from public lists."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

from ja3svc.cli.main import EXIT_OK, EXIT_USAGE
from ja3svc.cli.store_options import add_database_options, friendly_errors, open_database

from ja3svc.label_formats import (
    EXPORT_FORMATS,
    IMPORT_FORMATS,
    RENDERERS,
    LabelRow,
    UnsupportedExport,
    check_row,
    normalize_value,
    render_suricata_dataset,
    suricata_rule,
    suricata_target,
)
from ja3svc.vocabulary import (
    FINGERPRINT_KINDS,
    LABEL_ACTIONS,
    InvalidLabel,
    check_label,
    check_label_fields,
    fingerprint_value,
    guess_kind,
)

# Exports for other tools carry only the kind those tools compute themselves.
_EXPORT_DEFAULT_KINDS = {"suricata": ["ja3"], "zeek": ["ja3"]}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "labels",
        help="add, list, import and export fingerprint labels",
        description="Labels say what a fingerprint is (client name, category) and what the "
        "policy service should do with it (allow, deny, tarpit, none). Each source (manual, "
        "sslbl, salesforce, ...) keeps its own label per fingerprint; importing again updates.",
    )
    lsub = p.add_subparsers(dest="labels_command", metavar="ACTION", required=True)

    add = lsub.add_parser("add", help="add or update a label")
    add.add_argument("value", metavar="HASH", help="MD5 fingerprint or JA4 string")
    add.add_argument("--kind", choices=FINGERPRINT_KINDS, help="default: ja4 for a JA4, else ja3")
    add.add_argument("--client", dest="client_name", help='client name, e.g. "Thunderbird 128"')
    add.add_argument("--category", help="mail-client, browser, library, scanner, malware, ...")
    add.add_argument("--action", choices=LABEL_ACTIONS, default="none")
    add.add_argument("--tarpit-seconds", type=int, help="delay for --action tarpit")
    add.add_argument("--source", default="manual", help="default: manual")
    add.add_argument("--confidence", type=int, default=100, help="0-100 (default 100)")
    add.add_argument("--note")
    add.set_defaults(func=_add)

    rm = lsub.add_parser(
        "remove",
        help="remove labels of a fingerprint, or every label of a source",
        description="With HASH: that fingerprint's labels (of --source only, if given). "
        "Without: every label of --source, which undoes `labels import --source NAME`.",
    )
    rm.add_argument("value", metavar="HASH", nargs="?")
    rm.add_argument("--kind", choices=FINGERPRINT_KINDS, help="default: ja4 for a JA4, else ja3")
    rm.add_argument("--source", help="only this source's labels (default: all sources)")
    rm.set_defaults(func=_remove)

    ls = lsub.add_parser("list", help="list labels")
    _add_filters(ls)
    ls.add_argument("-n", "--limit", type=int, help="at most this many")
    ls.add_argument("--json", action="store_true", help="JSON output")
    ls.set_defaults(func=_list)

    imp = lsub.add_parser(
        "import",
        help="import a public fingerprint list or a ja3svc export",
        description="Formats: "
        + "; ".join(f"{f.name}: {f.description}" for f in IMPORT_FORMATS.values())
        + ". Imported labels get action none unless --action says otherwise: public lists "
        "disagree with each other and are derived from HTTPS traffic.",
    )
    imp.add_argument("format", choices=list(IMPORT_FORMATS), metavar="FORMAT")
    imp.add_argument("file", metavar="FILE", help="the list ('-' for standard input)")
    imp.add_argument("--source", help="label source name (default: the format's, e.g. sslbl)")
    imp.add_argument("--action", choices=LABEL_ACTIONS, help="action for rows without one")
    imp.add_argument("--tarpit-seconds", type=int, help="delay for --action tarpit")
    imp.add_argument("--confidence", type=int, help="confidence for rows without one")
    imp.add_argument(
        "--dry-run", action="store_true", help="show what would be added or changed; write nothing"
    )
    imp.set_defaults(func=_import)

    exp = lsub.add_parser(
        "export",
        help="export labels (ja3svc-json, ja3svc-csv, suricata dataset, zeek intel)",
    )
    exp.add_argument("format", choices=EXPORT_FORMATS, metavar="FORMAT")
    exp.add_argument("file", metavar="FILE", nargs="?", help="output file (default: stdout)")
    _add_filters(exp)
    exp.add_argument("--name", help="Suricata dataset name (default: the file's stem)")
    exp.add_argument("--rules", metavar="FILE", help="suricata: also write the rule to FILE")
    exp.add_argument("--sid", type=int, default=9000001, help="suricata: rule id (9000001)")
    exp.set_defaults(func=_export)

    for action in (add, rm, ls, imp, exp):
        add_database_options(action)


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", choices=FINGERPRINT_KINDS, action="append", help="only this kind")
    p.add_argument("--source", help="only this source")
    p.add_argument("--action", choices=LABEL_ACTIONS, help="only labels with this action")
    p.add_argument("--value", metavar="HASH", help="only this fingerprint")


def _kind_and_value(command: str, kind: str | None, raw: str) -> tuple[str, str] | None:
    kind = kind or guess_kind(raw)
    try:
        return kind, fingerprint_value(kind, raw)
    except InvalidLabel as exc:
        print(f"ja3svc labels {command}: {exc}", file=sys.stderr)
        return None


@friendly_errors("labels add")
def _add(args: argparse.Namespace) -> int:
    from ja3svc.store.labels import upsert_labels

    if args.action == "tarpit" and args.tarpit_seconds is None:
        # A usage rule of this command, not of labels (a tarpit label without seconds is
        # valid and gets the service's delay): typed by hand, the delay is asked for.
        print("ja3svc labels add: --action tarpit needs --tarpit-seconds N", file=sys.stderr)
        return EXIT_USAGE
    kind = args.kind or guess_kind(args.value)
    try:
        value = check_label(
            kind,
            args.value,
            action=args.action,
            client_name=args.client_name,
            category=args.category,
            source=args.source,
            confidence=args.confidence,
            tarpit_seconds=args.tarpit_seconds,
        )
    except InvalidLabel as exc:
        print(f"ja3svc labels add: {exc}", file=sys.stderr)
        return EXIT_USAGE
    row = LabelRow(
        kind=kind,
        value=value,
        client_name=args.client_name,
        category=args.category,
        action=args.action,
        tarpit_seconds=args.tarpit_seconds,
        source=args.source,
        confidence=args.confidence,
        note=args.note,
    )
    _settings, db = open_database(args)
    result = upsert_labels(db, [row])
    verb = "added" if result.inserted else "updated"
    print(f"{verb} {row.kind} {row.value} [{row.source}]: action {row.action}")
    return EXIT_OK


@friendly_errors("labels remove")
def _remove(args: argparse.Namespace) -> int:
    from ja3svc.store.labels import remove_labels

    if args.value is None:
        if not args.source:
            print("ja3svc labels remove: give a HASH, --source NAME, or both", file=sys.stderr)
            return EXIT_USAGE
        _settings, db = open_database(args)
        n = remove_labels(db, args.kind, None, args.source)
        if not n:
            print(f"ja3svc labels remove: no label of source {args.source}", file=sys.stderr)
            return EXIT_USAGE
        print(f"removed {n} label{'s' if n != 1 else ''} of source {args.source}")
        return EXIT_OK
    parsed = _kind_and_value("remove", args.kind, args.value)
    if parsed is None:
        return EXIT_USAGE
    _settings, db = open_database(args)
    n = remove_labels(db, parsed[0], parsed[1], args.source)
    if not n:
        print(f"ja3svc labels remove: no label for {parsed[0]} {parsed[1]}", file=sys.stderr)
        return EXIT_USAGE
    print(f"removed {n} label{'s' if n != 1 else ''} of {parsed[0]} {parsed[1]}")
    return EXIT_OK


def _query(args: argparse.Namespace, kinds: list[str] | None, limit: int | None) -> list[LabelRow]:
    from ja3svc.store.labels import as_row, find_labels

    value = args.value
    if value is not None:
        value = value.strip().lower() if normalize_value("ja3", value) else value.strip()
    _settings, db = open_database(args)
    with db.session() as s:
        labels = find_labels(
            s, kinds=kinds, value=value, source=args.source, action=args.action, limit=limit
        )
        return [as_row(lb) for lb in labels]


@friendly_errors("labels list")
def _list(args: argparse.Namespace) -> int:
    rows = _query(args, args.kind, args.limit)
    if args.json:
        json.dump([asdict(r) for r in rows], sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return EXIT_OK
    if not rows:
        print("no labels")
        return EXIT_OK
    print(f"{'kind':<11} {'value':<36}  {'source':<10} {'conf':>4}  {'action':<10} client")
    for r in rows:
        action = f"tarpit {r.tarpit_seconds}s" if r.action == "tarpit" else r.action
        cat = f" ({r.category})" if r.category else ""
        print(
            f"{r.kind:<11} {r.value:<36}  {r.source:<10} {r.confidence:>4}  {action:<10} "
            f"{r.client_name or '-'}{cat}"
        )
    return EXIT_OK


@friendly_errors("labels import")
def _import(args: argparse.Namespace) -> int:
    from ja3svc.store.labels import LabelDefaults, upsert_labels

    fmt = IMPORT_FORMATS[args.format]
    problem = None
    try:
        check_label_fields(
            action=args.action,
            source=args.source,
            confidence=args.confidence,
            tarpit_seconds=args.tarpit_seconds,
        )
    except InvalidLabel as exc:
        problem = str(exc)
    if not problem and args.source == "manual":
        problem = "source 'manual' is for `labels add`; an import names its own source"
    if problem:
        print(f"ja3svc labels import: {problem}", file=sys.stderr)
        return EXIT_USAGE
    # The database first: a schema it cannot use is the one line to see, not the list's.
    _settings, db = open_database(args)
    if args.file == "-":
        result = fmt.parse(sys.stdin)
    else:
        path = Path(args.file)
        if not path.is_file():
            print(f"ja3svc labels import: {path}: no such file", file=sys.stderr)
            return EXIT_USAGE
        # errors="replace": a stray non-UTF-8 byte in a downloaded list costs one character,
        # not the whole import.
        with open(path, encoding="utf-8", errors="replace", newline="") as fh:
            result = fmt.parse(fh)
    if result.refused is not None:
        print(
            f"ja3svc labels import: {args.file} is not a {args.format} list: {result.refused}; "
            "nothing imported",
            file=sys.stderr,
        )
        return EXIT_USAGE
    for p in result.problems:
        print(f"{args.file}: {p}", file=sys.stderr)
    for note in result.notes:
        print(f"{args.file}: {note}", file=sys.stderr)
    if not result.rows:
        print(f"ja3svc labels import: no valid {args.format} rows in {args.file}", file=sys.stderr)
        return EXIT_USAGE
    defaults = LabelDefaults(
        source=fmt.source,
        action=args.action or "none",
        confidence=args.confidence if args.confidence is not None else fmt.confidence,
        tarpit_seconds=args.tarpit_seconds,
    )
    rows = result.rows
    if args.source:
        rows = [replace(r, source=args.source) for r in rows]
    rows = _valid_rows(args.file, rows)
    # Labels made by hand stay as they were, whatever a file (a ja3svc export) says of them.
    outcome = upsert_labels(db, rows, defaults, dry_run=args.dry_run, keep_sources=("manual",))
    if args.dry_run:
        for change in outcome.changes:
            print(change.describe())
    kept = f", {outcome.kept} manual label(s) kept as they are" if outcome.kept else ""
    print(
        f"{'would import' if args.dry_run else 'imported'} {args.file} ({args.format}): "
        f"{outcome.inserted} new, {outcome.updated} updated ({outcome.changed} with new "
        f"values){kept}, {len(result.problems)} problem line(s)"
        + ("; nothing written (--dry-run)" if args.dry_run else "")
    )
    return EXIT_OK


def _valid_rows(file: str, rows: list[LabelRow]) -> list[LabelRow]:
    """The rows the label validator accepts; each refused one is reported with the reason.
    (The readers have checked the values already, with line numbers; this is the rest.)"""
    valid = []
    for r in rows:
        try:
            valid.append(check_row(r))
        except InvalidLabel as exc:
            print(f"{file}: {r.kind} {r.value}: {exc}, skipped", file=sys.stderr)
    return valid


@friendly_errors("labels export")
def _export(args: argparse.Namespace) -> int:
    kinds = args.kind or _EXPORT_DEFAULT_KINDS.get(args.format)
    try:
        if args.format == "suricata":
            # One dataset holds one kind: each kind needs its own rule buffer and dataset type.
            if len(kinds or []) != 1:
                raise UnsupportedExport("a Suricata dataset holds one kind: give one --kind")
            suricata_target(kinds[0])
        elif args.format == "zeek" and set(kinds or []) - {"ja3"}:
            raise UnsupportedExport(
                "Zeek's intel type Intel::JA3 (salesforce/ja3 package) matches standard JA3 "
                "only: export with --kind ja3"
            )
    except UnsupportedExport as exc:
        print(f"ja3svc labels export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    rows = _query(args, kinds, None)
    written = f"{len(rows)} labels"
    if args.format == "suricata":
        kind = kinds[0]
        # One entry per fingerprint, however many sources label it: say how many entries.
        lines = list(render_suricata_dataset(rows, kind))
        written = f"{len(lines)} {kind} fingerprints ({len(rows)} labels)"
    else:
        lines = RENDERERS[args.format](rows)
    if args.file:
        path = Path(args.file)
        with open(path, "w", encoding="utf-8", newline="") as out:
            out.writelines(lines)
        print(f"wrote {written} to {path}", file=sys.stderr)
    else:
        for line in lines:
            sys.stdout.write(line)
    if args.format == "suricata":
        # Absolute: Suricata resolves a relative `load` against its own directories, not ours.
        target = str(Path(args.file).resolve()) if args.file else "FILE"
        name = args.name or (Path(args.file).stem if args.file else "ja3svc")
        rule = suricata_rule(name, target, kind, args.sid)
        if args.rules:
            Path(args.rules).write_text(rule + "\n", encoding="utf-8")
            print(f"wrote the rule to {args.rules}", file=sys.stderr)
        print(f"Suricata rule: {rule}", file=sys.stderr)
    return EXIT_OK
