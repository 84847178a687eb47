"""Where the tests find their data, relative to this checkout (no machine paths)."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
PCAPS = TESTS / "pcaps"
FIXTURES = TESTS / "fixtures"
# Third-party captures and their recorded oracle outputs: read in place from ../shared beside the
# checkout (where CI puts them), never copied into the repository.
CONFORMANCE = REPO.parent / "shared" / "conformance"
FOXIO = CONFORMANCE / "foxio"
