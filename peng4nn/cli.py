"""The `peng4nn` command.

Each sub-command lives in a module exposing `add_parser(subparsers)` and `run(args) -> int`: the
library's own under `peng4nn.commands` (listed in `COMMANDS`), the adapters' (``serve``, ``worker``)
registered as entry points of the group ``peng4nn.commands``, so the library never imports them.
Modules import their heavy dependencies inside `run`, so `peng4nn --help` stays fast (no torch),
and a command whose extra is not installed says which one instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import entry_points

from peng4nn import __version__

#: Sub-command name -> module under peng4nn.commands.
COMMANDS: dict[str, str] = {
    "replay": "replay",
    "random-arch": "random_arch",
    "estimate": "estimate",
    "experiment": "experiment",
    "report": "report",
    "demo": "demo",
    "submit": "submit",
    "jobs": "list_jobs",
    "watch": "watch",
    "cancel": "cancel",
}

ENTRY_POINT_GROUP = "peng4nn.commands"
"""Where the adapters register their commands (pyproject.toml)."""

EXTRA_OF_MODULE: dict[str, str] = {
    "torch": "train", "torchvision": "train", "sklearn": "train", "mlxtend": "train", "pandas": "train",
    "tqdm": "train", "fastapi": "service", "starlette": "service", "uvicorn": "service", "redis": "service",
    "rq": "service", "pydantic_settings": "service", "httpx": "client", "matplotlib": "figures",
    "optuna": "optuna",
}
"""Which extra installs a missing top-level module, for the one-line error a command gives instead."""

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
    for module_name in COMMANDS.values():
        importlib.import_module(f"peng4nn.commands.{module_name}").add_parser(sub)
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        entry.load().add_parser(sub)
    return parser


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The one-line message for a dependency of an extra that is not installed (None: another error)."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    return f"this needs the {top} package: pip install 'peng4nn[{extra}]'"


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
    except ModuleNotFoundError as exc:
        message = missing_extra(exc)
        if message is None:
            raise
        print(f"peng4nn {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
