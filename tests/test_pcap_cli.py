"""``ja3svc pcap``: output formats, counters, stdin, exit statuses and damaged inputs.

Expected hellos come from tshark (tests/pcaps/*.expected.json), packet counts from capinfos
(the ``format`` block of the same files), record offsets from walking the pcap record headers
here (draft-ietf-opsawg-pcap: 24-byte file header, 16-byte record headers).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import fingerprint_file, run_cli

PCAPS = Path(__file__).parent / "pcaps"
CURL = PCAPS / "curl-https.pcap"  # 2 client + 2 server hellos, ALPN, TLS 1.3 and 1.2
HRR = PCAPS / "openssl-hrr.pcap"

pytestmark = pytest.mark.skipif(
    not (CURL.exists() and HRR.exists()), reason="golden captures not in tests/pcaps"
)

# Point 4 of the issue: keys every record has, and the ones per hello kind.
COMMON_KEYS = {"ts", "src", "sport", "dst", "dport", "transport", "hello", "index", "sni",
               "alpn", "tls_version"}  # fmt: skip
CLIENT_KEYS = COMMON_KEYS | {"ja3", "ja3_hash", "ja3n", "ja3n_hash", "ja4", "ja4_r",
                             "ja3_dovecot", "ja3_dovecot_hash"}  # fmt: skip
SERVER_KEYS = COMMON_KEYS | {"ja3s", "ja3s_hash"}


def expected(path: Path) -> dict[str, Any]:
    return json.loads(path.with_name(path.stem + ".expected.json").read_text())


def tshark_full(path: Path) -> Counter[tuple[str, str]]:
    return Counter(
        (h["hello"], h["ja3"] if h["hello"] == "client" else h["ja3s"])
        for h in expected(path)["hellos"]
    )


def record_ends(raw: bytes) -> list[int]:
    """File offset just past each record of a little-endian classic pcap."""
    assert raw[:4] == b"\xd4\xc3\xb2\xa1"
    pos, ends = 24, []
    while pos + 16 <= len(raw):
        incl = struct.unpack_from("<I", raw, pos + 8)[0]
        pos += 16 + incl
        ends.append(pos)
    return ends


# --- formats ---------------------------------------------------------------------------------


def test_json_lines_have_every_issue_key_and_tshark_values() -> None:
    records, status = fingerprint_file(CURL)
    assert status == 0
    for d in records:
        assert (CLIENT_KEYS if d["hello"] == "client" else SERVER_KEYS) <= set(d), d
        assert d["transport"] == "tcp"
        assert isinstance(d["ts"], float) and isinstance(d["alpn"], list)
    got = Counter((d["hello"], d["ja3"] if d["hello"] == "client" else d["ja3s"]) for d in records)
    assert got == tshark_full(CURL)
    for d in records:
        if d["hello"] == "client":
            assert d["alpn"] == ["h2", "http/1.1"]  # curl's default ALPN
            assert d["index"] == 1


def test_json_hashes_match_tshark_hashes() -> None:
    records, _ = fingerprint_file(HRR)
    want = Counter(h["ja3_hash"] or h["ja3s_hash"] for h in expected(HRR)["hellos"])
    got = Counter(d.get("ja3_hash") or d["ja3s_hash"] for d in records)
    assert got == want


def test_csv_format() -> None:
    status, out, _err = run_cli("pcap", "--no-progress", "-q", "--format", "csv", str(CURL))
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == len(expected(CURL)["hellos"])
    header = out.splitlines()[0].split(",")
    assert (CLIENT_KEYS | SERVER_KEYS) <= set(header)
    got = Counter((r["hello"], r["ja3"] or r["ja3s"]) for r in rows)
    assert got == tshark_full(CURL)
    assert {r["alpn"] for r in rows if r["hello"] == "client"} == {"h2;http/1.1"}


def test_table_format() -> None:
    status, out, _err = run_cli("pcap", "--no-progress", "-q", "--format", "table", str(HRR))
    assert status == 0
    lines = out.splitlines()
    assert "ja3/ja3s hash" in lines[0]
    body = lines[1:]
    assert len(body) == len(expected(HRR)["hellos"])
    for h in expected(HRR)["hellos"]:
        digest = h["ja3_hash"] or h["ja3s_hash"]
        assert any(digest in line for line in body)
    assert sum("server.ja3svc.test" in line for line in body) == 2  # SNI of the two hellos


def test_summary_counts_distinct_fingerprints() -> None:
    status, out, _err = run_cli(
        "pcap", "--no-progress", "-q", "--summary", "--format", "table", str(HRR)
    )
    assert status == 0
    rows = out.splitlines()[1:]
    counts: Counter[str] = Counter()
    for line in rows:
        n, _kind, digest = line.split()[:3]
        counts[digest] += int(n)
    want = Counter(h["ja3_hash"] or h["ja3s_hash"] for h in expected(HRR)["hellos"])
    assert counts == want  # both client hellos share one JA3, both server hellos one JA3S
    assert all(int(line.split()[0]) == 2 for line in rows)


def test_counters_on_stderr_not_stdout() -> None:
    status, out, err = run_cli("pcap", "--no-progress", str(CURL))
    assert status == 0
    exp = expected(CURL)
    m = re.search(r"packets (\d+)\s+bytes (\d+)\s+flows (\d+)\s+hellos (\d+)", err)
    assert m, err
    assert int(m.group(1)) == exp["format"]["packets"]  # capinfos
    assert int(m.group(4)) == len(exp["hellos"])
    assert f"client {exp['counts']['client_hellos']}" in err
    assert f"server {exp['counts']['server_hellos']}" in err
    assert "packets" not in out
    for line in out.splitlines():
        json.loads(line)


def test_quiet_suppresses_counters() -> None:
    _status, _out, err = run_cli("pcap", "--no-progress", "-q", str(CURL))
    assert err == ""


def test_several_files_in_one_run() -> None:
    status, out, _err = run_cli("pcap", "--no-progress", "-q", str(CURL), str(HRR))
    assert status == 0
    assert len(out.splitlines()) == len(expected(CURL)["hellos"]) + len(expected(HRR)["hellos"])


# --- real process: console script and stdin --------------------------------------------------


def _subprocess(*args: str, stdin: Any = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from cli.main import main; raise SystemExit(main())", *args],
        stdin=stdin, capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1],
    )  # fmt: skip


def test_console_script_subprocess() -> None:
    proc = subprocess.run(
        ["ja3svc", "pcap", "--no-progress", str(HRR)],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert Counter(d.get("ja3_hash") or d["ja3s_hash"] for d in records) == Counter(
        h["ja3_hash"] or h["ja3s_hash"] for h in expected(HRR)["hellos"]
    )
    assert "packets" in proc.stderr


def test_dash_reads_stdin() -> None:
    with CURL.open("rb") as fh:
        proc = _subprocess("pcap", "--no-progress", "-q", "-", stdin=fh)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    got = Counter((d["hello"], d["ja3"] if d["hello"] == "client" else d["ja3s"]) for d in records)
    assert got == tshark_full(CURL)


def test_dash_given_twice_is_a_usage_error() -> None:
    with CURL.open("rb") as fh:
        proc = _subprocess("pcap", "--no-progress", "-q", "-", "-", stdin=fh)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr


# --- damaged and wrong inputs ------------------------------------------------------------------


def test_truncated_file_prints_hellos_before_the_damage_and_exits_2(tmp_path: Path) -> None:
    raw = CURL.read_bytes()
    ends = record_ends(raw)
    exp = expected(CURL)
    # Cut 10 bytes into the record after the frame where tshark completed the 2nd hello.
    cut_frame = sorted(h["frame"] for h in exp["hellos"])[1]
    damaged_record_start = ends[cut_frame - 1]
    damaged = tmp_path / "cut.pcap"
    damaged.write_bytes(raw[: damaged_record_start + 10])
    status, out, err = run_cli("pcap", "--no-progress", str(damaged))
    assert status == 2
    records = [json.loads(line) for line in out.splitlines()]
    before = [h for h in exp["hellos"] if h["frame"] <= cut_frame]
    assert len(records) == len(before) == 2
    assert [r["hello"] for r in records] == [h["hello"] for h in before]
    assert str(damaged) in err
    offsets = [int(x) for x in re.findall(r"offset (\d+)", err)]
    assert offsets == [damaged_record_start], err
    assert "Traceback" not in err


def test_truncated_inside_file_header_is_damaged(tmp_path: Path) -> None:
    cut = tmp_path / "hdr.pcap"
    cut.write_bytes(CURL.read_bytes()[:10])
    status, out, err = run_cli("pcap", "--no-progress", str(cut))
    assert status == 2, err
    assert out == "" and str(cut) in err


def test_text_file_is_rejected_clearly(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("this is not a capture\n" * 10)
    status, out, err = run_cli("pcap", "--no-progress", str(text))
    assert status == 1
    assert out == ""
    assert str(text) in err and "not a pcap" in err
    assert "Traceback" not in err


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pcap"
    status, out, err = run_cli("pcap", "--no-progress", str(missing))
    assert status == 1
    assert out == "" and str(missing) in err
    assert "Traceback" not in err


def test_missing_file_does_not_stop_the_others(tmp_path: Path) -> None:
    status, out, _err = run_cli("pcap", "--no-progress", "-q", str(tmp_path / "x.pcap"), str(HRR))
    assert status == 1
    assert len(out.splitlines()) == len(expected(HRR)["hellos"])


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    status, _out, err = run_cli("pcap", "--no-progress", str(empty))
    assert status == 1 and "empty" in err


def test_unknown_option_is_usage_error() -> None:
    status, _out, _err = run_cli("pcap", "--no-such-option", str(HRR))
    assert status == 1


def test_broken_config_file_warns_offline_and_refuses_store(tmp_path, monkeypatch):
    bad = tmp_path / "ja3svc.toml"
    bad.write_text("database_url = [\n")
    monkeypatch.setenv("JA3SVC_CONFIG", str(bad))
    capture = Path(__file__).parent / "pcaps" / "openssl-tls13.pcap"
    status, out, err = run_cli("pcap", "--no-progress", "-q", str(capture))
    assert status == 0 and len(out.splitlines()) == 2  # analysis needs no settings
    assert "ignoring bad settings" in err and str(bad) in err
    status, out, err = run_cli("pcap", "--no-progress", "-q", "--store", str(capture))
    assert status == 1 and out == ""
    assert "bad settings" in err and str(bad) in err and "Traceback" not in err


def _pcap_store_process(env: dict[str, str], *argv: str) -> tuple[int, str, set[str]]:
    """``ja3svc pcap --store`` in a fresh interpreter: exit status, stderr, and which of the
    settings and database libraries it imported (in-process runs share the test session's
    modules)."""
    probe = (
        "import sys; from ja3svc.cli.main import main; status = main(sys.argv[1:]); "
        "print(sorted(m for m in ('pydantic', 'pydantic_settings', 'sqlalchemy') "
        "if m in sys.modules), "
        "file=sys.stderr); sys.exit(status)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, "pcap", "-q", "--no-progress", "--store", *argv],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    *lines, loaded = proc.stderr.strip().splitlines() or ["[]"]
    return proc.returncode, "\n".join(lines), set(json.loads(loaded.replace("'", '"')))


def _sightings(db_file: Path) -> int:
    with sqlite3.connect(db_file) as con:
        return int(con.execute("SELECT count(*) FROM sightings").fetchone()[0])


def test_store_unconfigured_uses_the_defaults_without_loading_settings(tmp_path: Path) -> None:
    # Nothing configured: the default SQLite file in the XDG data directory, made (through
    # SQLAlchemy, which migrates it) on first use, and the settings machinery (pydantic) never
    # imported; once the file is at the schema's head, SQLAlchemy is not imported either.
    # Configured through the environment: the configured database, through the settings.
    base = {k: v for k, v in os.environ.items() if not k.startswith("JA3SVC_")}
    env = base | {"XDG_DATA_HOME": str(tmp_path / "data"), "HOME": str(tmp_path)}
    default_file = tmp_path / "data" / "ja3svc" / "ja3svc.sqlite3"
    status, err, loaded = _pcap_store_process(env, str(HRR))
    hellos = len(expected(HRR)["hellos"])
    assert (status, err, loaded) == (0, "", {"sqlalchemy"})
    assert _sightings(default_file) == hellos
    status, err, loaded = _pcap_store_process(env, str(HRR))
    assert (status, err, loaded) == (0, "", set())
    assert _sightings(default_file) == hellos  # stored again: nothing new

    other = tmp_path / "configured.sqlite3"
    env_configured = env | {"JA3SVC_DATABASE_URL": f"sqlite:///{other}"}
    status, err, loaded = _pcap_store_process(env_configured, str(CURL))
    assert (status, err, loaded) == (0, "", {"pydantic", "pydantic_settings", "sqlalchemy"})
    assert _sightings(other) == len(expected(CURL)["hellos"])
    # --database-url without configuration: that database, still without the settings.
    given = tmp_path / "given.sqlite3"
    status, err, loaded = _pcap_store_process(
        env, str(CURL), "--database-url", f"sqlite:///{given}"
    )
    assert (status, err, loaded) == (0, "", {"sqlalchemy"})
    status, err, loaded = _pcap_store_process(env, str(HRR), "--database-url", f"sqlite:///{given}")
    assert (status, err, loaded) == (0, "", set())
    assert _sightings(given) == len(expected(CURL)["hellos"]) + hellos
    assert _sightings(default_file) == hellos  # untouched


@pytest.mark.postgres
def test_store_into_postgresql_at_head_without_sqlalchemy(
    pg_migrated_url: str, tmp_path: Path
) -> None:
    """A PostgreSQL database at the schema's head is checked and written through psycopg
    alone; one behind it is refused with the command that fixes it."""
    import psycopg

    env = {k: v for k, v in os.environ.items() if not k.startswith("JA3SVC_")} | {
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "HOME": str(tmp_path),
    }
    sensor = f"pg-fast-{os.getpid()}"
    url = pg_migrated_url
    status, err, loaded = _pcap_store_process(
        env, str(CURL), "--database-url", url, "--sensor", sensor
    )
    assert (status, err, loaded) == (0, "", set())
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as conn:
        (n,) = conn.execute(
            "SELECT count(*) FROM sightings WHERE sensor = %s", (sensor,)
        ).fetchone()
        assert n == len(expected(CURL)["hellos"])
        conn.execute("DELETE FROM sightings WHERE sensor = %s", (sensor,))
        (head,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    try:
        status, err, loaded = _pcap_store_process(env, str(CURL), "--database-url", url)
        assert status == 1 and "run `ja3svc db upgrade`" in err, err
    finally:
        with psycopg.connect(conninfo) as conn:
            conn.execute("UPDATE alembic_version SET version_num = %s", (head,))


def test_store_a_refused_batch_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """A batch the database refuses (not an outage, which is spooled) ends the run with the
    database's reason in one line and exit status 1."""
    db_file = tmp_path / "refusing.sqlite3"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JA3SVC_")} | {
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "HOME": str(tmp_path),
    }
    url = f"sqlite:///{db_file}"
    assert _pcap_store_process(env, str(HRR), "--database-url", url)[0] == 0  # migrated
    with sqlite3.connect(db_file) as con:
        con.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON sightings "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    status, err, _ = _pcap_store_process(env, str(CURL), "--database-url", url)
    assert status == 1
    assert err == "ja3svc pcap: database error: refused by the test"
    assert _sightings(db_file) == len(expected(HRR)["hellos"])
    assert not list((tmp_path / "data").rglob("*.jsonl"))  # refused, so not spooled


def test_store_says_what_it_stored(tmp_path: Path) -> None:
    """Without -q, `pcap --store` ends with what each input's sightings became: stored, already
    there (the capture stored again)."""
    url = f"sqlite:///{tmp_path / 'said.sqlite3'}"
    n = len(expected(CURL)["hellos"])
    argv = ("pcap", "--no-progress", "--store", "--database-url", url, str(CURL))
    for stored, there in ((n, 0), (0, n)):
        status, _, err = run_cli(*argv)
        assert status == 0
        assert err.splitlines()[-1] == (
            f"sightings of file:{CURL.name} in {url}: {stored} stored, {there} already there"
        )
