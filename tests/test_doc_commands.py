"""The commands README.md and docs/*.md show run as written.

Every `ja3svc ...` line in a fenced block is extracted (synopses, examples, systemd ExecStart
lines, continuation lines joined). Each must name real sub-commands and only options that
sub-command accepts. The README's example session is run for real, in order, in a fresh data
directory (its /etc/suricata paths moved into the temporary directory), and what it prints must
be what the README shows.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from ja3svc.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class DocCommand:
    file: str
    line: int
    text: str  # from "ja3svc" on, continuation lines joined, comment removed


def _blocks(path: Path) -> list[list[tuple[int, str]]]:
    blocks, current, inside = [], [], False
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            if inside:
                blocks.append(current)
            current, inside = [], not inside
            continue
        if inside:
            current.append((n, line))
    return blocks


def _strip_comment(text: str) -> str:
    out, quote = [], ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        out.append(ch)
    return "".join(out).strip()


def doc_commands() -> list[DocCommand]:
    found = []
    for path in DOCS:
        for block in _blocks(path):
            i, last = 0, None
            while i < len(block):
                n, line = block[i]
                text = line.strip().removeprefix("$ ")
                m = re.search(r"(?:^|ExecStart=\S*?/|\bdo )(ja3svc \S.*)", text)
                while text.endswith("\\") and i + 1 < len(block):
                    i += 1
                    text = text[:-1] + " " + block[i][1].strip()
                    m = re.search(r"(?:^|ExecStart=\S*?/|\bdo )(ja3svc \S.*)", text)
                i += 1
                if m:
                    cmd = re.split(r"\s(?:>|\||;)\s", _strip_comment(m.group(1)))[0]
                    found.append(DocCommand(path.name, n, cmd))
                    last = len(found) - 1
                elif text.startswith("-") and last is not None:
                    # A synopsis's option lines, indented under its command.
                    prev = found[last]
                    found[last] = DocCommand(
                        prev.file, prev.line, f"{prev.text} {_strip_comment(text)}"
                    )
                else:
                    last = None
    return found


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


COMMANDS = doc_commands()


def test_the_docs_show_commands():
    assert len(COMMANDS) >= 30
    assert any("--correlate-db" in c.text for c in COMMANDS)


@pytest.mark.parametrize("cmd", COMMANDS, ids=[f"{c.file}:{c.line}" for c in COMMANDS])
def test_documented_options_exist(cmd: DocCommand):
    tokens = shlex.split(cmd.text.replace("[", " ").replace("]", " "))
    parser, path = build_parser(), ["ja3svc"]
    for token in tokens[1:]:
        sub = _subparsers(parser)
        if not sub or token.startswith("-"):
            break
        assert token in sub, f"{cmd.file}:{cmd.line}: {' '.join(path)} has no {token!r}"
        parser, path = sub[token], [*path, token]
    assert len(path) > 1 or tokens[1:2] == ["--version"], cmd
    known = parser._option_string_actions
    for token in tokens:
        if re.fullmatch(r"--?[a-zA-Z][\w-]*(=.*)?", token):
            option = token.split("=", 1)[0]
            assert option in known, f"{cmd.file}:{cmd.line}: `{' '.join(path)}` has no {option}"


def _example_session() -> list[tuple[str, list[str]]]:
    """(command, the output lines the README shows after it) of the example session block."""
    readme = (ROOT / "README.md").read_text().splitlines()
    start = readme.index("### Example session")
    block = next(b for b in _blocks(ROOT / "README.md") if b[0][0] > start + 1)
    steps: list[tuple[str, list[str]]] = []
    lines = [line for _, line in block]
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("$ "):
            cmd = line[2:]
            while cmd.endswith("\\"):
                cmd = cmd[:-1] + " " + lines[i].strip()
                i += 1
            steps.append((cmd, []))
        else:
            steps[-1][1].append(line)
    return steps


def test_the_readme_example_session_runs_and_prints_what_it_shows(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JA3SVC_")}
    env["JA3SVC_DATA_DIR"] = str(tmp_path / "data")
    steps = _example_session()
    assert len(steps) >= 8
    for cmd, shown in steps:
        run = cmd.replace("/etc/suricata/", f"{tmp_path}/")
        proc = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {run} 2>&1"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, (cmd, proc.stdout)
        printed = proc.stdout.replace(f"{tmp_path}/", "/etc/suricata/").splitlines()
        # A long JA3 string is shortened in the README with "...".
        assert len(printed) == len(shown), (cmd, printed, shown)
        for got, want in zip(printed, shown, strict=True):
            pattern = ".*".join(re.escape(part) for part in want.split("..."))
            assert re.fullmatch(pattern, got.rstrip()), (cmd, got, want)
