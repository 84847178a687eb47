"""The built wheel installs one import name, ``ja3svc``, and nothing beside it.

The repository keeps capture/, api/, store/, cli/ and migrations/ at its top level; the build maps
them to subpackages of ``ja3svc``. A tool that shipped ``api`` or ``cli`` as top-level packages
would shadow (or be shadowed by) any other project's package of that name.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"),
         str(ROOT)],
        check=True,
        timeout=900,
    )
    (wheel,) = (tmp / "dist").glob("ja3svc-*.whl")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        timeout=300,
    )
    return python


def _site_packages(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


def test_only_ja3svc_is_installed(installed_wheel: Path) -> None:
    # What pip installed, from the RECORD it wrote: every path's first component.
    site = _site_packages(installed_wheel)
    (record,) = site.glob("ja3svc-*.dist-info/RECORD")
    names = {line.split(",", 1)[0].split("/", 1)[0] for line in record.read_text().splitlines()}
    names -= {"..", ""}  # the console script lands in bin/
    dist_info = {n for n in names if n.endswith(".dist-info")}
    assert len(dist_info) == 1, names
    assert names - dist_info == {"ja3svc"}


@pytest.mark.parametrize("name", ["cli", "api", "store", "capture", "migrations"])
def test_old_top_level_names_do_not_import(installed_wheel: Path, name: str) -> None:
    res = subprocess.run(
        [str(installed_wheel), "-c", f"import {name}"],
        capture_output=True,
        text=True,
        cwd=installed_wheel.parent,  # not the checkout, whose folders would import
    )
    assert res.returncode == 1 and "ModuleNotFoundError" in res.stderr, res.stderr


def test_every_subpackage_and_data_file_is_in_the_wheel(installed_wheel: Path) -> None:
    site = _site_packages(installed_wheel) / "ja3svc"
    for folder, sub in [("capture", "capture"), ("api", "api"), ("api/routes", "api/routes"),
                        ("api/console", "api/console"), ("store", "store"), ("cli", "cli"),
                        ("migrations", "migrations"),
                        ("migrations/versions", "migrations/versions")]:  # fmt: skip
        for src in (ROOT / folder).glob("*.py"):
            assert (site / sub / src.name).is_file(), f"{folder}/{src.name} missing from the wheel"
    # The console's templates and assets (package data, not modules).
    for pattern in ("templates/*.html", "static/*"):
        for src in (ROOT / "api" / "console").glob(pattern):
            rel = src.relative_to(ROOT / "api")
            assert (site / "api" / rel).is_file(), f"api/{rel} missing from the wheel"
    assert (site / "migrations" / "script.py.mako").is_file()
    assert (site / "py.typed").is_file()


def test_version_has_one_source() -> None:
    from importlib.metadata import metadata, version

    from ja3svc._version import __version__

    assert version("ja3svc") == __version__
    out = subprocess.run(
        [sys.executable, "-m", "ja3svc.cli.main", "--version"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert (out.returncode, out.stdout.strip()) == (0, f"ja3svc {__version__}")
    meta = metadata("ja3svc")
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert (ROOT / "LICENSE").read_text().startswith("BSD 3-Clause License")
    assert f"## [{__version__}]" in (ROOT / "CHANGELOG.md").read_text()
