"""Dovecot 2.3 test instances shared by the end-to-end tests (test_dovecot_e2e.py,
test_correlation_e2e.py): a private configuration in a temporary directory (own base_dir,
listeners on a chosen address, a self-signed certificate, a passwd-file with test users) asking
a ja3svc policy service over HTTP. Also the IMAP/POP3 login clients those tests and the
Dovecot 2.4 ones (tests/support/trixie.py) run.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

DH_FILE = Path("/usr/share/dovecot/dh.pem")

DOVECOT_CONF = """\
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = imap
listen = {listen}
ssl = yes
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
ssl_dh = <{dh}
disable_plaintext_auth = yes
auth_mechanisms = plain login
mail_location = maildir:{d}/home/%u/Maildir
# Failed logins from 127.0.0.1 would otherwise add Dovecot's own penalty delay to the
# following logins and spoil the tarpit measurement.
login_trusted_networks = 127.0.0.0/8
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = {listen}
    port = {imap}
  }}
  inet_listener imaps {{
    address = {listen}
    port = {imaps}
    ssl = yes
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
auth_policy_server_url = http://127.0.0.1:{policy}/policy?
auth_policy_server_api_header = X-API-Key: {key}
auth_policy_hash_nonce = nonce123
auth_policy_request_attributes = login=%{{requested_username}} pwhash=%{{hashed_password}} \
remote=%{{rip}} device_id=%{{client_id}} protocol=%s session_id=%{{session}} \
conn/real_rip=%{{real_rip}} conn/real_rport=%{{real_rport}} conn/lip=%{{real_lip}} \
conn/lport=%{{real_lport}}
"""


def prepare_dovecot_files(workdir: Path, users: Iterable[str], password: str) -> None:
    """Certificate, key, passwd-file and a home directory the imap process (nobody) can use."""
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=localhost", "-keyout", str(workdir / "key.pem"),
            "-out", str(workdir / "cert.pem"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    (workdir / "passwd").write_text("".join(f"{u}:{{PLAIN}}{password}::::::\n" for u in users))
    home = workdir / "home"
    home.mkdir()
    home.chmod(0o777)  # the imap process runs as nobody


def dovecot_conf(
    workdir: Path,
    policy_port: int,
    api_key: str,
    *,
    imap: int,
    imaps: int,
    listen: str = "127.0.0.1",
) -> str:
    """dovecot.conf text: IMAP (STARTTLS) and IMAPS on ``listen``; the policy service on
    127.0.0.1:``policy_port`` with the Dovecot 2.3 correlation attributes."""
    return DOVECOT_CONF.format(
        d=workdir, dh=DH_FILE, policy=policy_port, key=api_key, imap=imap, imaps=imaps,
        listen=listen,
    )  # fmt: skip


# --- logs of the processes under test --------------------------------------------------------


def wait_for_text(path: Path, text: str, timeout: float) -> bool:
    """Whether ``text`` turned up in the log at ``path`` (which may not exist yet) in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if text in path.read_text(errors="replace"):
                return True
        time.sleep(0.1)
    return False


def log_tails(logs: Mapping[str, Path], chars: int = 3000) -> str:
    """The end of each log, headed by its name, for an assertion message."""
    parts = []
    for name, path in logs.items():
        with contextlib.suppress(OSError):
            parts.append(f"--- {name}\n{path.read_text(errors='replace')[-chars:]}")
    return "\n".join(parts)


# --- login clients ----------------------------------------------------------------------------
# Scripts for ``python3 -c`` or a file: the host's interpreter runs them against Dovecot 2.3,
# the trixie root's (Python 3.13, OpenSSL 3.5) against Dovecot 2.4, so they use nothing beyond
# the standard library. Each prints one JSON line: {"ok", "text", "sport"}.

# imaplib/poplib. argv: proto (imap|pop3) mode (tls|starttls) host port user password.
PY_CLIENT = r"""
import imaplib, json, poplib, ssl, sys
proto, mode, host, port, user, password = sys.argv[1:7]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
if proto == "imap":
    if mode == "tls":
        conn = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx, timeout=20)
    else:
        conn = imaplib.IMAP4(host, int(port), timeout=20)
        conn.starttls(ctx)
    login, refused, logout = conn.login, imaplib.IMAP4.error, conn.logout
else:
    if mode == "tls":
        conn = poplib.POP3_SSL(host, int(port), context=ctx, timeout=20)
    else:
        conn = poplib.POP3(host, int(port), timeout=20)
        conn.stls(ctx)
    def login(user, password):
        conn.user(user)
        conn.pass_(password)
    refused, logout = poplib.error_proto, conn.quit
sport = conn.sock.getsockname()[1]
ok, text = True, ""
try:
    login(user, password)
except refused as exc:
    ok, text = False, str(exc)
try:
    logout()
except Exception:
    pass
print(json.dumps({"ok": ok, "text": text, "sport": sport}))
"""

# Interactive TLS tools (gnutls-cli; tstclnt, which only the trixie root has): LOGIN is written
# once the greeting arrived over TLS; stdin stays open until the tagged answer (EOF would close
# the connection). Every read is bounded. argv: tool (gnutls|nss) mode host port user password
# [extra tool options...].
TOOL_CLIENT = r"""
import json, queue, subprocess, sys, threading, time
tool, mode, host, port, user, password = sys.argv[1:7]
extra = sys.argv[7:]
if tool == "gnutls":
    argv = ["gnutls-cli", "--insecure", "--port", port, *extra, host]
    if mode == "starttls":
        argv.insert(1, "--starttls-proto=imap")
    ready = "- Handshake was completed"
else:
    argv = ["tstclnt", "-h", host, "-p", port, "-o", *extra]
    ready = None
proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT)
lines = queue.Queue()
def reader():
    for raw in proc.stdout:
        lines.put(raw.decode(errors="replace").rstrip("\r\n"))
    lines.put(None)
threading.Thread(target=reader, daemon=True).start()
seen = []
def wait_for(prefix, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        if line is None:
            raise SystemExit(tool + " ended: " + json.dumps(seen[-20:]))
        seen.append(line)
        if line.startswith(prefix):
            return line
answer = ""
try:
    if ready:
        wait_for(ready)
    if mode != "starttls":
        wait_for("* OK")
    proc.stdin.write(f"a1 LOGIN {user} {password}\r\n".encode())
    proc.stdin.flush()
    answer = wait_for("a1 ", timeout=60.0)
    proc.stdin.write(b"a2 LOGOUT\r\n")
    proc.stdin.flush()
    try:
        wait_for("a2 ", timeout=5.0)
    except Exception:
        pass
    proc.stdin.close()
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        pass  # tstclnt may stay after the server closed; the login is over either way
finally:
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)
print(json.dumps({"ok": answer.startswith("a1 OK"), "text": answer, "sport": None}))
"""
