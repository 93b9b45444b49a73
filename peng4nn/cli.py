"""The `peng4nn` command.

Each sub-command lives in its own module under `peng4nn.commands` exposing
`add_parser(subparsers)` and `run(args) -> int`; modules are imported only when
listed here so that `peng4nn --help` stays fast (no torch import).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from peng4nn import __version__

#: Sub-command name -> module under peng4nn.commands.
COMMANDS: dict[str, str] = {
    "replay": "replay",
    "random-arch": "random_arch",
    "estimate": "estimate",
    "serve": "serve",
    "worker": "worker",
    "experiment": "experiment",
    "report": "report",
    "demo": "demo",
    "submit": "submit",
    "jobs": "list_jobs",
    "watch": "watch",
    "cancel": "cancel",
}

EXIT_USAGE = 2


class CliError(Exception):
    """A user-facing error: printed as one line and exits with code 2."""


def json_object_option(text: str, option: str) -> dict:
    """Parse an option whose value is a JSON object (e.g. --ranges), or raise CliError naming it."""
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{option} is not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(value, dict):
        raise CliError(f"{option} must be a JSON object; got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="peng4nn",
        description="Performance estimation engine for neural architecture search.",
    )
    parser.add_argument("--version", action="version", version=f"peng4nn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(f"peng4nn.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"peng4nn.commands.{module_name}":
                continue  # command not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.run(args) or 0)
    except CliError as exc:
        print(f"peng4nn {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
