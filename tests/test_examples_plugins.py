"""The plug-in examples that docs/OBSERVE.md points to run as shipped (small settings, real frameworks)."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest

from tests.conftest import import_keras

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(150)


def run_example(name: str, argv: list[str], monkeypatch, tmp_path, capsys) -> str:
    monkeypatch.chdir(tmp_path)  # they write under ./runs
    monkeypatch.setattr(sys, "argv", [name, *argv])
    runpy.run_path(str(ROOT / "examples" / name), run_name="__main__")
    return capsys.readouterr().out


def test_lightning_example_stops_and_resumes(monkeypatch, tmp_path, capsys):
    out = run_example("lightning_digits.py", ["--max-epochs", "3"], monkeypatch, tmp_path, capsys)
    assert re.search(r"^(converged|max_epochs) at epoch [\d.]+ of 3: estimate \d+\.\d\d%$", out, re.M), out
    assert (tmp_path / "runs" / "lightning-digits" / "last.ckpt").is_file()
    resumed = run_example("lightning_digits.py", ["--max-epochs", "3", "--resume"], monkeypatch, tmp_path, capsys)
    assert resumed.splitlines()[0] == out.splitlines()[0]  # the curve came back from the checkpoint


def test_keras_example_stops_the_fit(monkeypatch, tmp_path, capsys):
    import_keras()
    out = run_example("keras_digits.py", [], monkeypatch, tmp_path, capsys)
    assert re.search(r"^converged at epoch \d+ of 20: estimate \d+\.\d\d%$", out, re.M), out
    assert not (tmp_path / "runs" / "keras-digits" / "peng4nn.json").exists()  # a finished fit drops its backup

# The Ray example runs in tests/test_integration_ray.py, on that module's Ray instance.
