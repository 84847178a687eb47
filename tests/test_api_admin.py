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
