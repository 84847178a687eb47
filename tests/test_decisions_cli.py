"""`ja3svc decisions` and `ja3svc fingerprints show` on what the real policy service recorded."""

from __future__ import annotations

import json

import pytest
from ja3svc.api.app import create_app

from tests.support.api import ADMIN, API_KEY, AppClient, H, allow_24, make_settings, report_24
from tests.support.cli import run_cli

AUTH = {"X-API-Key": API_KEY}


@pytest.fixture
def recorded(tmp_path):
    """A database where bob's client was denied by label and ivan logged in and failed."""
    settings = make_settings(tmp_path, reject_message="No")
    with AppClient(create_app(settings)) as c:
        c.post("/?command=allow", content=allow_24("ivan", "i1"), headers=AUTH)
        c.post("/?command=report", content=report_24("ivan", "i1", True), headers=AUTH)
        c.post("/?command=report", content=report_24("eve", "e1", False), headers=AUTH)
        other = "0123456789abcdef0123456789abcdef"
        c.post(
            "/api/v1/labels",
            json={"kind": "ja3_dovecot", "value": other, "action": "deny", "client_name": "bot"},
            headers={"X-Admin-Token": ADMIN},
        )
        c.post("/?command=allow", content=allow_24("bob", "b1", ja3=other), headers=AUTH)
        c.app.state.service.writer.flush()
    return settings.database_url


def test_decisions_tail_filter_and_explain(recorded):
    status, out, _ = run_cli("decisions", "--database-url", recorded)
    lines = out.splitlines()
    assert status == 0 and len(lines) == 4
    assert "ivan" in lines[0] and "bob" in lines[-1]  # oldest first, like tail
    status, out, _ = run_cli(
        "decisions", "--database-url", recorded, "--verdict", "reject", "--explain"
    )
    assert status == 0
    assert "label_deny" in out and "bob" in out and "ivan" not in out
    assert "why:    A deny label" in out
    assert "label:  ja3_dovecot 0123456789abcdef0123456789abcdef [manual]: deny (bot)" in out
    status, out, _ = run_cli("decisions", "--database-url", recorded, "--user", "ivan", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["command"] for r in rows] == ["allow/before", "report"]
    assert rows[0]["ts"].endswith("Z")
    status, out, _ = run_cli("decisions", "--database-url", recorded, "--until", "2001-01-01")
    assert status == 0 and out == ""
    status, _, err = run_cli("decisions", "--database-url", recorded, "--since", "soon")
    assert status == 1 and "not a time" in err


def test_fingerprints_show_knows_what_only_the_policy_service_saw(recorded):
    # Never captured and not labelled under ja3_dovecot, but logged in with and failed with.
    status, out, err = run_cli("fingerprints", "show", H, "--database-url", recorded)
    assert status == 0, err
    assert "ja3_dovecot " + H in out
    assert "accounts:   1 logged in successfully" in out
    assert "failures:   1 failed logins" in out


def test_fingerprints_show_joins_every_kind_of_one_hello(tmp_path):
    from pathlib import Path

    pcaps = Path(__file__).parent / "pcaps"
    url = f"sqlite:///{tmp_path / 'fp.sqlite3'}"
    expected = json.loads((pcaps / "gnutls-cli-sni.expected.json").read_text())
    ja3 = next(h["ja3_hash"] for h in expected["hellos"] if h["hello"] == "client")  # tshark's
    status, out, _ = run_cli(
        "pcap", "-q", "--no-progress", "--store", "--database-url", url,
        str(pcaps / "gnutls-cli-sni.pcap"),
    )  # fmt: skip
    assert status == 0
    hello = next(json.loads(line) for line in out.splitlines() if '"client"' in line)
    assert hello["ja3_hash"] == ja3
    # The same hello, asked for by any of its fingerprints, lists all the others.
    for kind, value in (("ja3", ja3), ("ja4", hello["ja4"]), ("ja3n", hello["ja3n_hash"])):
        status, out, err = run_cli(
            "fingerprints", "show", value, "--kind", kind, "--database-url", url, "--json"
        )
        assert status == 0, err
        joined = {tuple(r) for r in json.loads(out)[0]["same_hello"]}
        wanted = {
            ("ja3", ja3), ("ja3n", hello["ja3n_hash"]), ("ja4", hello["ja4"]),
            ("ja3_dovecot", hello["ja3_dovecot_hash"]),
        } - {(kind, value)}  # fmt: skip
        assert wanted <= joined, (kind, joined)
