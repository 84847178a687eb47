"""An install without a Rust toolchain: the build skips the extension, and ``ja3svc pcap`` says so
in one line and runs the pure-Python engine with the same output.

A real build: the checkout's tracked files are copied aside (so no extension built earlier can
leak into the wheel) and built into a wheel with cargo and rustc taken off PATH. The wheel is
then run with this environment's dependencies but without its editable ja3svc.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from tests.support.paths import PCAPS, REPO


def _without_rust() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARGO", "RUSTUP"))}
    dirs = [d for d in env.get("PATH", "").split(os.pathsep) if d]
    env["PATH"] = os.pathsep.join(
        d for d in dirs if not (Path(d) / "cargo").exists() and not (Path(d) / "rustc").exists()
    )
    assert shutil.which("cargo", path=env["PATH"]) is None
    return env


def test_install_without_rust_falls_back_to_the_python_engine(tmp_path: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    src = tmp_path / "src"
    for name in filter(None, (f.decode() for f in files)):
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    env = _without_rust()
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
         str(src)],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("ja3svc-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ja3svc/engine.py" in names
    assert not [n for n in names if n.startswith("ja3svc/_native") and not n.endswith(".pyi")]
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(wheel).extractall(unpacked)
    # -S: no site processing, so this environment's editable ja3svc stays out; its
    # dependencies come from its site-packages on PYTHONPATH. Run outside the checkout, whose
    # ja3svc/ folder would shadow the wheel's.
    run_env = {**env, "PYTHONPATH": f"{unpacked}{os.pathsep}{sysconfig.get_paths()['purelib']}"}
    code = "import sys; from ja3svc.cli.main import main; sys.exit(main(sys.argv[1:]))"
    capture = str(PCAPS / "openssl-tls13.pcap")
    res = subprocess.run(
        [sys.executable, "-S", "-c", code, "pcap", capture],
        env=run_env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("\n") == 2
    notes = [line for line in res.stderr.splitlines() if "Rust engine" in line]
    assert notes == [
        "ja3svc pcap: the Rust engine is not built in this install (no Rust toolchain at "
        "install time); using the slower pure-Python engine"
    ]
    ref = subprocess.run(
        [sys.executable, "-m", "ja3svc.cli.main", "pcap", "-q", "--engine", "native", capture],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ref.stdout == res.stdout
    forced = subprocess.run(
        [sys.executable, "-S", "-c", code, "pcap", "--engine", "native", capture],
        env=run_env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert forced.returncode == 1 and forced.stdout == ""
    assert forced.stderr.count("\n") == 1 and "Rust engine is not built" in forced.stderr
