"""The operator console under /console, through the real app (httpx over ASGI, real SQLite).

The browser test (tests/test_console_browser.py) drives the same pages with chromium and a real
Dovecot; these tests pin the security rules and each page's behaviour directly.
"""

from __future__ import annotations

import re

import pytest
from ja3svc.api.app import create_app

from tests.support.api import ADMIN, API_KEY, AppClient, H, allow_24, make_settings, report_24

AUTH = {"X-API-Key": API_KEY}
OTHER = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def client(tmp_path):
    with AppClient(create_app(make_settings(tmp_path, reject_message="Go away"))) as c:
        yield c


def sign_in(client, token: str = ADMIN):
    """POST the sign-in form; the client's cookie jar is emptied so that every later request
    carries exactly the cookies a test gives it."""
    client.http.cookies.clear()
    form = client.get("/console/login")
    nonce = re.search(r'name="login_csrf" value="([^"]+)"', form.text).group(1)
    r = client.post(
        "/console/login",
        data={"login_csrf": nonce, "token": token, "next": "/console/decisions"},
        headers={"Cookie": f"ja3svc_login_csrf={nonce}"},
    )
    client.http.cookies.clear()
    return r


@pytest.fixture
def session(client):
    r = sign_in(client)
    assert r.status_code == 303 and r.headers["location"] == "/console/decisions"
    cookie = r.cookies["ja3svc_console"]
    page = client.get("/console/", headers={"Cookie": f"ja3svc_console={cookie}"})
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    return {"cookies": {"Cookie": f"ja3svc_console={cookie}"}, "csrf": csrf}


def test_pages_need_a_session(client):
    r = client.get("/console/decisions?verdict=reject")
    assert r.status_code == 303
    assert r.headers["location"] == "/console/login?next=%2Fconsole%2Fdecisions%3Fverdict%3Dreject"
    bogus = {"Cookie": "ja3svc_console=not-a-session"}
    assert client.get("/console/labels", headers=bogus).status_code == 303
    r = client.post(f"/console/fingerprints/ja3/{H}/label", data={"action": "deny"}, headers=bogus)
    assert r.status_code == 401


def test_session_cookie_and_security_headers(client):
    r = sign_in(client)
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("ja3svc_console="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http here; see the next test for TLS
    sid = r.cookies["ja3svc_console"]
    page = client.get("/console/", headers={"Cookie": f"ja3svc_console={sid}"})
    csp = page.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    # No inline script or style anywhere: the CSP would block it.
    assert "<script>" not in page.text and "style=" not in page.text
    assert client.get("/console/static/console.css").headers["content-type"].startswith("text/css")


def test_secure_cookie_is_configurable(tmp_path):
    settings = make_settings(tmp_path)
    settings.console.cookie_secure = True
    with AppClient(create_app(settings)) as c:
        r = sign_in(c)
        assert any(
            h.startswith("ja3svc_console=") and h.endswith("Secure")
            for h in r.headers.get_list("set-cookie")
        )


def test_wrong_token_and_forged_login_are_refused(client):
    r = sign_in(client, "wrong")
    assert r.status_code == 401 and "Wrong admin token" in r.text
    assert "ja3svc_console=" not in " ".join(r.headers.get_list("set-cookie"))
    # A login form posted from elsewhere has no matching double-submit cookie.
    r = client.post("/console/login", data={"login_csrf": "x", "token": ADMIN})
    assert r.status_code == 403


def test_open_redirect_after_login_is_not_followed(client):
    form = client.get("/console/login?next=//evil.example/")
    assert 'name="next" value="/console/"' in form.text


def test_wrong_csrf_token_is_refused_and_changes_nothing(client, session):
    url = f"/console/fingerprints/ja3/{H}/label"
    for data in ({"action": "deny"}, {"action": "deny", "csrf": "0" * 64}):
        r = client.post(url, data=data, headers=session["cookies"])
        assert r.status_code == 403 and "security token" in r.text
    assert client.get("/api/v1/labels", headers={"X-Admin-Token": ADMIN}).json()["items"] == []


def test_logout_ends_the_session_server_side(client, session):
    r = client.post("/console/logout", data={"csrf": session["csrf"]}, headers=session["cookies"])
    assert r.status_code == 303
    # The old cookie, replayed, no longer opens anything.
    assert client.get("/console/", headers=session["cookies"]).status_code == 303
    r = client.post(
        f"/console/fingerprints/ja3/{H}/label",
        data={"action": "deny", "csrf": session["csrf"]},
        headers=session["cookies"],
    )
    assert r.status_code == 401


def test_label_deny_from_the_fingerprint_page_refuses_the_next_login(client, session):
    assert client.post("/?command=allow", content=allow_24(), headers=AUTH).json()["status"] == 0
    page = client.get(f"/console/fingerprints/ja3_dovecot/{H}", headers=session["cookies"])
    assert page.status_code == 200 and "Go away" in page.text  # the message clients will see
    r = client.post(
        f"/console/fingerprints/ja3_dovecot/{H}/label",
        data={"action": "deny", "csrf": session["csrf"], "client_name": "bad bot"},
        headers=session["cookies"],
    )
    assert r.status_code == 303
    # The service's label cache was invalidated: the very next allow is refused.
    verdict = client.post("/?command=allow", content=allow_24(session="new"), headers=AUTH).json()
    assert verdict == {"status": -1, "msg": "Go away"}
    labels = client.get("/console/labels", headers=session["cookies"]).text
    assert H in labels and "bad bot" in labels
    decisions = client.get("/console/decisions?verdict=reject", headers=session["cookies"]).text
    assert "label_deny" in decisions and "manual: deny" in decisions
    # Remove it again from the labels list.
    label_id = re.search(r'/console/labels/(\d+)/delete', labels).group(1)
    r = client.post(
        f"/console/labels/{label_id}/delete",
        data={"csrf": session["csrf"]},
        headers=session["cookies"],
    )
    assert r.status_code == 303
    assert client.post("/?command=allow", content=allow_24(session="3"), headers=AUTH).json() == {
        "status": 0,
        "msg": "",
    } or client.post("/?command=allow", content=allow_24(session="4"), headers=AUTH).json()[
        "status"
    ] == 0


def test_label_form_rejects_bad_values(client, session):
    r = client.post(
        "/console/fingerprints/ja3/xyz/label",
        data={"action": "deny", "csrf": session["csrf"]},
        headers=session["cookies"],
    )
    assert r.status_code == 422 and "invalid MD5" in r.text
    r = client.post(
        f"/console/fingerprints/ja3/{H}/label",
        data={"action": "tarpit", "tarpit_seconds": "-3", "csrf": session["csrf"]},
        headers=session["cookies"],
    )
    assert r.status_code == 422


def test_tarpit_label_and_its_edit_form(client, session):
    def stored() -> dict:
        items = client.get("/api/v1/labels", headers={"X-Admin-Token": ADMIN}).json()["items"]
        assert len(items) == 1, items
        return items[0]

    # From the fingerprint page a tarpit without seconds takes the service's (default 5 s).
    r = client.post(
        f"/console/fingerprints/ja3/{H}/label",
        data={"action": "tarpit", "csrf": session["csrf"], "category": "scanner"},
        headers=session["cookies"],
    )
    assert r.status_code == 303 and "tarpit+5+s" in r.headers["location"], r.headers
    label = stored()
    assert (label["action"], label["tarpit_seconds"], label["category"]) == ("tarpit", 5, "scanner")
    edit = f"/console/labels/{label['id']}"
    assert "Edit label" in client.get(edit, headers=session["cookies"]).text
    r = client.post(
        edit, data={"action": "block", "csrf": session["csrf"]}, headers=session["cookies"]
    )
    assert r.status_code == 422 and "action must be one of" in r.text
    # The edit form sets no seconds of its own: the label keeps none.
    r = client.post(
        edit,
        data={"action": "tarpit", "csrf": session["csrf"], "confidence": "40", "note": "slow"},
        headers=session["cookies"],
    )
    assert r.status_code == 303 and r.headers["location"] == f"{edit}?done=Saved."
    label = stored()
    assert (label["action"], label["tarpit_seconds"], label["category"]) == ("tarpit", None, None)
    assert (label["confidence"], label["note"], label["source"]) == (40, "slow", "manual")
    r = client.post(
        edit,
        data={"action": "allow", "tarpit_seconds": "9", "csrf": session["csrf"]},
        headers=session["cookies"],
    )
    assert r.status_code == 303
    assert (stored()["action"], stored()["tarpit_seconds"]) == ("allow", None)


def test_decisions_filters_and_explanations(client, session):
    for i in range(3):
        client.post("/?command=allow", content=allow_24(f"user{i}", f"s{i}"), headers=AUTH)
        client.post("/?command=report", content=report_24(f"user{i}", f"s{i}", True), headers=AUTH)
    ck = session["cookies"]
    page = client.get("/console/decisions?user=user1", headers=ck).text
    assert page.count("<tr>") == 2  # header row and user1's one allow
    assert "unknown_fingerprint" in page and "Nobody labelled this fingerprint" in page
    page = client.get("/console/decisions?command=report&verdict=success", headers=ck).text
    assert page.count('class="pill ok">success') == 3
    assert "not one of" in client.get("/console/decisions?verdict=bogus", headers=ck).text
    assert "is not a time" in client.get("/console/decisions?since=yesterday", headers=ck).text
    empty = client.get("/console/decisions?until=2001-01-01T00:00:00Z", headers=ck).text
    assert "No decision matches" in empty
    recent = client.get("/console/decisions?since=1h", headers=ck).text
    assert recent.count("<strong>unknown_fingerprint</strong>") == 3
    live = client.get("/console/decisions?live=1", headers=ck).text
    assert 'name="ja3svc-refresh"' in live and "<noscript><meta http-equiv=" in live


def test_accounts_forget_a_learned_fingerprint(client, session):
    client.post("/?command=allow", content=allow_24("alice", "a1"), headers=AUTH)
    client.post("/?command=report", content=report_24("alice", "a1", True), headers=AUTH)
    client.app.state.service.writer.flush()
    ck = session["cookies"]
    assert "alice" in client.get("/console/accounts?q=al", headers=ck).text
    page = client.get("/console/accounts/alice", headers=ck).text
    row_id = re.search(r'name="id" value="(\d+)"', page).group(1)
    r = client.post(
        "/console/accounts/alice/forget", data={"id": row_id, "csrf": session["csrf"]}, headers=ck
    )
    assert r.status_code == 303
    assert "Nothing learned" in client.get("/console/accounts/alice", headers=ck).text


SSLBL = """# abuse.ch
# ja3_md5,Firstseen,Lastseen,Listingreason
b386946a5a44d1ddcc843bc75336dfce,2017-07-14 18:08:15,2019-07-27 20:42:54,Dridex
NOT-A-HASH,2017-07-14 18:08:15,2019-07-27 20:42:54,Broken
"""


def test_label_import_dry_run_then_import_and_export(client, session):
    ck = session["cookies"]

    def post(dry: bool):
        data = {"csrf": session["csrf"], "format": "sslbl", "action": "none"}
        if dry:
            data["dry_run"] = "1"
        return client.post(
            "/console/labels-import",
            data=data,
            files={"file": ("sslbl.csv", SSLBL.encode(), "text/csv")},
            headers=ck,
        )

    preview = post(True)
    assert preview.status_code == 200 and "Dry run" in preview.text
    assert "NOT-A-HASH" in preview.text and "b386946a5a44d1ddcc843bc75336dfce" in preview.text
    api = {"X-Admin-Token": ADMIN}
    assert client.get("/api/v1/labels", headers=api).json()["items"] == []
    done = post(False)
    assert "Imported" in done.text
    items = client.get("/api/v1/labels?source=sslbl", headers=api).json()["items"]
    assert [i["value"] for i in items] == ["b386946a5a44d1ddcc843bc75336dfce"]
    export = client.get("/console/labels/export?format=suricata", headers=ck)
    assert export.text == "b386946a5a44d1ddcc843bc75336dfce\n"
    assert client.get("/console/labels/export?format=nope", headers=ck).status_code == 422


def test_root_and_docs_work_offline(client):
    assert client.get("/").headers["location"] == "/console/"
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        urls = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
        assert urls and all(u.startswith("/") for u in urls), urls
        assert "https://" not in html and "http://" not in html
    js = client.get("/docs/assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    assert client.get("/docs/assets/../app.py").status_code == 404


def test_overview_shows_the_detected_dovecot_profile(client, session):
    page = client.get("/console/", headers=session["cookies"]).text
    assert "Detected OpenSSL profile" in page and "not yet" in page
    detector = client.app.state.service.profiles
    for _ in range(3):  # three captured connections whose Dovecot hash only 3.2 explains
        detector.observe(H, {"openssl-3.0": OTHER, "openssl-3.2": H})
    page = client.get("/console/", headers=session["cookies"]).text
    assert "<code>openssl-3.2</code>" in page and "openssl-3.2 3" in page


def test_search_goes_straight_to_a_whole_hash(client, session):
    r = client.get(f"/console/fingerprints?q={H.upper()}", headers=session["cookies"])
    assert r.status_code == 303 and r.headers["location"] == f"/console/fingerprints/ja3/{H}"


def test_rare_matches_are_found_page_by_page_within_the_scan_bound(client, session, monkeypatch):
    import ja3svc.store.policy_store as policy_store

    # Ten allows, one reject in the middle; each page may read only three decisions.
    monkeypatch.setattr(policy_store, "DECISION_SCAN", 3)
    client.post(
        "/api/v1/labels",
        json={"kind": "ja3", "value": OTHER, "action": "deny"},
        headers={"X-Admin-Token": ADMIN},
    )
    for i in range(10):
        ja3 = OTHER if i == 4 else H
        client.post("/?command=allow", content=allow_24(f"p{i}", f"p{i}", ja3=ja3), headers=AUTH)
    api = {"X-Admin-Token": ADMIN}
    found, before, pages = [], None, 0
    while pages < 10:
        url = "/api/v1/decisions?action=reject" + (f"&before={before}" if before else "")
        r = client.get(url, headers=api)
        pages += 1
        found += [d["username"] for d in r.json()]
        before = r.headers.get("x-next-before")
        if before is None:
            break
        assert r.headers.get("x-scanned-to") == before  # a short page says where it stopped
    assert found == ["p4"] and pages == 4  # ids 10..1 in windows of three
    page = client.get("/console/decisions?verdict=reject", headers=session["cookies"]).text
    assert "Searched down to decision #8" in page and "before=8" in page
