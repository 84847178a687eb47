"""The lookup and admin API under /api/v1."""

from __future__ import annotations

import pytest
from ja3svc.api.app import create_app

from tests.support.api import ADMIN, API_KEY, AppClient, H, allow_24, make_settings, report_24

ADMIN_H = {"X-Admin-Token": ADMIN}
AUTH = {"X-API-Key": API_KEY}


@pytest.fixture
def client(tmp_path):
    with AppClient(create_app(make_settings(tmp_path))) as c:
        yield c


def test_label_crud_and_lookup(client):
    r = client.post(
        "/api/v1/labels",
        json={"kind": "ja3", "value": H.upper(), "action": "tarpit", "client_name": "Mutt"},
        headers=ADMIN_H,
    )
    assert r.status_code == 201
    label = r.json()
    assert label["value"] == H and label["source"] == "manual"
    # Same (kind, value, source) replaces.
    again = client.post(
        "/api/v1/labels", json={"kind": "ja3", "value": H, "action": "deny"}, headers=ADMIN_H
    ).json()
    assert again["id"] == label["id"] and again["action"] == "deny"
    r = client.patch(f"/api/v1/labels/{label['id']}", json={"confidence": 40}, headers=ADMIN_H)
    assert r.json()["confidence"] == 40
    assert client.get(f"/api/v1/labels/{label['id']}", headers=ADMIN_H).json()["confidence"] == 40
    look = client.get(f"/api/v1/fingerprints/ja3/{H}", headers=ADMIN_H).json()
    assert look["known"] and look["labels"][0]["action"] == "deny"
    assert client.delete(f"/api/v1/labels/{label['id']}", headers=ADMIN_H).status_code == 200
    assert client.get(f"/api/v1/labels/{label['id']}", headers=ADMIN_H).status_code == 404
    assert client.delete(f"/api/v1/labels/{label['id']}", headers=ADMIN_H).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "md5", "value": H},
        {"kind": "ja3", "value": H, "action": "block"},
        {"kind": "ja3", "value": H, "confidence": 101},
        {"kind": "ja3", "value": ""},
    ],
)
def test_label_validation_is_422_with_reason(client, body):
    r = client.post("/api/v1/labels", json=body, headers=ADMIN_H)
    assert r.status_code == 422 and r.json()["reason"]


def test_search_top_stats(client):
    client.post(
        "/api/v1/labels",
        json={"kind": "ja3", "value": H, "client_name": "Thunderbird 115"},
        headers=ADMIN_H,
    )
    assert client.get("/api/v1/fingerprints?q=thunder", headers=ADMIN_H).json()[0]["value"] == H
    assert client.get(f"/api/v1/fingerprints?q={H[:6]}", headers=ADMIN_H).json()
    for i in range(3):
        client.post("/?command=report", content=report_24(f"u{i}", f"s{i}", False), headers=AUTH)
    client.app.state.service.writer.flush()
    top = client.get("/api/v1/fingerprints/top?kind=ja3_dovecot&by=failures", headers=ADMIN_H)
    assert top.json()[0] == {
        "kind": "ja3_dovecot",
        "value": H,
        "distinct_accounts": 3,
        "failures": 3,
    }
    assert client.get("/api/v1/fingerprints/top", headers=ADMIN_H).json() == []
    client.post("/?command=allow", content=allow_24(), headers=AUTH)
    stats = client.get("/api/v1/stats", headers=ADMIN_H).json()
    assert stats["tables"]["labels"] == 1 and stats["tables"]["auth_failures"] == 3
    assert stats["degraded"] is False


def test_bad_kind_in_path(client):
    assert client.get(f"/api/v1/fingerprints/md5/{H}", headers=ADMIN_H).status_code == 422


def test_label_list_filters_and_pages(client):
    values = [f"{i:032x}" for i in range(5)]
    for i, v in enumerate(values):
        action = "deny" if i % 2 else "none"
        r = client.post(
            "/api/v1/labels", json={"kind": "ja3", "value": v, "action": action}, headers=ADMIN_H
        )
        assert r.status_code == 201
    page = client.get("/api/v1/labels?limit=2", headers=ADMIN_H).json()
    assert [i["value"] for i in page["items"]] == values[:-3:-1]  # newest first
    rest = client.get(f"/api/v1/labels?before={page['next_before']}", headers=ADMIN_H).json()
    assert [i["value"] for i in rest["items"]] == values[2::-1] and rest["next_before"] is None
    denied = client.get("/api/v1/labels?action=deny", headers=ADMIN_H).json()["items"]
    assert {i["value"] for i in denied} == {values[1], values[3]}
    assert denied[0]["created_at"].endswith("Z")  # ISO-8601 UTC
    assert client.get("/api/v1/labels?action=block", headers=ADMIN_H).status_code == 422


def test_unknown_filters_are_refused_not_ignored(client):
    r = client.get("/api/v1/decisions?verdict=reject", headers=ADMIN_H)
    assert r.status_code == 422 and "verdict" in r.json()["reason"]
    assert client.get("/api/v1/labels?kinds=ja3", headers=ADMIN_H).status_code == 422


def test_decisions_filters_and_iso_times(client):
    client.post(
        "/api/v1/labels", json={"kind": "ja3", "value": H, "action": "deny"}, headers=ADMIN_H
    )
    client.post("/?command=allow", content=allow_24("mallory", "m1"), headers=AUTH)
    rows = client.get("/api/v1/decisions?action=reject", headers=ADMIN_H).json()
    assert [r["username"] for r in rows] == ["mallory"] and rows[0]["rule"] == "label_deny"
    assert rows[0]["ts"].endswith("Z")
    assert client.get("/api/v1/decisions?action=allow", headers=ADMIN_H).json() == []
    for since in ("2000-01-01T00:00:00Z", "946684800", "2000-01-01"):
        assert len(client.get(f"/api/v1/decisions?since={since}", headers=ADMIN_H).json()) == 1
    assert client.get("/api/v1/decisions?until=2000-01-01", headers=ADMIN_H).json() == []
    r = client.get("/api/v1/decisions?since=yesterday", headers=ADMIN_H)
    assert r.status_code == 422 and "ISO-8601" in r.json()["reason"]
    assert client.get(f"/api/v1/decisions?fingerprint={H}", headers=ADMIN_H).json()
    assert client.get("/api/v1/decisions?rule=default", headers=ADMIN_H).json() == []


def test_label_value_must_be_a_fingerprint(client):
    r = client.post("/api/v1/labels", json={"kind": "ja3", "value": "xyz"}, headers=ADMIN_H)
    assert r.status_code == 422 and "MD5" in r.json()["reason"]
    r = client.post("/api/v1/labels", json={"kind": "ja4", "value": H}, headers=ADMIN_H)
    assert r.status_code == 422


def test_ja3_lookup_shows_the_accounts_of_the_dovecot_hash(client):
    # Dovecot 2.4 sends its own hash; for plain OpenSSL clients it equals standard JA3, so the
    # ja3 page must show the accounts learned under ja3_dovecot.
    for i in range(3):
        client.post("/?command=allow", content=allow_24("erin", f"e{i}"), headers=AUTH)
        client.post("/?command=report", content=report_24("erin", f"e{i}", True), headers=AUTH)
    client.post("/?command=report", content=report_24("frank", "f1", False), headers=AUTH)
    client.app.state.service.writer.flush()
    look = client.get(f"/api/v1/fingerprints/ja3/{H}", headers=ADMIN_H).json()
    users = {u["username"]: u for u in look["users"]}
    assert users["erin"]["successes"] == 3 and users["frank"]["failures"] == 1
    assert (look["known"] and look["users"][0]["last_seen"] is None) or users["erin"]["last_seen"]
    assert client.get("/api/v1/fingerprints/ja3/xyz", headers=ADMIN_H).status_code == 422


def test_lookup_joins_the_dovecot_variants_a_capture_recorded(client):
    from ja3svc.store.models import DovecotHash

    # What a capture records for one hello: Dovecot's hash under both OpenSSL profiles.
    h30, h32, ja3 = H, "11111111111111111111111111111111", "22222222222222222222222222222222"
    ja3n, ja4 = "33333333333333333333333333333333", "t13d1516h2_8daaf6152771_02713d6af862"
    store = client.app.state.service.store
    with store.write_session() as s, s.begin():
        s.add(DovecotHash(openssl30=h30, openssl32=h32, ja3_hash=ja3, ja3n_hash=ja3n, ja4=ja4,
                          first_seen=1.0, last_seen=2.0))  # fmt: skip
    look = client.get(f"/api/v1/fingerprints/ja3_dovecot/{h32}", headers=ADMIN_H).json()
    assert look["dovecot_profiles"] == ["openssl-3.2"]
    client.post(
        "/api/v1/labels", json={"kind": "ja4", "value": ja4, "action": "deny"}, headers=ADMIN_H
    )
    look = client.get(f"/api/v1/fingerprints/ja3_dovecot/{h32}", headers=ADMIN_H).json()
    family = {(f["kind"], f["value"]) for f in look["family"]}
    assert ("ja3_dovecot", h30) in family and ("ja4", ja4) in family
