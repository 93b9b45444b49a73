"""A command whose extra is not installed says which one, in one line, exit code 2 (never a traceback)."""

from __future__ import annotations

import importlib.util

import pytest

from peng4nn import cli


def test_a_missing_module_of_an_extra_names_the_extra(monkeypatch, capsys):
    def needs_fastapi(args):
        raise ModuleNotFoundError("No module named 'fastapi'", name="fastapi")

    parser = cli.build_parser()
    args = parser.parse_args(["replay", "x.csv"])
    monkeypatch.setattr(cli, "build_parser", lambda: _Fixed(parser, args, needs_fastapi))
    assert cli.main(["replay", "x.csv"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err == "peng4nn replay: error: this needs the fastapi package: pip install 'peng4nn[service]'\n"


def test_a_missing_module_of_no_extra_is_a_real_error(monkeypatch):
    def broken(args):
        raise ModuleNotFoundError("No module named 'nonexistent_thing'", name="nonexistent_thing")

    parser = cli.build_parser()
    args = parser.parse_args(["replay", "x.csv"])
    monkeypatch.setattr(cli, "build_parser", lambda: _Fixed(parser, args, broken))
    with pytest.raises(ModuleNotFoundError):
        cli.main(["replay", "x.csv"])


def test_the_demo_says_which_extras_before_starting_anything(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None if name == "torch" else real(name, *a, **k))
    assert cli.main(["demo"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "pip install 'peng4nn[service,train]' (missing: " in err and "torch)" in err


def test_the_adapters_commands_come_from_entry_points():
    """serve and worker are registered by the distribution, not imported by the library."""
    names = {entry.name for entry in cli.entry_points(group=cli.ENTRY_POINT_GROUP)}
    assert names == {"serve", "worker"}
    help_text = cli.build_parser().format_help()
    assert "serve" in help_text and "worker" in help_text


class _Fixed:
    """A parser whose parse_args returns ``args`` with ``run`` replaced."""

    def __init__(self, parser, args, run):
        self.parser, self.args = parser, args
        args.run = run

    def parse_args(self, argv):
        return self.args

    def print_help(self):
        self.parser.print_help()
