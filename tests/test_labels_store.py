"""`ja3svc labels` against SQLite and PostgreSQL: import, re-import, add, remove, list, export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from ja3svc.store.models import Label
from sqlalchemy import func, select

from tests.support.cli import run_cli
from tests.support.database import url_of

FIXTURES = Path(__file__).parent / "fixtures" / "labels"
ADA = "ada70206e40642a3e4461f35503241d5"
JA4 = "t13d1516h2_8daaf6152771_e5627efa2ab1"


def labels_cli(database, *argv: str) -> tuple[int, str, str]:
    return run_cli("labels", *argv, "--database-url", url_of(database))


def label_rows(database) -> list[Label]:
    with database.session() as s:
        return list(s.scalars(select(Label).order_by(Label.kind, Label.value, Label.source)))


@pytest.mark.parametrize(
    ("fmt", "name", "new", "problem_lines"),
    [
        ("sslbl", "sslbl.csv", 3, [14, 15]),
        ("salesforce", "salesforce-osx-nix-ja3.csv", 4, [8]),
        ("trisul", "trisul-ja3fingerprint.json", 4, [7, 8, 10]),
        ("foxio", "foxio-ja4plus-mapping.csv", 2, [5]),
        ("ja3svc-csv", "ja3svc.csv", 4, [6, 7, 9]),
        ("ja3svc-json", "ja3svc.json", 3, [3]),
    ],
)
def test_import_reports_bad_lines_and_reimport_updates(database, fmt, name, new, problem_lines):
    path = str(FIXTURES / name)
    status, out, err = labels_cli(database, "import", fmt, path)
    assert status == 0, err
    assert f": {new} new, 0 updated" in out
    reported = [int(n) for n in re.findall(r": (?:line|entry) (\d+):", err)]
    assert reported == problem_lines
    rows = label_rows(database)
    assert len(rows) == new
    first_update = {(r.kind, r.value, r.source): r.updated_at for r in rows}

    status, out, _ = labels_cli(database, "import", fmt, path)
    assert status == 0 and ": 0 new, " in out
    # Labels of source manual (in the project's own exports) are kept, the rest updated.
    updated = int(re.search(r"(\d+) updated", out).group(1))
    kept = re.search(r"(\d+) manual label\(s\) kept", out)
    assert updated + (int(kept.group(1)) if kept else 0) == new
    rows = label_rows(database)
    assert len(rows) == new
    assert all(r.updated_at >= first_update[(r.kind, r.value, r.source)] for r in rows)


def test_sources_coexist_and_defaults_apply(database):
    assert labels_cli(database, "import", "sslbl", str(FIXTURES / "sslbl.csv"))[0] == 0
    assert (
        labels_cli(database, "import", "trisul", str(FIXTURES / "trisul-ja3fingerprint.json"))[0]
        == 0
    )
    assert (
        labels_cli(
            database,
            "import",
            "salesforce",
            str(FIXTURES / "salesforce-osx-nix-ja3.csv"),
            "--action",
            "tarpit",
            "--tarpit-seconds",
            "3",
            "--confidence",
            "30",
        )[0]
        == 0
    )
    status, out, _ = labels_cli(database, "list", "--value", ADA.upper(), "--json")
    assert status == 0
    listed = {r["source"]: r for r in json.loads(out)}
    assert set(listed) == {"salesforce", "trisul"}
    # Imports never act on their own unless told to: public lists disagree (spec).
    assert listed["trisul"]["action"] == "none" and listed["trisul"]["confidence"] == 40
    assert listed["salesforce"]["action"] == "tarpit"
    assert listed["salesforce"]["tarpit_seconds"] == 3 and listed["salesforce"]["confidence"] == 30
    sslbl = [r for r in label_rows(database) if r.source == "sslbl"]
    assert {r.action for r in sslbl} == {"none"} and {r.confidence for r in sslbl} == {50}


def test_add_update_remove(database):
    status, out, _ = labels_cli(
        database,
        "add",
        ADA,
        "--client",
        "Thunderbird 128 / NSS",
        "--category",
        "mail-client",
        "--action",
        "allow",
    )
    assert status == 0 and out.startswith("added ja3")
    status, out, _ = labels_cli(database, "add", ADA, "--action", "tarpit", "--tarpit-seconds", "7")
    assert status == 0 and out.startswith("updated ja3")
    (row,) = label_rows(database)
    assert (row.source, row.action, row.tarpit_seconds, row.confidence) == (
        "manual",
        "tarpit",
        7,
        100,
    )
    status, out, _ = labels_cli(database, "add", JA4, "--client", "Chrome")
    assert status == 0 and "ja4" in out  # kind recognised from the value
    status, out, _ = labels_cli(database, "list")
    assert "Chrome" in out and "tarpit 7s" in out
    status, out, _ = labels_cli(database, "remove", ADA)
    assert status == 0 and "removed 1 label" in out
    status, _, err = labels_cli(database, "remove", ADA)
    assert status == 1 and "no label" in err
    assert [r.kind for r in label_rows(database)] == ["ja4"]


@pytest.mark.parametrize(
    "argv",
    [
        ("add", "not-a-hash"),
        ("add", ADA, "--confidence", "101"),
        ("add", ADA, "--action", "tarpit"),  # without seconds
        ("add", ADA, "--action", "explode"),
        ("import", "sslbl", "/nonexistent/list.csv"),
        ("import", "nosuchformat", "x.csv"),
    ],
)
def test_usage_errors_exit_1_without_traceback(database, argv):
    status, _out, err = labels_cli(database, *argv)
    assert status == 1 and "Traceback" not in err


def test_import_of_a_file_with_no_valid_row_fails(database, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("# only comments\nnot,a,hash\n")
    status, _, err = labels_cli(database, "import", "sslbl", str(bad))
    assert status == 1 and "line 2" in err and "is not a sslbl list" in err


def test_exports(database, tmp_path):
    labels_cli(database, "import", "ja3svc-csv", str(FIXTURES / "ja3svc.csv"))
    labels_cli(database, "import", "sslbl", str(FIXTURES / "sslbl.csv"))

    out_file = tmp_path / "deny-ja3.lst"
    status, _, err = labels_cli(database, "export", "suricata", str(out_file), "--source", "sslbl")
    assert status == 0
    assert sorted(out_file.read_text().split()) == [
        "1aa7bf8b97e540ca5edd75f7b8384bfa",
        "8991a387e4cc841740f25d6f5139f92d",
        "b386946a5a44d1ddcc843bc75336dfce",
    ]
    assert f"to_md5; dataset:isset,deny-ja3,type md5,load {out_file}" in err

    status, out, _ = labels_cli(database, "export", "zeek", "--action", "tarpit")
    assert out.splitlines() == [
        "#fields\tindicator\tindicator_type\tmeta.source\tmeta.desc",
        "e7eca2baf4458d095b7f45da28c16c34\tIntel::JA3\tja3svc-manual\tmasscan - scanner - tarpit",
    ]

    # Project formats carry every kind and survive a round trip into another database.
    status, out, _ = labels_cli(database, "export", "ja3svc-json")
    exported = json.loads(out)
    assert {r["kind"] for r in exported} == {"ja3", "ja3_dovecot", "ja4"}
    path = tmp_path / "all.csv"
    labels_cli(database, "export", "ja3svc-csv", str(path))
    other = tmp_path / "other.sqlite3"
    status, out, _ = run_cli(
        "labels", "import", "ja3svc-csv", str(path), "--database-url", f"sqlite:///{other}"
    )
    assert status == 0 and f"{len(exported)} new" in out
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(Label)) == len(exported)
