"""Label list readers and writers (pure): the hand-typed fixtures in tests/fixtures/labels/
mimic each documented format, dirty lines included; expected values are read off the files."""

from __future__ import annotations

import csv
import hashlib
import io
import json

import pytest

from ja3svc.label_formats import (
    IMPORT_FORMATS,
    LabelRow,
    merge_duplicates,
    parse_project_csv,
    parse_project_json,
    render_project_csv,
    render_project_json,
    render_suricata_dataset,
    render_zeek_intel,
    suricata_rule,
)
from tests.support.paths import FIXTURES

LABELS = FIXTURES / "labels"


def parse(fmt: str, name: str):
    with open(LABELS / name, encoding="utf-8", newline="") as fh:
        return IMPORT_FORMATS[fmt].parse(fh)


def problems(result) -> list[tuple[int, str]]:
    return [(p.line, p.message) for p in result.problems]


def test_sslbl():
    r = parse("sslbl", "sslbl.csv")
    assert [(x.value, x.client_name) for x in r.rows] == [
        ("b386946a5a44d1ddcc843bc75336dfce", "Dridex"),
        ("8991a387e4cc841740f25d6f5139f92d", "Adware"),  # trailing spaces stripped
        ("1aa7bf8b97e540ca5edd75f7b8384bfa", "TrickBot"),  # stray quotes stripped
        ("b386946a5a44d1ddcc843bc75336dfce", "Dridex"),  # upper-case hash normalised
    ]
    assert all(x.kind == "ja3" and x.category == "malware" for x in r.rows)
    assert "first seen 2017-07-14 18:08:15" in r.rows[0].note
    assert [line for line, _ in problems(r)] == [14, 15]
    assert "NOT-A-HASH" in r.problems[0].message and "skipped" in r.problems[0].message


def test_salesforce():
    r = parse("salesforce", "salesforce-osx-nix-ja3.csv")
    assert [(x.value, x.client_name) for x in r.rows] == [
        ("ada70206e40642a3e4461f35503241d5", "Test Client A, Test Client B"),
        ("de350869b8c85de67a350c8d186f11e6", "Used by many programs on OSX"),
        ("49a6cf42956937669a01438f26e7c609", "curl 7.64, wget 1.20"),
        ("3e4e87dda5a3162306609b7e330441d2", "Unquoted One, Unquoted Two"),
    ]
    # The 4-line copyright record is not a problem; the bad hash on line 8 is.
    assert problems(r) == [(8, "invalid MD5 hash 'zz350869b8c85de67a350c8d186f11e6', skipped")]


def test_trisul():
    r = parse("trisul", "trisul-ja3fingerprint.json")
    assert [(x.value, x.client_name) for x in r.rows] == [
        ("ada70206e40642a3e4461f35503241d5", "Old Client A"),
        ("de350869b8c85de67a350c8d186f11e6", "Old Client B"),  # hash had a trailing space
        ("3bfbe36922a4c01617fec749578b8299", "Stray Quote Client"),  # line is not valid JSON
        ("0ffee3ba8e615ad22535e7f771690a28", "Mismatched String"),
    ]
    # The strings are kept only when they hash to the given value (README test vectors).
    assert r.rows[0].note.endswith(
        "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0"
    )
    assert r.rows[1].note.endswith("769,4-5-10-9-100-98-3-6-19-18-99,,,")
    assert r.rows[3].note is None
    assert [line for line, _ in problems(r)] == [7, 8, 10]
    assert "does not hash" in r.problems[0].message


def test_foxio():
    r = parse("foxio", "foxio-ja4plus-mapping.csv")
    assert [(x.kind, x.value, x.client_name) for x in r.rows] == [
        ("ja4", "t13d1516h2_8daaf6152771_e5627efa2ab1", "Chromium Browser / Windows"),
        ("ja4", "t13d3112h2_e8f1e7e78f70_6bebaf5329ac", "curl / Linux"),
        ("ja4", "t13d1516h2_8daaf6152771_e5627efa2ab1", "Edge Browser / Windows"),
    ]
    assert r.rows[1].note == "Seen with curl 8"
    # Line 4 has only a JA4H: not a TLS client fingerprint, silently not imported.
    assert problems(r) == [(5, "invalid JA4 fingerprint 't13d15_not_a_ja4', skipped")]


def test_project_csv():
    r = parse("ja3svc-csv", "ja3svc.csv")
    assert [(x.kind, x.value, x.action, x.tarpit_seconds, x.confidence) for x in r.rows] == [
        ("ja3", "ada70206e40642a3e4461f35503241d5", "allow", None, 100),
        ("ja3_dovecot", "b7e9d913d85c071f5b806d59601e9b96", "none", None, 90),
        ("ja3", "e7eca2baf4458d095b7f45da28c16c34", "tarpit", 20, 80),
        ("ja4", "t13d1516h2_8daaf6152771_e5627efa2ab1", "none", None, 70),
    ]
    assert r.rows[1].client_name == "Mutt 2.2.9, GnuTLS"
    assert r.rows[2].note == "trailing spaces"
    assert [line for line, _ in problems(r)] == [6, 7, 9]


def test_project_json_document_and_damaged_lines(tmp_path):
    r = parse("ja3svc-json", "ja3svc.json")
    assert [x.value for x in r.rows] == [
        "ada70206e40642a3e4461f35503241d5",
        "7a8a9b8ca4c0b9d6c1e5c84df1e6e0b1",
        "e7eca2baf4458d095b7f45da28c16c34",
    ]
    assert [str(p) for p in r.problems] == ["entry 3: invalid MD5 hash 'not-a-hash', skipped"]
    # One broken line no longer makes a document: read line by line, lose only that line.
    text = (LABELS / "ja3svc.json").read_text().replace('"Broken"', '"Broken')
    r2 = parse_project_json(io.StringIO(text))
    assert len(r2.rows) == 3 and [p.line for p in r2.problems] == [4]


def test_round_trip_through_project_formats():
    rows = [
        LabelRow(
            "ja3",
            "ada70206e40642a3e4461f35503241d5",
            "Thunderbird, NSS",
            "mail-client",
            "tarpit",
            5,
            "manual",
            90,
            'note with "quotes"\nand a newline',
            1.5,
            2.5,
        ),
        LabelRow(
            "ja4",
            "t13d1516h2_8daaf6152771_e5627efa2ab1",
            None,
            None,
            "none",
            None,
            "foxio",
            60,
            None,
            3.0,
            4.0,
        ),
    ]
    csv_text = "".join(render_project_csv(rows))
    assert parse_project_csv(io.StringIO(csv_text)).rows == rows
    json_text = "".join(render_project_json(rows))
    assert json.loads(json_text)[0]["client_name"] == "Thunderbird, NSS"
    assert parse_project_json(io.StringIO(json_text)).rows == rows


def test_suricata_and_zeek_writers():
    rows = [
        LabelRow(
            "ja3",
            "ada70206e40642a3e4461f35503241d5",
            "Evil\tBot",
            "malware",
            "deny",
            source="sslbl",
        ),
        LabelRow("ja3", "ada70206e40642a3e4461f35503241d5", "Evil Bot", source="trisul"),
        LabelRow("ja4", "t13d1516h2_8daaf6152771_e5627efa2ab1", "Chrome", source="foxio"),
        LabelRow("ja3", "de350869b8c85de67a350c8d186f11e6", None, source="manual"),
    ]
    assert list(render_suricata_dataset(rows)) == [
        "ada70206e40642a3e4461f35503241d5\n",
        "de350869b8c85de67a350c8d186f11e6\n",
    ]
    rule = suricata_rule("bad-ja3", "/etc/suricata/bad-ja3.lst")
    assert "ja3.string; to_md5; dataset:isset,bad-ja3,type md5,load /etc/suricata/bad" in rule
    # JA4 is no MD5: a string dataset, whose file holds each value base64-encoded.
    assert list(render_suricata_dataset(rows, "ja4")) == [
        "dDEzZDE1MTZoMl84ZGFhZjYxNTI3NzFfZTU2MjdlZmEyYWIx\n"
    ]
    assert "ja4.hash; dataset:isset,j,type string,load j.lst;" in suricata_rule("j", "j.lst", "ja4")
    zeek = list(csv.reader(render_zeek_intel(rows), delimiter="\t"))
    assert zeek[0] == ["#fields", "indicator", "indicator_type", "meta.source", "meta.desc"]
    assert zeek[1:] == [
        [
            "ada70206e40642a3e4461f35503241d5",
            "Intel::JA3",
            "ja3svc-sslbl",
            "Evil Bot - malware - deny",
        ],
        ["ada70206e40642a3e4461f35503241d5", "Intel::JA3", "ja3svc-trisul", "Evil Bot"],
        ["de350869b8c85de67a350c8d186f11e6", "Intel::JA3", "ja3svc-manual", "-"],
    ]


def test_merge_keeps_every_client_name():
    merged = merge_duplicates(parse("foxio", "foxio-ja4plus-mapping.csv").rows)
    assert [x.client_name for x in merged] == [
        "Chromium Browser / Windows; Edge Browser / Windows",
        "curl / Linux",
    ]


@pytest.mark.parametrize("fmt", sorted(IMPORT_FORMATS))
def test_garbage_never_raises(fmt):
    junk = ["\ufeff# comment\n", '"unterminated\n', "\x00\x01,,,\n", "{\n", "a,b,c,d,e,f\n", "\n"]
    result = IMPORT_FORMATS[fmt].parse(junk)
    assert result.rows == []


def test_md5_normalisation_matches_hashlib():
    # Independent oracle for the string check of the Trisul reader: hashlib itself.
    s = "771,49195-49199,0-10-11,23-24,0"
    assert hashlib.md5(s.encode()).hexdigest() == "3bfbe36922a4c01617fec749578b8299"
