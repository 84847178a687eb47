"""The layering the project promises: a pure core, and capture/ and api/ independent of each other.

Read from the source with ``ast`` (imports inside functions count too), so a stray import fails
here rather than in a review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.paths import REPO

ROOT = REPO

# repository folder -> the installed package it becomes
PACKAGES = {
    "ja3svc": "ja3svc",
    "capture": "ja3svc.capture",
    "api": "ja3svc.api",
    "store": "ja3svc.store",
    "cli": "ja3svc.cli",
    "migrations": "ja3svc.migrations",
    "config": "ja3svc.config",
}
# folder -> folders (as installed packages) whose modules it must never import
FORBIDDEN = {
    "ja3svc": {"capture", "api", "store", "cli", "migrations", "config"},
    "capture": {"api", "cli"},
    "api": {"capture", "cli"},
    "store": {"capture", "api", "cli"},
    # settings describe the edges; they import none of them
    "config": {"capture", "api", "store", "cli", "migrations"},
}
# The old top-level spellings: importing them means the build mapping was bypassed.
OLD_TOP_LEVEL = {"capture", "api", "store", "cli", "migrations", "config"}
# The core is bytes in, fingerprints and verdicts out: no settings loading, ORM, threads, clocks,
# sockets, environment, logging or event loop, and no module that exists to do IO. Whoever needs
# those (capture, store, api, cli) does it and passes plain values in.
CORE_FORBIDDEN_MODULES = {
    "sqlalchemy", "alembic", "pydantic", "pydantic_settings", "os", "threading", "socket", "time",
    "logging", "subprocess", "asyncio", "sqlite3", "psycopg", "urllib", "http", "httpx",
    "requests", "concurrent", "multiprocessing", "queue", "signal", "selectors", "tomllib",
    "uvicorn", "fastapi",
}  # fmt: skip


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _is_within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_layering(folder: str) -> None:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"{folder}/ has no modules"
    forbidden = [PACKAGES[f] for f in FORBIDDEN[folder]]
    bad = []
    for path in files:
        for name in _imports(path):
            if any(_is_within(name, p) for p in forbidden) or (
                folder == "ja3svc" and name.split(".")[0] in CORE_FORBIDDEN_MODULES
            ):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("folder", [*PACKAGES, "tests", "benchmarks"])
def test_no_old_top_level_imports(folder: str) -> None:
    bad = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / folder).rglob("*.py"))
        for name in _imports(path)
        if name.split(".")[0] in OLD_TOP_LEVEL
    ]
    assert not bad, "\n".join(bad)


def test_benchmarks_import_nothing_from_tests() -> None:
    bad = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "benchmarks").rglob("*.py"))
        for name in _imports(path)
        if _is_within(name, "tests")
    ]
    assert not bad, "\n".join(bad)


def test_unit_tests_need_no_database() -> None:
    """tests/unit imports neither the store nor a database driver (no database there)."""
    bad = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "tests" / "unit").rglob("*.py"))
        for name in _imports(path)
        if name.split(".")[0] in {"sqlalchemy", "alembic", "psycopg", "sqlite3"}
        or _is_within(name, "ja3svc.store")
        or _is_within(name, "ja3svc.api")
        or _is_within(name, "tests.support.database")
    ]
    assert not bad, "\n".join(bad)


# Places that exist on one machine only (a checkout, a home directory): tests find their data
# relative to the checkout instead (tests/support/paths.py).
MACHINE_PATH_PREFIXES = ("/work/", "/home/", "/root/", "/Users/")


@pytest.mark.parametrize("folder", ["tests", "testbed", "benchmarks"])
def test_no_machine_paths(folder: str) -> None:
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        if path == Path(__file__).resolve():
            continue  # the prefixes above
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value.startswith(MACHINE_PATH_PREFIXES)
            ):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:60]!r}")
    assert not bad, "\n".join(bad)
