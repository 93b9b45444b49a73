"""Sub-commands of the `peng4nn` CLI: one module each, with `add_parser(subparsers)`.

`add_parser` registers the sub-parser and sets `run=<callable(args) -> int>` as
its default. Raise `peng4nn.cli.CliError` for bad input (exit code 2).
"""
