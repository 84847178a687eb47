"""One label validator behind every way a label comes in: `ja3svc labels add`, `labels import`
and the admin API refuse the same labels with the same reason, and store none of them (SQLite
and PostgreSQL for the CLI; the API on its SQLite file)."""

from __future__ import annotations

import csv
import json
from typing import Any

import pytest
from ja3svc.api.app import create_app

from tests.support.api import ADMIN, AppClient, make_settings
from tests.support.cli import run_cli
from tests.support.database import url_of

MD5 = "ada70206e40642a3e4461f35503241d5"
JA4 = "t13d1516h2_8daaf6152771_e5627efa2ab1"
ADMIN_H = {"X-Admin-Token": ADMIN}

# (label, reason): values by the formats' definitions, not by our output.
BAD: list[tuple[dict[str, Any], str]] = [
    ({"kind": "ja3s", "value": "xyz"}, "invalid MD5 hash 'xyz'"),
    ({"kind": "ja3_dovecot", "value": "xyz"}, "invalid MD5 hash 'xyz'"),
    ({"kind": "ja3n", "value": MD5[:31]}, f"invalid MD5 hash '{MD5[:31]}'"),
    ({"kind": "ja4", "value": "xyz"}, "invalid JA4 fingerprint 'xyz'"),
    ({"kind": "ja4", "value": MD5}, f"invalid JA4 fingerprint '{MD5}'"),
    ({"kind": "ja3", "value": JA4}, f"invalid MD5 hash '{JA4}'"),
    (
        {"kind": "ja3", "value": MD5, "client_name": "n" * 201},
        "client_name is 201 characters long, at most 200",
    ),
    (
        {"kind": "ja3", "value": MD5, "category": "c" * 33},
        "category is 33 characters long, at most 32",
    ),
    ({"kind": "ja3", "value": MD5, "confidence": 101}, "confidence 101 is not between 0 and 100"),
    (
        {"kind": "ja3", "value": MD5, "action": "tarpit", "tarpit_seconds": 3601},
        "tarpit_seconds 3601 is not between 0 and 3600",
    ),
]
IDS = [f"{label['kind']}-{reason.split(' ')[0]}-{i}" for i, (label, reason) in enumerate(BAD)]
CLI_OPTIONS = {
    "client_name": "--client",
    "category": "--category",
    "confidence": "--confidence",
    "action": "--action",
    "tarpit_seconds": "--tarpit-seconds",
}


def cli_add(url: str, label: dict[str, Any]) -> tuple[int, str, str]:
    argv = ["labels", "add", label["value"], "--kind", label["kind"]]
    for key, option in CLI_OPTIONS.items():
        if key in label:
            argv += [option, str(label[key])]
    return run_cli(*argv, "--database-url", url)


def stored_labels(url: str) -> list[Any]:
    status, out, _ = run_cli("labels", "list", "--json", "--database-url", url)
    assert status == 0
    return json.loads(out)


@pytest.mark.parametrize(("label", "reason"), BAD, ids=IDS)
def test_cli_add_refuses_with_the_reason(database, label, reason):
    status, out, err = cli_add(url_of(database), label)
    assert (status, out, err) == (1, "", f"ja3svc labels add: {reason}\n")
    assert stored_labels(url_of(database)) == []


def test_cli_import_refuses_the_same_rows_with_the_same_reasons(database, tmp_path):
    path = tmp_path / "labels.csv"
    columns = ["kind", "value", "client_name", "category", "action", "tarpit_seconds", "confidence"]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerow({"kind": "ja3", "value": MD5, "client_name": "good"})
        for label, _ in BAD:
            writer.writerow(label)
    status, out, err = run_cli(
        "labels", "import", "ja3svc-csv", str(path), "--database-url", url_of(database)
    )
    assert status == 0 and "1 new" in out
    # Line 1 is the header, line 2 the good row.
    assert err.splitlines() == [
        f"{path}: line {n}: {reason}, skipped" for n, (_, reason) in enumerate(BAD, 3)
    ]
    assert [(lb["kind"], lb["value"]) for lb in stored_labels(url_of(database))] == [("ja3", MD5)]


@pytest.fixture
def client(tmp_path):
    with AppClient(create_app(make_settings(tmp_path))) as c:
        yield c


def test_admin_api_refuses_the_same_labels_with_the_same_reasons(client):
    for label, reason in BAD:
        r = client.post("/api/v1/labels", json=label, headers=ADMIN_H)
        assert (r.status_code, r.json()) == (422, {"error": "invalid", "reason": reason}), label
    assert client.get("/api/v1/stats", headers=ADMIN_H).json()["tables"]["labels"] == 0
    # A valid label, then patches the validator refuses: the label is left as it was.
    good = client.post("/api/v1/labels", json={"kind": "ja4", "value": JA4}, headers=ADMIN_H)
    assert good.status_code == 201 and good.json()["value"] == JA4
    url = f"/api/v1/labels/{good.json()['id']}"
    for patch, reason in (
        ({"client_name": "n" * 201}, "client_name is 201 characters long, at most 200"),
        ({"action": "block"}, "unknown action 'block' (one of allow, deny, tarpit, none)"),
    ):
        r = client.patch(url, json=patch, headers=ADMIN_H)
        assert (r.status_code, r.json()) == (422, {"error": "invalid", "reason": reason})
    assert client.get(url, headers=ADMIN_H).json() == good.json()
