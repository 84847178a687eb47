"""Regenerate the console screenshots in docs/screenshots/ (shown in README.md).

    python docs/screenshots.py [--out docs/screenshots]

Builds a small demonstration database (an hour of Dovecot logins with tarpits and rejects,
labels from an operator and from SSLBL, learned accounts, captured hellos), serves the real app
with uvicorn on 127.0.0.1, signs in with headless chromium (Debian's, through the installed
chromedriver; nothing is downloaded) and saves one PNG per page.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ADMIN = "screenshot-admin-token"
REJECT_MSG = "Login refused: this mail client is not allowed here."

# (name, category, action, tarpit, source, confidence)
CLIENTS = [
    ("Thunderbird 128", "mail-client", "allow", None, "manual", 100),
    ("Apple Mail (macOS 15)", "mail-client", "allow", None, "manual", 100),
    ("K-9 Mail 8", "mail-client", "none", None, "manual", 90),
    ("Outlook for Windows", "mail-client", "none", None, "manual", 90),
    ("python-imaplib credential stuffer", "scanner", "deny", None, "manual", 100),
    ("Go crypto/tls scanner", "scanner", "tarpit", 8, "manual", 95),
    ("Dridex", "malware", "none", None, "sslbl", 50),
    ("curl 8 (libcurl/OpenSSL)", "library", "none", None, "salesforce", 40),
]


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def ja4(seed: str) -> str:
    return f"t13d1714h2_{md5('a' + seed)[:12]}_{md5('b' + seed)[:12]}"


def demo_data(db: Any, now: float) -> dict[str, str]:
    from ja3svc.store.models import (
        AuthFailure,
        Decision,
        DovecotHash,
        Fingerprint,
        Label,
        Sighting,
        UserFingerprint,
    )
    from sqlalchemy import insert

    rnd = random.Random(2026)
    hashes = {name: md5(name) for name, *_ in CLIENTS}
    names = "alice bob carol dave erin frank grace heidi ivan judy mallory oscar".split()
    users = [f"{n}@example.org" for n in names]
    labels, fingerprints, sightings, decisions, learned, failures = [], [], [], [], [], []
    variants = []
    for i, (name, category, action, tarpit, source, conf) in enumerate(CLIENTS):
        h = hashes[name]
        labels.append({
            "kind": "ja3", "value": h, "client_name": name, "category": category,
            "action": action, "tarpit_seconds": tarpit, "source": source, "confidence": conf,
            "note": "seen in the 2026-11 stuffing wave" if action == "deny" else None,
            "created_at": now - 86400 * (9 - i), "updated_at": now - 3600 * (9 - i),
        })  # fmt: skip
        for kind, value in (("ja3", h), ("ja3_dovecot", h), ("ja3n", md5("n" + name)),
                            ("ja4", ja4(name))):  # fmt: skip
            first = now - (1800 if "Go crypto" in name else 86400 * (30 - i))
            fingerprints.append({
                "kind": kind, "value": value, "full_string": None, "first_seen": first,
                "last_seen": now - 60 * i, "times_seen": 40 + 37 * (8 - i),
            })  # fmt: skip
        variants.append({
            "openssl30": h, "openssl32": md5("3.2" + name), "ja3_hash": h,
            "ja3n_hash": md5("n" + name), "ja4": ja4(name), "first_seen": now - 86400 * 30,
            "last_seen": now - 60 * i, "times_seen": 40 + 37 * (8 - i),
        })  # fmt: skip
        for j in range(4):
            sightings.append({
                "ts": now - 300 * j - 17 * i, "sensor": "mx1:eth0",
                "src": f"203.0.113.{10 + i}", "sport": 40000 + 11 * j + i, "dst": "192.0.2.25",
                "dport": 993, "transport": "tcp", "hello": "client", "hello_index": 1,
                "sni": "mail.example.org", "alpn": None, "tls_version": "1.3", "ja3_hash": h,
                "ja3n_hash": md5("n" + name), "ja4": ja4(name), "ja3_dovecot_hash": h,
                "ja3s_hash": None,
            })  # fmt: skip
    for j in range(5):
        new = md5(f"new{j}")
        fingerprints.append({
            "kind": "ja3", "value": new, "full_string": None, "first_seen": now - 900 * (j + 1),
            "last_seen": now - 60 * j, "times_seen": 1 + j,
        })  # fmt: skip
    good = [n for n, _, a, *_ in CLIENTS if a in ("allow", "none")]
    for minute in range(60, 0, -1):
        base = now - minute * 60
        for k in range(rnd.randrange(6, 16)):
            name = rnd.choice(good)
            user = rnd.choice(users[:10])
            allowed = name in ("Thunderbird 128", "Apple Mail (macOS 15)")
            rule = "label_allow" if allowed else "default"
            decisions.append((base + k * 3, user, hashes[name], "allow", rule, 0))
        if minute < 25:
            for k in range(rnd.randrange(1, 5)):
                decisions.append((base + 20 + k, rnd.choice(users), hashes["Go crypto/tls scanner"],
                                  "tarpit", "label_tarpit", 8))  # fmt: skip
        if 10 < minute < 40:
            for k in range(rnd.randrange(0, 6)):
                decisions.append((base + 40 + k, f"user{rnd.randrange(900)}@example.org",
                                  hashes["python-imaplib credential stuffer"], "reject",
                                  "label_deny", -1))  # fmt: skip
    rows = []
    for ts, user, h, action, rule, status in sorted(decisions):
        name = next(n for n in hashes if hashes[n] == h)
        lbl = next(lb for lb in labels if lb["value"] == h)
        labels_json = None
        if rule.startswith("label_"):
            import json

            labels_json = json.dumps(
                [{"kind": "ja3", "value": h, "action": lbl["action"], "source": lbl["source"],
                  "client_name": name}]
            )
        reason = {
            "label_allow": f"label_allow: allow-listed by {lbl['source']} ({name})",
            "label_deny": f"label_deny: deny by {lbl['source']} ({name}), confidence 100",
            "label_tarpit": f"label_tarpit: tarpit by {lbl['source']} ({name})",
            "default": "default: known fingerprint, nothing against it",
        }[rule]
        for command in ("allow/before",) if action != "allow" else ("allow/before", "allow/after"):
            rows.append({
                "ts": ts + (0.05 if command == "allow/after" else 0), "command": command,
                "username": user, "remote_ip": f"203.0.113.{10 + list(hashes).index(name)}",
                "remote_port": 40000 + int(ts) % 20000, "ja3_hash": h,
                "status": status if command == "allow/before" else 0, "action": action,
                "rule": rule, "reason": reason, "labels": labels_json,
            })  # fmt: skip
        if action == "allow":
            rows.append({
                "ts": ts + 0.1, "command": "report", "username": user,
                "remote_ip": f"203.0.113.{10 + list(hashes).index(name)}",
                "remote_port": 40000 + int(ts) % 20000, "ja3_hash": h, "status": 0,
                "action": "success", "rule": "report", "reason": "report: success",
                "labels": None,
            })  # fmt: skip
        elif action == "reject":
            failures.append({"ts": ts, "kind": "ja3_dovecot", "value": h, "username": user})
    seen = set()
    for r in rows:
        if r["action"] == "success" and (r["username"], r["ja3_hash"]) not in seen:
            seen.add((r["username"], r["ja3_hash"]))
            learned.append({
                "username": r["username"], "kind": "ja3_dovecot", "value": r["ja3_hash"],
                "first_seen": r["ts"] - 86400 * 20, "last_seen": r["ts"],
                "successes": 3 + len(seen) % 40,
            })  # fmt: skip
    with db.engine.begin() as conn:
        for model, data in ((Label, labels), (Fingerprint, fingerprints), (Sighting, sightings),
                            (Decision, rows), (UserFingerprint, learned),
                            (AuthFailure, failures), (DovecotHash, variants)):  # fmt: skip
            if data:
                conn.execute(insert(model), data)
    return {"featured": hashes["python-imaplib credential stuffer"], "user": "alice@example.org"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import uvicorn
    from ja3svc.api.app import create_app
    from ja3svc.config.settings import PolicySettings, Settings
    from ja3svc.store.database import Database
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    tmp = Path(tempfile.mkdtemp(prefix="ja3svc-shots-"))
    url = f"sqlite:///{tmp / 'demo.sqlite3'}"
    settings = Settings(
        data_dir=tmp,
        database_url=url,
        policy=PolicySettings(admin_token=ADMIN, api_keys=["k"], reject_message=REJECT_MSG),
    )
    db = Database.from_url(url, upgrade=True)
    now = time.time()
    demo = demo_data(db, now)
    port = free_port()
    app = create_app(settings, database=db)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    base = f"http://127.0.0.1:{port}"
    profile = tempfile.mkdtemp(prefix="ja3svc-shots-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--user-data-dir={profile}", "--window-size=1360,900", "--hide-scrollbars",
                "--force-device-scale-factor=1", "--proxy-server=http://127.0.0.1:9",
                "--disable-background-networking", "--no-first-run"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        driver.get(f"{base}/console/login")
        driver.save_screenshot(str(out / "login.png"))
        driver.find_element(By.ID, "token").send_keys(ADMIN)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        time.sleep(0.5)
        shots = [
            ("overview", "/console/", 1000),
            ("decisions", "/console/decisions?since=30m", 1100),
            ("fingerprint", f"/console/fingerprints/ja3_dovecot/{demo['featured']}", 1500),
            ("account", f"/console/accounts/{demo['user']}", 900),
            ("labels", "/console/labels", 1100),
        ]
        for name, path, height in shots:
            driver.set_window_size(1360, height)
            driver.get(base + path)
            time.sleep(0.3)
            driver.save_screenshot(str(out / f"{name}.png"))
            print(f"wrote {out / name}.png")
    finally:
        driver.quit()
        server.should_exit = True
        thread.join(10)
        db.dispose()
        shutil.rmtree(profile, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
