"""Debian 13's Dovecot 2.4.1 (OpenSSL 3.5.9) and Debian 13's TLS clients, run from the cached
trixie root with chroot; shared by tests/test_dovecot24_e2e.py and tests/pcaps/dovecot24/.

The root is built once by ``.ci/trixie-root`` (which prints its path). Every process that runs
inside it gets a private mount namespace (``unshare -m``) in which /dev and /proc are mounted
into the root and then chroot'ed into: the mounts vanish with the process, so nothing is left
mounted on the shared root and concurrent users cannot trip over each other. Combined with
``testbed.netns`` the processes also run in the test's network namespaces.

Dovecot logs every login with ``login_log_format_elements`` carrying ``%{ssl_ja3}`` and
``%{ssl_ja3_hash}``: that log is the oracle for Dovecot's hash.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sysconfig
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.dovecot import PY_CLIENT, TOOL_CLIENT

REPO = Path(__file__).resolve().parents[2]
TRIXIE_ROOT_SCRIPT = REPO / ".ci" / "trixie-root"
PASSWORD = "secret"

# Ports inside the server namespace (private to the test, so fixed numbers are safe).
IMAPS, IMAP, POP3S, POP3 = 993, 143, 995, 110

_MOUNT_AND_CHROOT = (
    'mount --bind /dev "$0/dev" && mount -t proc proc "$0/proc" && exec chroot "$0" "$@"'
)


def trixie_root() -> Path:
    """The root's path, building it first if needed; a failure raises with the script's output
    (the tests need it: .ci/system-setup builds it on CI machines)."""
    proc = subprocess.run(
        ["bash", str(TRIXIE_ROOT_SCRIPT)], capture_output=True, text=True, timeout=3600
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f".ci/trixie-root failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
            f"{proc.stderr[-4000:]}"
        )
    root = Path(proc.stdout.strip().splitlines()[-1])
    if not (root / "usr" / "sbin" / "dovecot").exists():
        raise RuntimeError(f"{root} has no Dovecot; remove it and run .ci/trixie-root again")
    return root


def in_root(root: Path, argv: Sequence[str]) -> list[str]:
    """argv that runs ``argv`` chroot'ed into ``root`` with /dev and /proc mounted privately."""
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", _MOUNT_AND_CHROOT,
            str(root), *argv]  # fmt: skip


def readme_dovecot24_snippet(readme: Path = REPO / "README.md") -> str:
    """The README's Dovecot 2.4 dovecot.conf snippet, exactly as written there."""
    text = readme.read_text()
    at = text.index("### dovecot.conf")
    at = text.index("Dovecot 2.4", at)
    start = text.index("```\n", at) + 4
    return text[start : text.index("```", start)]


# What the README's snippet needs around it: a private instance with its own directories,
# listeners on the server address, a self-signed certificate, a passwd-file, and the login log
# with Dovecot's own JA3 (the oracle).
DOVECOT24_BASE = """\
dovecot_config_version = 2.4.1
dovecot_storage_version = 2.4.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap pop3
listen = {listen}
ssl = yes
ssl_server_cert_file = {d}/cert.pem
ssl_server_key_file = {d}/key.pem
auth_allow_cleartext = no
auth_mechanisms = plain login
# Failed logins would otherwise add Dovecot's penalty delay to later logins (tarpit timing).
login_trusted_networks = {trusted}
auth_failure_delay = 0
login_log_format_elements = user=<%{{user}}> rip=%{{remote_ip}} rport=%{{remote_port}} \
ja3=<%{{ssl_ja3}}> ja3_hash=%{{ssl_ja3_hash}} session=<%{{session}}>
mail_driver = maildir
mail_path = {d}/home/%{{user}}/Maildir
passdb passwd-file {{
  passwd_file_path = {d}/passwd
}}
userdb static {{
  fields {{
    uid = nobody
    gid = nogroup
    home = {d}/home/%{{user}}
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = yes
  }}
}}
"""


def dovecot24_conf(
    inner: str, listen: str, trusted: str, snippet: str, *, ports: dict[str, int] | None = None,
    openssl_lib: str | None = None,
) -> str:  # fmt: skip
    """dovecot.conf for a work directory at ``inner`` (its path inside the root). ``ports``
    (imap, imaps, pop3, pop3s) for a second instance; ``openssl_lib``: a folder (inside the
    root) whose libssl/libcrypto every Dovecot process loads instead of the root's."""
    p = {"imap": IMAP, "imaps": IMAPS, "pop3": POP3, "pop3s": POP3S, **(ports or {})}
    base = DOVECOT24_BASE.format(d=inner, listen=listen, trusted=trusted, **p)
    if openssl_lib is not None:
        # The master passes only import_environment to the processes it starts (imap-login
        # does the TLS); it gets LD_LIBRARY_PATH itself from its own environment.
        base += f"import_environment {{\n  LD_LIBRARY_PATH = {openssl_lib}\n}}\n"
    return base + "\n# --- the README's Dovecot 2.4 snippet, as written there ---\n" + snippet


def host_openssl30(wd: RootWorkdir, name: str = "openssl30") -> str:
    """Debian 12's OpenSSL 3.0 (this host's libssl.so.3 and libcrypto.so.3) copied into the
    root; returns the folder's path inside it. Debian 13's Dovecot 2.4.1 asks only for
    OPENSSL_3.0.0 symbols, so with this folder first in LD_LIBRARY_PATH it runs unchanged on
    OpenSSL 3.0: a real Dovecot 2.4 on OpenSSL 3.0, as one built for Debian 12 or Ubuntu 22.04
    is. Raises if the host's OpenSSL is not 3.0 (the test would prove nothing)."""
    version = subprocess.run(["openssl", "version"], capture_output=True, text=True, timeout=30)
    if not version.stdout.startswith("OpenSSL 3.0."):
        raise RuntimeError(f"the host's OpenSSL is not 3.0: {version.stdout.strip()}")
    libdir = Path("/usr/lib") / str(sysconfig.get_config_var("MULTIARCH"))
    dest = wd.host / name
    dest.mkdir()
    for lib in ("libssl.so.3", "libcrypto.so.3"):
        shutil.copy2(libdir / lib, dest / lib)
    return f"{wd.inner}/{name}"


@dataclass
class RootWorkdir:
    """A directory inside the root: ``host`` is its path here, ``inner`` inside the chroot."""

    root: Path
    host: Path

    @property
    def inner(self) -> str:
        return "/" + str(self.host.relative_to(self.root))


@contextlib.contextmanager
def root_workdir(root: Path, prefix: str, keep: bool = False) -> Iterator[RootWorkdir]:
    host = Path(tempfile.mkdtemp(prefix=prefix, dir=root / "tmp"))
    host.chmod(0o755)
    try:
        yield RootWorkdir(root, host)
    finally:
        if not keep:
            shutil.rmtree(host, ignore_errors=True)


def prepare_files(wd: RootWorkdir, users: Sequence[str]) -> None:
    """Certificate and key, a passwd-file, a home for the mail processes (nobody), an empty
    NSS database for tstclnt."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-keyout", str(wd.host / "key.pem"),
         "-out", str(wd.host / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    (wd.host / "passwd").write_text("".join(f"{u}:{{PLAIN}}{PASSWORD}::::::\n" for u in users))
    home = wd.host / "home"
    home.mkdir()
    home.chmod(0o777)
    (wd.host / "nssdb").mkdir()
    subprocess.run(
        in_root(wd.root, ["certutil", "-N", "-d", f"sql:{wd.inner}/nssdb", "--empty-password"]),
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    for name, source in CLIENT_SCRIPTS.items():
        (wd.host / name).write_text(source)
    java = compile_java(wd.host)
    if java is None:
        raise RuntimeError("javac is missing (.ci/system-setup installs openjdk-17-jdk-headless)")


# --- the login log (the oracle) -------------------------------------------------------------

_LOGIN_LINE = re.compile(
    r"(?P<proto>imap|pop3)-login: Info: (?P<message>.*?): user=<(?P<user>[^>]*)>, "
    r"rip=(?P<rip>[^,]*), rport=(?P<rport>\d+), "
    r"ja3=<(?P<ja3>[^>]*)>, ja3_hash=(?P<ja3_hash>[0-9a-f]*),"
)


def login_log(path: Path) -> list[dict[str, Any]]:
    """Dovecot's login lines: proto, message, user, rip, rport, ja3 (string), ja3_hash."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        m = _LOGIN_LINE.search(line)
        if m:
            row: dict[str, Any] = m.groupdict()
            row["rport"] = int(row["rport"])
            rows.append(row)
    return rows


def wait_login_lines(path: Path, user: str, count: int, timeout: float = 10.0) -> list[dict]:
    """The first ``count`` login lines of ``user`` with a hash (waits for Dovecot to log)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = [r for r in login_log(path) if r["user"] == user and r["ja3_hash"]]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)  # Dovecot's log is read again, not spun on (2 cores are shared)


# --- clients ---------------------------------------------------------------------------------

# Chrome's hello (GREASE cipher, permuted extensions) from curl_cffi, which impersonates it;
# runs on the host's interpreter (in the client namespace). argv: host port user password.
CHROME_CLIENT = r"""
import json, sys
from io import BytesIO
from curl_cffi import Curl, CurlError, CurlOpt
from curl_cffi.requests.impersonate import DEFAULT_CHROME
host, port, user, password = sys.argv[1:5]
c = Curl()
if c.impersonate(DEFAULT_CHROME, default_headers=False) != 0:
    raise SystemExit("curl_cffi cannot impersonate " + DEFAULT_CHROME)
buf, err = BytesIO(), BytesIO()
c.setopt(CurlOpt.URL, f"imaps://{host}:{port}/".encode())
c.setopt(CurlOpt.USERPWD, f"{user}:{password}".encode())
c.setopt(CurlOpt.CUSTOMREQUEST, b"NOOP")
c.setopt(CurlOpt.SSL_VERIFYPEER, 0)
c.setopt(CurlOpt.SSL_VERIFYHOST, 0)
c.setopt(CurlOpt.TIMEOUT, 60)
c.setopt(CurlOpt.VERBOSE, 1)
c.setopt(CurlOpt.DEBUGFUNCTION, lambda kind, data: err.write(data) and 0)
c.setopt(CurlOpt.WRITEDATA, buf)
try:
    c.perform()
    ok, text = True, ""
except CurlError as exc:
    ok, text = False, str(exc) + " " + err.getvalue().decode(errors="replace")[-500:]
print(json.dumps({"ok": ok, "text": text, "sport": None, "client": DEFAULT_CHROME}))
"""

JAVA_CLIENT = r"""
import java.io.*;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.security.cert.X509Certificate;
import javax.net.ssl.*;

/** IMAPS login with the JDK's own TLS (JSSE). argv: host port user password. */
public class ImapLogin {
    public static void main(String[] args) throws Exception {
        TrustManager[] trustAll = { new X509TrustManager() {
            public void checkClientTrusted(X509Certificate[] c, String a) {}
            public void checkServerTrusted(X509Certificate[] c, String a) {}
            public X509Certificate[] getAcceptedIssuers() { return new X509Certificate[0]; }
        } };
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, trustAll, null);
        try (SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket(
                args[0], Integer.parseInt(args[1]))) {
            s.setSoTimeout(60000);
            BufferedReader in = new BufferedReader(
                new InputStreamReader(s.getInputStream(), StandardCharsets.US_ASCII));
            Writer out = new OutputStreamWriter(s.getOutputStream(), StandardCharsets.US_ASCII);
            in.readLine();
            out.write("a1 LOGIN " + args[2] + " " + args[3] + "\r\n");
            out.flush();
            String line;
            do { line = in.readLine(); } while (line != null && !line.startsWith("a1 "));
            out.write("a2 LOGOUT\r\n");
            out.flush();
            boolean ok = line != null && line.startsWith("a1 OK");
            String text = line == null ? "" : line.replace("\\", "\\\\").replace("\"", "\\\"");
            System.out.println("{\"ok\": " + ok + ", \"text\": \"" + text
                + "\", \"sport\": " + s.getLocalPort() + "}");
        }
    }
}
"""

CLIENT_SCRIPTS = {"py_client.py": PY_CLIENT, "tool_client.py": TOOL_CLIENT}


def compile_java(where: Path) -> Path | None:
    """ImapLogin.class in ``where`` (compiled by the host's javac for Java 17, run by the root's
    Java 21: the TLS stack under test is the root's JSSE); None without javac."""
    javac = shutil.which("javac")
    if javac is None:
        return None
    src = where / "ImapLogin.java"
    src.write_text(JAVA_CLIENT)
    subprocess.run([javac, "--release", "17", "-d", str(where), str(src)], check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    return where / "ImapLogin.class"


# Each client: how to run one login. ``proto``/``mode``: imap|pop3 and tls|starttls.
CLIENT_FAMILIES = {
    "curl": "curl 8.14 (OpenSSL 3.5.9)",
    "python": "Python 3.13 imaplib/poplib (OpenSSL 3.5.9)",
    "gnutls": "gnutls-cli 3.8.9 (GnuTLS: mutt, neomutt, Evolution, Geary)",
    "nss": "tstclnt (NSS: Thunderbird's library), defaults",
    "nss-permute": "tstclnt with --enable-ch-extension-permutation",
    "java": "Java 21 JSSE",
    "chrome": "curl_cffi impersonating Chrome (BoringSSL: GREASE, permuted extensions)",
}


SCHEMES = {
    ("imap", "tls"): "imaps",
    ("imap", "starttls"): "imap",
    ("pop3", "tls"): "pop3s",
    ("pop3", "starttls"): "pop3",
}
PORTS = {
    ("imap", "tls"): IMAPS,
    ("imap", "starttls"): IMAP,
    ("pop3", "tls"): POP3S,
    ("pop3", "starttls"): POP3,
}


def client_argv(
    wd: RootWorkdir, host_python: str, client: str, proto: str, mode: str, host: str,
    port: int, user: str,
) -> list[str]:  # fmt: skip
    """argv (for the client namespace) of one login by ``client``."""
    r, d = wd.root, wd.inner
    if client == "curl":
        scheme = SCHEMES[(proto, mode)]
        argv = ["curl", "-sS", "-v", "-k", "--max-time", "60", "-u", f"{user}:{PASSWORD}"]
        if mode == "starttls":
            argv.append("--ssl-reqd")
        if proto == "imap":
            argv += ["-X", "NOOP"]
        return in_root(r, [*argv, f"{scheme}://{host}:{port}/"])
    if client == "python":
        return in_root(r, ["python3", f"{d}/py_client.py", proto, mode, host, str(port), user,
                           PASSWORD])  # fmt: skip
    if client == "gnutls":
        return in_root(r, ["python3", f"{d}/tool_client.py", "gnutls", mode, host, str(port),
                           user, PASSWORD])  # fmt: skip
    if client in ("nss", "nss-permute"):
        extra = ["-d", f"sql:{d}/nssdb"]
        if client == "nss-permute":
            extra.append("--enable-ch-extension-permutation")
        return in_root(r, ["python3", f"{d}/tool_client.py", "nss", mode, host, str(port),
                           user, PASSWORD, *extra])  # fmt: skip
    if client == "java":
        return in_root(r, ["java", "-cp", d, "ImapLogin", host, str(port), user, PASSWORD])
    if client == "chrome":
        return [host_python, "-c", CHROME_CLIENT, host, str(port), user, PASSWORD]
    raise ValueError(client)


def parse_client_output(client: str, proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    if client == "curl":
        # curl: 0 logged in; 67 "login denied" (the server's NO, shown in the verbose trace).
        return {"ok": proc.returncode == 0, "text": proc.stderr[-3000:], "sport": None}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"{client} failed ({proc.returncode}): {proc.stdout[-2000:]}"
                             f" {proc.stderr[-2000:]}")  # fmt: skip
    result: dict[str, Any] = json.loads(lines[-1])
    return result
