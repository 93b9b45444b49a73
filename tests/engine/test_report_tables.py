"""`peng4nn report` with the core install: every table, and a note (not a crash) for what an extra would add."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from peng4nn.cli import main
from peng4nn.report import FIGURES_MISSING_NOTE, OPTUNA_MISSING_NOTE

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "data" / "penguin-cifar100-sample.csv"


def test_report_writes_its_tables_and_names_the_missing_extras(tmp_path, capsys):
    assert main(["report", str(SAMPLE), "--num-classes", "100", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert {"paper", "adaptive", "menndl", "patience"} <= set(results["policies"])
    report = (tmp_path / "report.md").read_text()
    assert "adaptive" in report and "menndl" in report.lower()
    has_matplotlib = importlib.util.find_spec("matplotlib") is not None
    has_optuna = importlib.util.find_spec("optuna") is not None
    assert (FIGURES_MISSING_NOTE in results["notes"]) is not has_matplotlib
    assert (OPTUNA_MISSING_NOTE in results["notes"]) is not has_optuna
    assert bool(results["figures"]) is has_matplotlib
    assert any(k.startswith("optuna-") for k in results["policies"]) is has_optuna
