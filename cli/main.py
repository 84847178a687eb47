"""Entry point of the ``ja3svc`` console script.

Each sub-command lives in its own module exposing ``register(subparsers)``; that function adds
the parser and sets ``func`` to a callable taking the parsed namespace and returning the exit
status. Exit statuses: 0 success, 1 usage error or unreadable input, 2 damaged input.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ja3svc._version import __version__

# Modules providing sub-commands, in the order they appear in ``--help``.
COMMAND_MODULES = (
    "ja3svc.cli.pcap_command",
    "ja3svc.cli.serve_command",
    "ja3svc.cli.db_command",
    "ja3svc.cli.fingerprints_command",
    "ja3svc.cli.labels_command",
    "ja3svc.cli.decisions_command",
    "ja3svc.cli.capture_command",
)

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_DAMAGED = 2


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every sub-command, or of the module ``only`` alone."""
    parser = argparse.ArgumentParser(
        prog="ja3svc",
        description="TLS client fingerprints from captures, a fingerprint database and a "
        "Dovecot authentication-policy service.",
    )
    parser.add_argument("--version", action="version", version=f"ja3svc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        if only is None or name == only:
            importlib.import_module(name).register(sub)
    return parser


def _command_module(argv: Sequence[str]) -> str | None:
    """The module of the sub-command ``argv`` names first, if any: only that one is imported,
    since the others pull in the web and database stacks (seconds of start-up for a one-packet
    `ja3svc pcap`)."""
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is None or argv[0].startswith("-"):
        return None  # --help, --version: every command
    module = f"ja3svc.cli.{first}_command"
    return module if module in COMMAND_MODULES else None


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_module(args_list))
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # argparse exits 2 on usage errors (ours is 1), 0 after --version
        code = exc.code if isinstance(exc.code, int) else EXIT_USAGE
        return EXIT_USAGE if code == 2 else code
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `ja3svc pcap big.pcap | head` must not print a traceback.
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
