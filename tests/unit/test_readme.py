"""The README's Python examples run: every ```pycon block of README.md is a doctest.

Expected values in those blocks come from oracles named beside them (the JA3 README's test
vectors, tshark's output for the capture, Dovecot's documentation), not from our own output.
"""

from __future__ import annotations

import doctest
import re

import pytest

from tests.support.paths import REPO

BLOCK = re.compile(r"^```pycon\n(.*?)^```", re.M | re.S)


def _blocks() -> list[str]:
    return BLOCK.findall((REPO / "README.md").read_text())


def test_the_readme_has_python_examples() -> None:
    assert len(_blocks()) >= 2


@pytest.mark.parametrize("number", range(len(_blocks())))
def test_readme_example(number: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the examples name files relative to the repository's root
    text = _blocks()[number]
    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, {}, f"README.md example {number + 1}", "README.md", 0)
    assert test.examples, "a pycon block without >>> lines"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    result = runner.run(test, out=report.append)
    assert result.failed == 0, "".join(report)
