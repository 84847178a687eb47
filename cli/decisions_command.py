"""``ja3svc decisions``: the policy service's audit log (tail, filter, follow, explain)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ja3svc.cli.main import EXIT_OK, EXIT_USAGE
from ja3svc.cli.store_options import add_database_options, friendly_errors, open_database

from ja3svc.policy.explain import explain_rule
from ja3svc.timefmt import iso, parse_time, short

ACTIONS = (
    "allow", "tarpit", "reject", "log:allow", "log:tarpit", "log:reject",
    "success", "failure", "policy_reject",
)  # fmt: skip
COMMANDS = ("allow", "allow/before", "allow/after", "report")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "decisions",
        help="the policy service's verdicts and reports (audit log)",
        description="The newest decisions matching the filters, oldest first like tail; "
        "--follow keeps printing new ones. Times: ISO-8601 (UTC unless an offset is given), "
        "epoch seconds, or an age such as 15m, 2h, 7d.",
    )
    p.add_argument("-n", "--limit", type=int, default=20, help="how many (default 20)")
    p.add_argument("--since", help="from this time")
    p.add_argument("--until", help="up to this time")
    p.add_argument("--user", help="only this account")
    p.add_argument("--fingerprint", metavar="HASH", help="only this Dovecot hash (ja3_hash)")
    p.add_argument("--verdict", choices=ACTIONS, help="only this verdict or report outcome")
    p.add_argument("--rule", help="only verdicts of this rule (e.g. label_deny)")
    p.add_argument(
        "--command", choices=(*COMMANDS, "all"), default="all",
        help="allow (both stages), allow/before, allow/after, report, all (default)",
    )  # fmt: skip
    p.add_argument("--explain", action="store_true", help="say why: rule, reasons, labels")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new decisions")
    p.add_argument("--interval", type=float, default=1.0, help="--follow poll interval (s)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    add_database_options(p)
    p.set_defaults(func=_run)


def _line(d: dict[str, Any], explain: bool) -> str:
    client = (d["remote_ip"] or "-") + (f":{d['remote_port']}" if d["remote_port"] else "")
    status = f" {d['status']}s" if d["status"] and d["status"] > 0 else ""
    out = (
        f"{short(d['ts'])}  {d['command']:<12} {d['action'] + status:<14} "
        f"{(d['username'] or '-'):<24} {client:<21} {d['rule'] or '-':<24} {d['ja3_hash'] or '-'}"
    )
    if explain:
        text = explain_rule(d["rule"])
        if text:
            out += f"\n    why:    {text}"
        if d["reason"] and d["rule"] != "report":
            out += f"\n    reason: {d['reason']}"
        for lb in d["labels"]:
            name = f" ({lb.get('client_name')})" if lb.get("client_name") else ""
            out += (
                f"\n    label:  {lb.get('kind')} {lb.get('value')} [{lb.get('source')}]: "
                f"{lb.get('action')}{name}"
            )
    return out


@friendly_errors("decisions")
def _run(args: argparse.Namespace) -> int:
    from ja3svc.store.policy_store import DecisionFilter, PolicyStore

    now = time.time()
    try:
        since = parse_time(args.since, now) if args.since else None
        until = parse_time(args.until, now) if args.until else None
    except ValueError as exc:
        print(f"ja3svc decisions: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not 1 <= args.limit <= 100_000:
        print("ja3svc decisions: --limit must be between 1 and 100000", file=sys.stderr)
        return EXIT_USAGE
    filt = DecisionFilter(
        since=since,
        until=until,
        username=args.user,
        fingerprint=args.fingerprint,
        action=args.verdict,
        rule=args.rule,
        command=None if args.command == "all" else args.command,
    )
    _settings, db = open_database(args)
    store = PolicyStore.from_database(db)

    def emit(rows: list[dict[str, Any]]) -> None:
        for d in rows:
            if args.json:
                print(json.dumps({**d, "ts": iso(d["ts"])}, ensure_ascii=False))
            else:
                print(_line(d, args.explain))
        sys.stdout.flush()

    rows: list[dict[str, Any]] = []
    before = None
    # Pages of at most DECISION_SCAN ids each (bounded reads), until enough rows or none left.
    while len(rows) < args.limit:
        page = store.decision_page(filt, args.limit - len(rows), before)
        rows.extend(page.rows)
        if page.next_before is None:
            break
        before = page.next_before
    rows.reverse()
    if not rows and not args.follow:
        print("no decisions match", file=sys.stderr)
    emit(rows)
    if not args.follow:
        return EXIT_OK
    last = rows[-1]["id"] if rows else 0
    while True:
        time.sleep(args.interval)
        page = store.decision_page(filt, 1000)
        new = [d for d in page.rows if d["id"] > last]
        if new:
            new.reverse()
            emit(new)
            last = new[-1]["id"]
