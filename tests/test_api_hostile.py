"""Hostile input to the HTTP service: every request gets an answer below 500, with a reason.

Each case was a 500 once (RecursionError, OverflowError, a NOT NULL violation, PostgreSQL's
refusal of NUL, a lone surrogate that cannot be encoded); they run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from ja3svc.api.app import create_app

from tests.conftest import BACKENDS
from tests.support.api import ADMIN, API_KEY, DOVECOT_HEADERS, AppClient, H, allow_24, make_settings

ADMIN_H = {"X-Admin-Token": ADMIN, "Content-Type": "application/json"}
AUTH = {**DOVECOT_HEADERS, "X-API-Key": API_KEY}
HUGE_ID = "9223372036854775808"  # 2**63: one past the largest 64-bit row id


@pytest.fixture(params=BACKENDS)
def client(request, tmp_path):
    database = None
    if request.param == "postgresql":
        from ja3svc.store.database import Database

        database = Database.from_url(request.getfixturevalue("pg_migrated_url"))
    with AppClient(create_app(make_settings(tmp_path), database=database)) as c:
        yield c


def _label(client: AppClient) -> int:
    r = client.post("/api/v1/labels", json={"kind": "ja3", "value": H}, headers=ADMIN_H)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("path", ["/policy?command=allow", "/policy?command=report"])
def test_deeply_nested_json_to_the_policy_endpoint_is_400(client, path):
    r = client.post(path, content=_nested(990), headers=AUTH)
    assert r.status_code == 400 and "nested" in r.json()["reason"]
    r = client.post(path, content=_nested(100_000), headers=AUTH)
    assert r.status_code == 400


def test_deeply_nested_json_to_the_admin_api_is_4xx(client):
    r = client.post("/api/v1/labels", content=_nested(990), headers=ADMIN_H)
    assert 400 <= r.status_code < 500 and r.json()["reason"]
    r = client.patch(f"/api/v1/labels/{_label(client)}", content=_nested(990), headers=ADMIN_H)
    assert 400 <= r.status_code < 500 and r.json()["reason"]


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize("label_id", [HUGE_ID, "-" + HUGE_ID, "99999999999999999999999"])
def test_label_ids_beyond_64_bits_are_not_found(client, method, label_id):
    kw = {"json": {"confidence": 10}} if method == "PATCH" else {}
    r = client.request(method, f"/api/v1/labels/{label_id}", headers=ADMIN_H, **kw)
    assert r.status_code in (404, 422) and r.json()["reason"]


def test_patch_with_null_for_a_required_field_is_422(client):
    label_id = _label(client)
    for field in ("confidence", "action"):
        r = client.patch(f"/api/v1/labels/{label_id}", json={field: None}, headers=ADMIN_H)
        assert r.status_code == 422 and field in r.json()["reason"]
    # Nullable fields may still be cleared.
    r = client.patch(f"/api/v1/labels/{label_id}", json={"client_name": None}, headers=ADMIN_H)
    assert r.status_code == 200 and r.json()["client_name"] is None
    assert client.get(f"/api/v1/labels/{label_id}", headers=ADMIN_H).json()["confidence"] == 100


BAD_TEXT = ["a\x00b", "a\ud800b", "\udfff"]


@pytest.mark.parametrize("bad", BAD_TEXT, ids=["nul", "high-surrogate", "low-surrogate"])
@pytest.mark.parametrize("field", ["value", "client_name", "category", "note", "source"])
def test_nul_and_lone_surrogates_in_label_fields_are_422(client, bad, field):
    body = {"kind": "ja3", "value": H, field: bad}
    # json.dumps escapes both, exactly as a hostile client would send them.
    r = client.post("/api/v1/labels", content=json.dumps(body), headers=ADMIN_H)
    assert r.status_code == 422 and field in r.json()["reason"]
    if field not in ("value", "source"):
        label_id = _label(client)
        r = client.patch(
            f"/api/v1/labels/{label_id}", content=json.dumps({field: bad}), headers=ADMIN_H
        )
        assert r.status_code == 422 and field in r.json()["reason"]


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/fingerprints?q=" + quote("ab\x00c"),
        "/api/v1/decisions?username=" + quote("al\x00ice"),
        "/api/v1/fingerprints/ja3/" + quote("8a9d\x00"),
    ],
)
def test_nul_in_query_and_path_values_is_422(client, url):
    r = client.get(url, headers=ADMIN_H)
    assert r.status_code == 422 and r.json()["reason"]


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/fingerprints?q=%ED%A0%80",  # a surrogate's UTF-8 form: not valid UTF-8
        "/api/v1/fingerprints?q=%FF%FE",
        "/api/v1/decisions?username=%ED%BF%BF",
    ],
)
def test_invalid_utf8_in_query_values_is_never_a_5xx(client, url):
    r = client.get(url, headers=ADMIN_H)
    assert r.status_code in (200, 422), r.text


@pytest.mark.parametrize("bad", ["\\u0000", "\\ud800", "\\uDFFF", "x\\u0000y"])
@pytest.mark.parametrize("command", ["allow", "report"])
def test_nul_and_lone_surrogates_in_dovecot_attributes_are_400(client, bad, command):
    body = allow_24(login="mallory").replace('"mallory"', f'"{bad}"')
    if command == "report":
        body = body[:-1] + ',"success":false,"policy_reject":false}'
    r = client.post(f"/policy?command={command}", content=body, headers=AUTH)
    assert r.status_code == 400 and "login" in r.json()["reason"]
    # An escaped character that is fine stays fine.
    ok = allow_24(login="mallory").replace('"mallory"', '"m\\u00e9lanie"')
    assert client.post("/policy?command=allow", content=ok, headers=AUTH).json() == {"status": 0}
