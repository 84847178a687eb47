"""The one label validator (ja3svc.vocabulary.check_label) and the list readers that use it.

Values are written out by hand from the formats' definitions (../shared/spec/fingerprints.md):
an MD5 is 32 hex digits, a JA4 is ``a_b_c`` with the a-part's fixed fields and two 12-digit
hex hashes.
"""

from __future__ import annotations

import pytest

from ja3svc.label_formats import LabelRow, check_row, merge_duplicates, parse_project_csv
from ja3svc.vocabulary import (
    FINGERPRINT_KINDS,
    VALUE_FORMATS,
    InvalidLabel,
    check_label,
    fingerprint_value,
    guess_kind,
)

MD5 = "ada70206e40642a3e4461f35503241d5"
JA4 = "t13d1516h2_8daaf6152771_e5627efa2ab1"
MD5_KINDS = [k for k in FINGERPRINT_KINDS if k != "ja4"]


def reason(kind: str, value: str, **fields: object) -> str:
    with pytest.raises(InvalidLabel) as info:
        check_label(kind, value, **fields)  # type: ignore[arg-type]
    return str(info.value)


def test_every_kind_has_a_value_format():
    assert set(VALUE_FORMATS) == set(FINGERPRINT_KINDS)
    assert {VALUE_FORMATS[k] for k in MD5_KINDS} == {"md5"} and VALUE_FORMATS["ja4"] == "ja4"


@pytest.mark.parametrize("kind", MD5_KINDS)
def test_md5_kinds_take_md5_only_in_lower_case(kind):
    assert check_label(kind, f"  {MD5.upper()} ") == MD5
    for bad in ("xyz", "", MD5[:-1], MD5 + "0", "g" * 32, JA4):
        assert reason(kind, bad) == f"invalid MD5 hash {bad.strip()!r}"


def test_ja4_takes_ja4_only_and_keeps_its_case():
    alpn_upper = "t13d1516H2_8daaf6152771_e5627efa2ab1"  # ALPN characters are as sent
    assert check_label("ja4", alpn_upper) == alpn_upper
    for bad in (
        "xyz",
        MD5,
        JA4.upper(),
        "t13d15_not_a_ja4",
        "x13d1516h2_8daaf6152771_e5627efa2ab1",
    ):
        assert reason("ja4", bad) == f"invalid JA4 fingerprint {bad!r}"


def test_guess_kind():
    assert guess_kind(JA4) == "ja4" and guess_kind(MD5) == "ja3" and guess_kind("xyz") == "ja3"


def test_the_rest_of_a_label():
    assert reason("md5", MD5) == "unknown kind 'md5' (one of ja3, ja3n, ja4, ja3s, ja3_dovecot)"
    assert reason("ja3", MD5, action="block").startswith("unknown action 'block'")
    assert reason("ja3", MD5, confidence=101) == "confidence 101 is not between 0 and 100"
    assert reason("ja3", MD5, confidence=-1) == "confidence -1 is not between 0 and 100"
    assert (
        reason("ja3", MD5, tarpit_seconds=3601) == "tarpit_seconds 3601 is not between 0 and 3600"
    )
    assert reason("ja3", MD5, client_name="x" * 201) == (
        "client_name is 201 characters long, at most 200"
    )
    assert reason("ja3", MD5, category="c" * 33) == "category is 33 characters long, at most 32"
    assert reason("ja3", MD5, source="s" * 33) == "source is 33 characters long, at most 32"
    assert reason("ja3", MD5, source=" ") == "source must not be empty"
    # At the limits, and a tarpit without seconds (the service's default applies).
    assert check_label(
        "ja3", MD5, action="tarpit", client_name="x" * 200, category="c" * 32, source="s" * 32,
        confidence=0, tarpit_seconds=None,
    ) == MD5  # fmt: skip
    assert fingerprint_value("ja3s", MD5.upper()) == MD5


def test_rows_are_refused_not_clipped():
    row = LabelRow("ja3", MD5.upper(), client_name="n" * 201)
    with pytest.raises(InvalidLabel, match="client_name is 201 characters long"):
        check_row(row)
    assert check_row(LabelRow("ja3", MD5.upper())).value == MD5


def test_project_csv_reports_the_validators_reason():
    lines = [
        "kind,value,client_name,confidence\n",
        f"ja3,{MD5},ok,50\n",
        "ja3s,xyz,bad value,50\n",
        f"ja3,{MD5},{'n' * 201},50\n",
        f"ja3,{MD5},ok,101\n",
    ]
    r = parse_project_csv(lines)
    assert [row.value for row in r.rows] == [MD5]
    assert [(p.line, p.message) for p in r.problems] == [
        (3, "invalid MD5 hash 'xyz', skipped"),
        (4, "client_name is 201 characters long, at most 200, skipped"),
        (5, "confidence 101 is not between 0 and 100, skipped"),
    ]


def test_merged_names_stay_within_the_limit():
    names = [f"Application number {i:03d}" for i in range(20)]  # 24 characters each
    merged = merge_duplicates(LabelRow("ja4", JA4, client_name=n, source="foxio") for n in names)
    assert len(merged) == 1
    name = merged[0].client_name or ""
    assert len(name) <= 200 and name.split("; ") == names[: len(name.split("; "))]
    assert check_row(merged[0]) == merged[0]
