"""The layering the project promises: a pure core, and capture/ and api/ independent of each other.

Read from the source with ``ast`` (imports inside functions count too), so a stray import fails
here rather than in a review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level packages of this project it must never import
FORBIDDEN = {
    "ja3svc": {"capture", "api", "store", "cli", "migrations"},
    "capture": {"api", "cli"},
    "api": {"capture", "cli"},
    "store": {"capture", "api", "cli"},
}
# The core opens no file or socket of its own accord: no modules that exist to do IO.
CORE_FORBIDDEN_MODULES = {"subprocess", "urllib", "http", "requests", "httpx", "sqlite3", "psycopg"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layering(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no modules"
    bad = []
    for path in files:
        for name in _imports(path):
            top = name.split(".")[0]
            if top in FORBIDDEN[package] or (package == "ja3svc" and top in CORE_FORBIDDEN_MODULES):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)
