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
    top.add_argument(
        "--by",
        choices=("seen", "failures"),
        default="seen",
        help="most seen (default), or failing logins for the most accounts",
    )
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


# The answers come from store.queries, the read API the admin API and the console use too
# (its module documentation has the matching rules); this module only prints them.


@friendly_errors("fingerprints top")
def _top(args: argparse.Namespace) -> int:
    from ja3svc.store.queries import top

    _settings, db = open_database(args)
    with db.session() as s:
        rows = top(s, kinds=args.kind, by=args.by, limit=args.limit)
    if args.json:
        _print_json(rows)
        return EXIT_OK
    if not rows:
        what = "failed logins" if args.by == "failures" else "fingerprints"
        print(f"no {what} stored yet (store some with `ja3svc pcap FILE --store`)")
        return EXIT_OK
    if args.by == "failures":
        print(f"{'accounts':>10}  {'failures':>8}  {'kind':<11} value")
        for r in rows:
            print(f"{r['distinct_accounts']:>10}  {r['failures']:>8}  {r['kind']:<11} {r['value']}")
        return EXIT_OK
    print(f"{'times seen':>10}  {'kind':<11} {'value':<36}  {'last seen (UTC)':<19}  labels")
    for r in rows:
        print(
            f"{r['times_seen']:>10}  {r['kind']:<11} {r['value']:<36}  "
            f"{_when(r['last_seen']):<19}  {r['labels']}"
        )
    return EXIT_OK


@friendly_errors("fingerprints show")
def _show(args: argparse.Namespace) -> int:
    from ja3svc.store.queries import guess_kinds, lookup

    settings, db = open_database(args)
    window = settings.policy.reputation_window_seconds
    with db.session() as s:
        found = [
            lookup(s, kind, args.value, window=window, sightings=args.sightings)
            for kind in args.kind or guess_kinds(args.value.strip())
        ]
    # The kinds under which the value is seen, labelled, or known to the policy service
    # (accounts that logged in or failed with it).
    data = [d for d in found if d["times_seen"] or d["labels"] or d["users"]]
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
        logged_in = sum(1 for u in d["users"] if u["successes"])
        if logged_in:
            print(f"  accounts:   {logged_in} logged in successfully with it")
        failed = sum(u["failures"] for u in d["users"])
        if failed:
            print(f"  failures:   {failed} failed logins recorded with it (retained)")
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


@friendly_errors("fingerprints search")
def _search(args: argparse.Namespace) -> int:
    from ja3svc.store.queries import search

    _settings, db = open_database(args)
    with db.session() as s:
        hits = search(s, args.text, kinds=args.kind, limit=args.limit)
    if args.json:
        _print_json(hits)
        return EXIT_OK
    if not hits:
        print(f"nothing matches {args.text!r}")
        return EXIT_OK
    for h in hits:
        print(f"{h['times_seen']:>10}  {h['kind']:<11} {h['value']:<36}  {'; '.join(h['names'])}")
    return EXIT_OK
