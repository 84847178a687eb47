"""Imports that cannot do damage: the wrong format is refused (naming the line) before anything
is written, --dry-run writes nothing, `labels remove --source` undoes an import, and what a
list holds that is not imported is said."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ja3svc.store.models import Label
from sqlalchemy import select

from ja3svc.label_formats import IMPORT_FORMATS
from tests.support.cli import run_cli
from tests.support.database import url_of

FIXTURES = Path(__file__).parent / "fixtures" / "labels"
PCAPS = Path(__file__).parent / "pcaps"
FILES = {
    "sslbl": "sslbl.csv",
    "salesforce": "salesforce-osx-nix-ja3.csv",
    "trisul": "trisul-ja3fingerprint.json",
    "foxio": "foxio-ja4plus-mapping.csv",
    "ja3svc-csv": "ja3svc.csv",
    "ja3svc-json": "ja3svc.json",
}


def labels_cli(database, *argv: str) -> tuple[int, str, str]:
    return run_cli("labels", *argv, "--database-url", url_of(database))


def snapshot(database) -> list[tuple]:
    with database.session() as s:
        return [
            (r.kind, r.value, r.source, r.client_name, r.action, r.confidence, r.note)
            for r in s.scalars(select(Label).order_by(Label.kind, Label.value, Label.source))
        ]


@pytest.mark.parametrize("fmt", sorted(IMPORT_FORMATS))
@pytest.mark.parametrize("other", sorted(FILES))
def test_every_format_refuses_every_other_formats_file(fmt, other):
    if fmt == other:
        return
    with open(FIXTURES / FILES[other], encoding="utf-8", newline="") as fh:
        result = IMPORT_FORMATS[fmt].parse(fh)
    assert result.refused is not None, (fmt, other, result.rows)
    assert result.rows == []
    # The line named is a line of the file that holds content.
    lines = (FIXTURES / FILES[other]).read_text().splitlines()
    assert lines[result.refused.line - 1].strip()


def test_sslbl_file_given_as_salesforce_is_refused_and_changes_nothing(database):
    assert labels_cli(database, "import", "salesforce", str(FIXTURES / FILES["salesforce"]))[0] == 0
    before = snapshot(database)
    status, out, err = labels_cli(database, "import", "salesforce", str(FIXTURES / "sslbl.csv"))
    assert status == 1 and out == ""
    assert "is not a salesforce list: line 10:" in err and "nothing imported" in err
    assert len(err.splitlines()) == 1
    assert snapshot(database) == before


def test_dry_run_shows_the_changes_and_writes_nothing(database, tmp_path):
    sslbl = str(FIXTURES / "sslbl.csv")
    status, out, _ = labels_cli(database, "import", "sslbl", sslbl, "--dry-run")
    assert status == 0
    assert snapshot(database) == []
    assert "would import" in out and "3 new" in out and "nothing written (--dry-run)" in out
    assert sum(line.startswith("new ja3 ") for line in out.splitlines()) == 3
    assert "new ja3 b386946a5a44d1ddcc843bc75336dfce [sslbl]: client_name 'Dridex'" in out

    assert labels_cli(database, "import", "sslbl", sslbl)[0] == 0
    before = snapshot(database)
    # The same list again, with a different action: three changes, none written.
    status, out, _ = labels_cli(
        database, "import", "sslbl", sslbl, "--dry-run", "--action", "tarpit",
        "--tarpit-seconds", "4",
    )  # fmt: skip
    assert status == 0 and "0 new, 3 updated (3 with new values)" in out
    changes = [line for line in out.splitlines() if line.startswith("change ")]
    assert len(changes) == 3
    assert all("action 'none' -> 'tarpit', tarpit_seconds None -> 4" in c for c in changes)
    assert snapshot(database) == before
    # Unchanged: nothing listed.
    status, out, _ = labels_cli(database, "import", "sslbl", sslbl, "--dry-run")
    assert "(0 with new values)" in out and not [x for x in out.splitlines() if " ja3 " in x]


def test_remove_by_source_undoes_an_import_and_only_it(database):
    labels_cli(database, "add", "ada70206e40642a3e4461f35503241d5", "--client", "by hand")
    assert labels_cli(database, "import", "salesforce", str(FIXTURES / FILES["salesforce"]))[0] == 0
    before = snapshot(database)
    assert labels_cli(database, "import", "sslbl", str(FIXTURES / "sslbl.csv"))[0] == 0
    status, out, _ = labels_cli(database, "remove", "--source", "sslbl")
    assert status == 0 and out == "removed 3 labels of source sslbl\n"
    assert snapshot(database) == before
    status, _, err = labels_cli(database, "remove", "--source", "sslbl")
    assert status == 1 and "no label of source sslbl" in err
    status, _, err = labels_cli(database, "remove")
    assert status == 1 and "give a HASH, --source NAME, or both" in err


def test_import_under_source_manual_is_refused(database):
    status, _, err = labels_cli(
        database, "import", "sslbl", str(FIXTURES / "sslbl.csv"), "--source", "manual"
    )
    assert status == 1 and "source 'manual' is for `labels add`" in err
    assert snapshot(database) == []


def test_trisul_string_with_a_stray_prefix_is_kept_when_it_hashes_right(database, tmp_path):
    # The JA3 string and MD5 of a real capture, as tshark computed them (independent oracle).
    hello = json.loads((PCAPS / "openssl-tls12.expected.json").read_text())["hellos"][0]
    ja3, md5 = hello["ja3"], hello["ja3_hash"]
    wrong = "0ffee3ba8e615ad22535e7f771690a28"
    lines = [
        json.dumps({"desc": "escaped prefix", "ja3_hash": md5, "ja3_str": '", ' + ja3}),
        # The same damage unescaped: the line is no longer JSON.
        f'{{"desc":"raw prefix", "ja3_hash":"{md5.upper()}", "ja3_str":"", {ja3}"}}',
        json.dumps({"desc": "prefix, wrong hash", "ja3_hash": wrong, "ja3_str": '", ' + ja3}),
    ]
    path = tmp_path / "trisul.json"
    path.write_text("\n".join(lines) + "\n")
    status, out, err = labels_cli(database, "import", "trisul", str(path))
    assert status == 0, err
    assert "2 new" in out
    assert err.splitlines() == [
        f"{path}: line 3: ja3_str does not hash to ja3_hash; string ignored"
    ]
    notes = {(r[1], r[6]) for r in snapshot(database)}
    assert notes == {(md5, f"JA3 string: {ja3}"), (wrong, None)}


def test_foxio_columns_not_imported_are_reported(database, tmp_path):
    status, out, err = labels_cli(database, "import", "foxio", str(FIXTURES / FILES["foxio"]))
    assert status == 0
    assert "not imported (ja3svc keeps the TLS client's ja4 only): 1 value(s) in column ja4h" in err
    path = tmp_path / "ja4plus.csv"
    path.write_text(
        "Application,Library,Device,OS,User-Agent String,ja4,ja4s,ja4h,ja4x,ja4t,ja4tscan,Notes\n"
        "Nginx,,,,,,t130200_1301_234ea6891581,,,,,\n"
        "curl,,,,,t13d3112h2_e8f1e7e78f70_6bebaf5329ac,t130200_1302_a56c5b993250,,,,,\n"
    )
    status, out, err = labels_cli(database, "import", "foxio", str(path))
    assert status == 0 and "0 new, 1 updated" in out
    note = "not imported (ja3svc keeps the TLS client's ja4 only): 2 value(s) in column ja4s"
    assert err == f"{path}: {note}\n"


def test_an_import_never_changes_a_label_made_by_hand(database, tmp_path):
    assert labels_cli(database, "add", "ada70206e40642a3e4461f35503241d5", "--client", "mine",
                      "--action", "allow")[0] == 0  # fmt: skip
    before = snapshot(database)
    # A ja3svc export that says otherwise about the same (kind, value, source).
    path = tmp_path / "other.csv"
    path.write_text(
        "kind,value,client_name,action,source\n"
        "ja3,ada70206e40642a3e4461f35503241d5,someone else,deny,manual\n"
        "ja3,de350869b8c85de67a350c8d186f11e6,new one,none,manual\n"
    )
    status, out, err = labels_cli(database, "import", "ja3svc-csv", str(path))
    assert status == 0, err
    assert "1 new, 0 updated (0 with new values), 1 manual label(s) kept as they are" in out
    after = snapshot(database)
    assert [r for r in after if r[1] == "ada70206e40642a3e4461f35503241d5"] == before
    assert len(after) == 2
