"""``ja3svc fingerprints``: what the database has seen (top lists, one fingerprint, search)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ja3svc.cli.main import EXIT_OK, EXIT_USAGE
from ja3svc.cli.store_options import add_database_options, friendly_errors, open_database

from ja3svc.vocabulary import FINGERPRINT_KINDS as KINDS


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "fingerprints",
        help="query fingerprints seen in captures and their labels",
        description="Fingerprints stored by `ja3svc pcap --store` and the capture worker, with "
        "their counts, first/last seen times and labels.",
    )
    fsub = p.add_subparsers(dest="fp_command", metavar="ACTION", required=True)

    top = fsub.add_parser("top", help="most seen fingerprints")
    top.add_argument("--kind", choices=KINDS, action="append", help="only this kind (repeatable)")
    top.add_argument("-n", "--limit", type=int, default=20, help="how many (default 20)")
    top.set_defaults(func=_top)

    show = fsub.add_parser("show", help="everything known about one fingerprint")
    show.add_argument("value", metavar="HASH", help="MD5 (any JA3 kind) or JA4 fingerprint")
    show.add_argument("--kind", choices=KINDS, action="append", help="only this kind")
    show.add_argument("--sightings", type=int, default=10, help="recent sightings to list")
    show.set_defaults(func=_show)

    search = fsub.add_parser(
        "search", help="by hash prefix, full string, or label name/category/note"
    )
    search.add_argument("text", help="text to look for (case-insensitive)")
    search.add_argument("--kind", choices=KINDS, action="append", help="only this kind")
    search.add_argument("-n", "--limit", type=int, default=50, help="how many (default 50)")
    search.set_defaults(func=_search)

    for action in (top, show, search):
        action.add_argument("--json", action="store_true", help="JSON output")
        add_database_options(action)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else "-"


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


@friendly_errors("fingerprints top")
def _top(args: argparse.Namespace) -> int:
    from ja3svc.store.labels import find_labels
    from ja3svc.store.queries import top_fingerprints

    _settings, db = open_database(args)
    with db.session() as s:
        rows = top_fingerprints(s, kinds=args.kind, limit=args.limit)
        names = {}
        for fp in rows:
            labels = find_labels(s, kinds=[fp.kind], value=fp.value)
            names[(fp.kind, fp.value)] = "; ".join(
                dict.fromkeys(lb.client_name for lb in labels if lb.client_name)
            )
    if args.json:
        _print_json(
            [
                {
                    "kind": fp.kind,
                    "value": fp.value,
                    "times_seen": fp.times_seen,
                    "first_seen": fp.first_seen,
                    "last_seen": fp.last_seen,
                    "labels": names[(fp.kind, fp.value)],
                }
                for fp in rows
            ]
        )
        return EXIT_OK
    if not rows:
        print("no fingerprints stored yet (store some with `ja3svc pcap FILE --store`)")
        return EXIT_OK
    print(f"{'times seen':>10}  {'kind':<11} {'value':<36}  {'last seen (UTC)':<19}  labels")
    for fp in rows:
        print(
            f"{fp.times_seen:>10}  {fp.kind:<11} {fp.value:<36}  {_when(fp.last_seen):<19}  "
            f"{names[(fp.kind, fp.value)]}"
        )
    return EXIT_OK


@friendly_errors("fingerprints show")
def _show(args: argparse.Namespace) -> int:
    from ja3svc.store.queries import fingerprint_details

    _settings, db = open_database(args)
    with db.session() as s:
        found = fingerprint_details(s, args.value, kinds=args.kind, sightings=args.sightings)
        data = [_details_dict(d) for d in found]
    if not data:
        print(
            f"ja3svc fingerprints show: {args.value} is neither seen nor labelled", file=sys.stderr
        )
        return EXIT_USAGE
    if args.json:
        _print_json(data)
        return EXIT_OK
    for d in data:
        print(f"{d['kind']} {d['value']}")
        if d["full_string"]:
            print(f"  string:     {d['full_string']}")
        print(
            f"  seen:       {d['times_seen']} times, first {_when(d['first_seen'])}, "
            f"last {_when(d['last_seen'])} (UTC); {d['retained_sightings']} sightings retained"
        )
        for kind, value in d["same_hello"]:
            print(f"  same hello: {kind} {value}")
        if d["users"]:
            print(f"  accounts:   {d['users']} logged in successfully with it")
        if d["failures"]:
            print(f"  failures:   {d['failures']} failed logins recorded with it (retained)")
        for lb in d["labels"]:
            tarpit = f" {lb['tarpit_seconds']}s" if lb["action"] == "tarpit" else ""
            print(
                f"  label:      [{lb['source']}, confidence {lb['confidence']}] "
                f"{lb['client_name'] or '-'} ({lb['category'] or 'no category'}), "
                f"action {lb['action']}{tarpit}" + (f" - {lb['note']}" if lb["note"] else "")
            )
        for sg in d["recent_sightings"]:
            print(
                f"  sighting:   {_when(sg['ts'])} {sg['src']}:{sg['sport']} -> "
                f"{sg['dst']}:{sg['dport']} sni={sg['sni'] or '-'} [{sg['sensor']}]"
            )
    return EXIT_OK


def _details_dict(d: Any) -> dict[str, Any]:
    fp = d.fingerprint
    return {
        "kind": d.kind,
        "value": d.value,
        "full_string": fp.full_string if fp else None,
        "times_seen": fp.times_seen if fp else 0,
        "first_seen": fp.first_seen if fp else None,
        "last_seen": fp.last_seen if fp else None,
        "retained_sightings": d.retained_sightings,
        "users": d.users,
        "failures": d.failures,
        "same_hello": [list(r) for r in d.family],
        "labels": [
            {
                c: getattr(lb, c)
                for c in (
                    "source",
                    "client_name",
                    "category",
                    "action",
                    "tarpit_seconds",
                    "confidence",
                    "note",
                )
            }
            for lb in d.labels
        ],
        "recent_sightings": [
            {
                c: getattr(sg, c)
                for c in ("ts", "sensor", "src", "sport", "dst", "dport", "sni", "tls_version")
            }
            for sg in d.recent_sightings
        ],
    }


@friendly_errors("fingerprints search")
def _search(args: argparse.Namespace) -> int:
    from ja3svc.store.queries import search

    _settings, db = open_database(args)
    with db.session() as s:
        hits = search(s, args.text, kinds=args.kind, limit=args.limit)
    if args.json:
        _print_json([h.__dict__ for h in hits])
        return EXIT_OK
    if not hits:
        print(f"nothing matches {args.text!r}")
        return EXIT_OK
    for h in hits:
        print(f"{h.times_seen:>10}  {h.kind:<11} {h.value:<36}  {'; '.join(h.names)}")
    return EXIT_OK
