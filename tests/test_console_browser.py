"""End to end in a real browser: Debian's chromium (driven by Selenium through the installed
chromedriver; nothing is downloaded) against a real `ja3svc serve --capture lo` process that
a real Dovecot 2.3 asks for verdicts.

The operator signs in with the admin token, finds a real IMAPS login in Decisions (Dovecot 2.3
sends no hash: the fingerprint comes from the service's own capture of that connection), opens
its fingerprint, labels it deny, and the client's next login is refused with the configured
message; the label is in the list and in `ja3svc labels list`; signing out ends the session
on the server; requests without a session or with a wrong CSRF token are refused. Every request
the browser makes is recorded (Chrome's network log) and the test fails on any that is not for
the service on 127.0.0.1; the browser is also pointed at a dead proxy for everything else, so
nothing could leave the host even if a page asked.
"""

from __future__ import annotations

import imaplib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testbed.processes import free_port, stop, wait_port
from tests.support.dovecot import dovecot_conf, prepare_dovecot_files

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

pytestmark = [
    pytest.mark.dovecot,
    pytest.mark.timeout(300),
    pytest.mark.skipif(os.geteuid() != 0, reason="Dovecot and the capture on lo need root"),
    pytest.mark.skipif(shutil.which("dovecot") is None, reason="Dovecot is not installed"),
]

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "console-admin-token-for-the-browser-test"
API_KEY = "dovecot-key"
USER, PASSWORD = "alice", "secret"
REJECT_MSG = "Refused by the console test"


def _imap_login(port: int) -> tuple[bool, str]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx, timeout=30)
    try:
        conn.login(USER, PASSWORD)
        return True, ""
    except imaplib.IMAP4.error as exc:
        return False, str(exc)
    finally:
        try:
            conn.logout()
        except (imaplib.IMAP4.abort, OSError):
            pass


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, Any]]:
    # Not pytest's tmp_path: Dovecot's unprivileged processes must reach these files.
    workdir = Path(tempfile.mkdtemp(prefix="ja3svc-console-e2e-"))
    workdir.chmod(0o755)
    prepare_dovecot_files(workdir, [USER], PASSWORD)
    imap, imaps, policy = free_port(), free_port(), free_port()
    conf = workdir / "ja3svc.toml"
    conf.write_text(
        f'[policy]\napi_keys = ["{API_KEY}"]\nadmin_token = "{ADMIN}"\n'
        f'reject_message = "{REJECT_MSG}"\n'
        # Only the IMAPS port of this Dovecot is captured on lo.
        f"[capture]\nports = [{imaps}]\nudp_ports = []\n"
    )
    env = {**os.environ, "JA3SVC_DATA_DIR": str(workdir / "data"), "PYTHONPATH": str(ROOT)}
    env.pop("JA3SVC_DATABASE_URL", None)
    env.pop("JA3SVC_CONFIG", None)
    serve_log = open(workdir / "serve.log", "wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "ja3svc.cli.main", "serve", "--port", str(policy),
         "--config", str(conf), "--capture", "lo"],
        cwd=ROOT, env=env, stdout=serve_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    dovecot_text = dovecot_conf(workdir, policy, API_KEY, imap=imap, imaps=imaps)
    (workdir / "dovecot.conf").write_text(dovecot_text)
    dovecot = subprocess.Popen(
        ["dovecot", "-F", "-c", str(workdir / "dovecot.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(policy, serve)
        wait_port(imaps, dovecot)
        yield {
            "base": f"http://127.0.0.1:{policy}",
            "imaps": imaps,
            "env": env,
            "conf": conf,
            "workdir": workdir,
        }
    finally:
        stop(dovecot)
        stop(serve)
        serve_log.close()
        if not os.environ.get("JA3SVC_E2E_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(stack: dict[str, Any]) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), (
        "chromium and chromium-driver come from apt (.ci/system-setup)"
    )
    profile = tempfile.mkdtemp(prefix="ja3svc-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
        f"--user-data-dir={profile}", "--window-size=1400,1000", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--disable-extensions", "--metrics-recording-only",
        # Everything but loopback (bypassed by default) goes to a dead proxy: nothing leaves.
        "--proxy-server=http://127.0.0.1:9",
    ):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: never download anything
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    requests: list[str] = []
    driver.requests_seen = requests  # type: ignore[attr-defined]
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _collect_requests(driver: Any) -> list[str]:
    """URLs the pages asked for since the last call (Chrome's DevTools network log)."""
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            driver.requests_seen.append(message["params"]["request"]["url"])
    return driver.requests_seen


def _wait(predicate: Any, timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def test_operator_denies_a_real_client_from_the_browser(stack, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base = stack["base"]
    # 1. Sign in with the admin token.
    browser.get(f"{base}/console/")
    assert browser.current_url.startswith(f"{base}/console/login")
    token = browser.find_element(By.ID, "token")
    token.send_keys(ADMIN)
    token.send_keys(Keys.ENTER)
    _wait(lambda: browser.current_url == f"{base}/console/", what="the overview")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Overview"
    cookie = browser.get_cookie("ja3svc_console")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # Keyboard: the first Tab reaches the skip link, which moves focus to the content.
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    focused = browser.switch_to.active_element
    assert focused.get_attribute("class") == "skip"
    focused.send_keys(Keys.ENTER)
    assert browser.switch_to.active_element.get_attribute("id") == "main"

    # 2. A real Dovecot 2.3 login appears in Decisions, linked to the captured hello.
    ok, text = _imap_login(stack["imaps"])
    assert ok, text

    def row_link() -> Any:
        browser.get(f"{base}/console/decisions?user={USER}")
        links = browser.find_elements(By.CSS_SELECTOR, "#decisions a[href*='/fingerprints/ja3/']")
        return links[0] if links else None

    link = _wait(row_link, 20, "the login in Decisions")
    table = browser.find_element(By.ID, "decisions").text
    assert "allow/before" in table and USER in table
    value = link.get_attribute("href").rsplit("/", 1)[1]
    assert re.fullmatch(r"[0-9a-f]{32}", value)

    # 3. Open its fingerprint and label it deny.
    link.click()
    _wait(lambda: f"/console/fingerprints/ja3/{value}" in browser.current_url, what="fp page")
    page = browser.find_element(By.TAG_NAME, "main").text
    assert REJECT_MSG in page and USER in page  # the message clients will see; the account
    browser.find_element(By.CSS_SELECTOR, "input[name=action][value=deny]").click()
    browser.find_element(By.ID, "note").send_keys("denied from the browser test")
    browser.find_element(By.CSS_SELECTOR, "form[action$='/label'] button[type=submit]").click()
    flash = _wait(lambda: browser.find_elements(By.CLASS_NAME, "flash"), what="confirmation")
    assert "Labelled deny" in flash[0].text

    # 4. The next login of that client is refused with the message.
    ok, text = _imap_login(stack["imaps"])
    assert not ok and REJECT_MSG in text, text

    # 5. The label shows in the list and in the CLI.
    browser.get(f"{base}/console/labels?q={value[:10]}")
    listed = browser.find_element(By.ID, "labels").text
    assert value in listed and "manual: deny" in listed
    cli = subprocess.run(
        [sys.executable, "-m", "ja3svc.cli.main", "labels", "list", "--value", value, "--json",
         "--config", str(stack["conf"])],
        env=stack["env"], cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert [(r["value"], r["action"]) for r in json.loads(cli.stdout)] == [(value, "deny")]
    # The refused login is in Decisions, explained.
    browser.get(f"{base}/console/decisions?verdict=reject")
    refused = browser.find_element(By.ID, "decisions").text
    assert "label_deny" in refused and "manual: deny" in refused

    # 6. A request without the session, or with a wrong CSRF token, is refused.
    session = cookie["value"]
    label_url = f"{base}/console/fingerprints/ja3/{value}/label"
    with httpx.Client(timeout=10) as http:
        r = http.post(label_url, data={"action": "allow"})
        assert r.status_code == 401
        r = http.post(
            label_url,
            data={"action": "allow", "csrf": "f" * 64},
            headers={"Cookie": f"ja3svc_console={session}"},
        )
        assert r.status_code == 403

    # 7. Signing out ends the session on the server: the old cookie opens nothing.
    browser.get(f"{base}/console/")
    browser.find_element(By.CSS_SELECTOR, "form.logout button").click()
    _wait(lambda: "/console/login" in browser.current_url, what="the sign-in page")
    browser.get(f"{base}/console/labels")
    assert "/console/login" in browser.current_url
    with httpx.Client(timeout=10) as http:
        r = http.get(f"{base}/console/", headers={"Cookie": f"ja3svc_console={session}"})
        assert r.status_code == 303 and "/console/login" in r.headers["location"]
    # Still denied: signing out changed no label.
    ok, text = _imap_login(stack["imaps"])
    assert not ok and REJECT_MSG in text

    # The API docs load offline too.
    browser.get(f"{base}/docs")
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, ".swagger-ui .info"), what="Swagger UI")

    # 8. Nothing the browser loaded came from anywhere but the service.
    seen = _collect_requests(browser)
    assert any(u.startswith(f"{base}/console/static/") for u in seen), seen
    # chrome:// (the browser's own start page), data: and about: never touch the network.
    network = [u for u in seen if u.split(":", 1)[0] in ("http", "https", "ws", "wss", "ftp")]
    foreign = [u for u in network if not u.startswith(f"{base}/")]
    assert network and foreign == [], foreign
    assert all(u.split(":", 1)[0] in ("http", "https", "ws", "wss", "ftp", "chrome", "data",
                                      "about", "blob") for u in seen), seen
