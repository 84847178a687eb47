"""The CLI with the tools around it: a database at the wrong schema revision, a closed output
pipe, gzip-compressed captures, and records that say where in which file each hello was.

Frame numbers and hashes come from tshark (tests/pcaps/*.expected.json).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import subprocess
from collections import Counter

import pytest

from tests.support.cli import run_cli
from tests.support.paths import PCAPS

HRR = PCAPS / "openssl-hrr.pcap"
CURL = PCAPS / "curl-https.pcap"


def expected(path) -> dict:
    return json.loads(path.with_suffix(".expected.json").read_text())


# --- schema revision ---------------------------------------------------------------------


@pytest.fixture
def pg_at_older_revision(pg_admin_url):
    from tests.support.database import fresh_pg_database

    with fresh_pg_database(pg_admin_url) as url:
        status, _, err = run_cli("db", "upgrade", "0001", "--database-url", url)
        assert status == 0, err
        yield url


COMMANDS = [
    ("fingerprints", "top"),
    ("fingerprints", "search", "gnutls"),
    ("labels", "add", "f35ce21b44ac0b87d3266294bb1b0e20"),
    ("labels", "list"),
    ("labels", "import", "sslbl", str(PCAPS.parent / "fixtures" / "labels" / "sslbl.csv")),
    ("db", "prune"),
    ("pcap", "-q", "--store", str(HRR)),
]


@pytest.mark.postgres
@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(c[:2]) for c in COMMANDS])
def test_commands_refuse_an_older_schema_with_one_line(pg_at_older_revision, argv):
    status, out, err = run_cli(*argv, "--database-url", pg_at_older_revision)
    assert status == 1 and out == ""
    assert len(err.splitlines()) == 1, err
    assert "is at revision 0001" in err and "run `ja3svc db upgrade`" in err
    # `db current` still works (it is how one finds out), and nothing was changed.
    status, out, _ = run_cli("db", "current", "--database-url", pg_at_older_revision)
    assert status == 0 and "revision 0001" in out


@pytest.mark.postgres
def test_pcap_store_into_an_unmigrated_postgresql_is_one_line(pg_admin_url):
    from tests.support.database import fresh_pg_database

    with fresh_pg_database(pg_admin_url) as url:
        status, out, err = run_cli("pcap", "--store", str(HRR), "--database-url", url)
    assert status == 1 and out == ""
    assert (
        err.splitlines() == [err.strip()]
        and "revision none (empty)" in err
        and "ja3svc db upgrade" in err
    )


# --- pcap output --------------------------------------------------------------------------


def test_records_carry_file_and_frame_as_tshark_numbers_them():
    status, out, _ = run_cli("pcap", "-q", "--no-progress", str(CURL), str(HRR))
    assert status == 0
    got = Counter(
        (r["file"], r["frame"], r.get("ja3_hash") or r["ja3s_hash"])
        for r in map(json.loads, out.splitlines())
    )
    want = Counter(
        (str(path), h["frame"], h["ja3_hash"] or h["ja3s_hash"])
        for path in (CURL, HRR)
        for h in expected(path)["hellos"]
    )
    assert got == want
    status, out, _ = run_cli("pcap", "-q", "--format", "csv", str(CURL))
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["frame"]) for r in rows] == [h["frame"] for h in expected(CURL)["hellos"]]
    assert {r["file"] for r in rows} == {str(CURL)}


def test_table_shows_date_zone_and_transport():
    _, out, _ = run_cli("pcap", "-q", "--format", "table", str(CURL))
    header, *body = out.splitlines()
    assert header.startswith("time (UTC)") and " proto " in header
    # tshark's absolute time of the first hello's frame, in UTC, to the microsecond.
    first = expected(CURL)["hellos"][0]["frame"]
    line = subprocess.run(
        ["tshark", "-r", str(CURL), "-Y", f"frame.number=={first}", "-T", "fields",
         "-e", "frame.time_epoch"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    import datetime

    when = datetime.datetime.fromtimestamp(float(line), datetime.UTC)
    assert body[0].startswith(when.strftime("%Y-%m-%dT%H:%M:%S.%fZ") + " tcp ")


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_summary_honours_format(fmt):
    status, out, _ = run_cli("pcap", "-q", "--summary", "--format", fmt, str(CURL))
    assert status == 0
    want = Counter(h["ja3_hash"] or h["ja3s_hash"] for h in expected(CURL)["hellos"])
    if fmt == "json":
        rows = [json.loads(line) for line in out.splitlines()]
        got = Counter({r["hash"]: r["count"] for r in rows})
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        got = Counter({r["hash"]: int(r["count"]) for r in rows})
    else:
        got = Counter({ln.split()[2]: int(ln.split()[0]) for ln in out.splitlines()[1:]})
    assert got == want


def test_gzip_capture_is_read_directly(tmp_path):
    packed = tmp_path / "curl-https.pcap.gz"
    packed.write_bytes(gzip.compress(CURL.read_bytes()))
    status, out, err = run_cli("pcap", "--no-progress", str(packed))
    assert status == 0, err
    records = [json.loads(x) for x in out.splitlines()]
    got = Counter(r.get("ja3_hash") or r["ja3s_hash"] for r in records)
    assert got == Counter(h["ja3_hash"] or h["ja3s_hash"] for h in expected(CURL)["hellos"])
    # Cut short: what was readable is printed, exit 2, the message says so.
    cut = tmp_path / "cut.pcap.gz"
    cut.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
    status, out, err = run_cli("pcap", "--no-progress", str(cut))
    assert status == 2 and "gzip data damaged or cut short" in err
    # From standard input too.
    proc = subprocess.run(
        ["ja3svc", "pcap", "-q", "-"], input=packed.read_bytes(), capture_output=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == len(expected(CURL)["hellos"])


def test_closed_output_pipe_ends_quietly_with_exit_0():
    # 300 copies of a capture: far more output than a pipe buffer holds.
    args = ["ja3svc", "pcap", "--no-progress", *[str(CURL)] * 300]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = [proc.stdout.readline() for _ in range(2)]
    proc.stdout.close()  # what `| head -2` does after two lines
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert all(json.loads(line)["file"] == str(CURL) for line in first)
    assert err == ""
