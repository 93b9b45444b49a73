"""`peng4nn report`: every policy replayed on real recorded curves, results, report and figures written headless."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peng4nn import figures
from peng4nn.cli import main
from peng4nn.replay import read_curves
from peng4nn.report import build_report, fixed_budget_curve

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "data" / "penguin-cifar100-sample.csv"  # the shipped copy of ../shared/data/
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = ("fig4", "fig5", "fig7", "fig8", "frontier", "budget")


def _is_png(path: Path) -> bool:
    return path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_MAGIC


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return build_report(SAMPLE, out, num_classes=100, title="sample"), out


def test_report_writes_results_markdown_and_every_figure(sample_report):
    result, out = sample_report
    assert set(result.figures) == set(FIGURES)
    for path in result.figures.values():
        assert _is_png(path), path
    saved = json.loads((out / "results.json").read_text())
    assert saved["n_models"] == 3 and saved["E"] == 0.5 and saved["baseline_monitor"] == "train_loss"
    expected = {"paper", "paper-median", "paper-loss", "menndl", "patience", "optuna-median", "optuna-sha",
                "optuna-patient"}
    assert expected <= set(saved["policies"])
    for entry in saved["policies"].values():
        assert set(entry["summary"]) == {"n_models", "epochs_saved_mean", "throughput_gain", "overlap",
                                         "mean_acc_diff", "regret_at_1", "mean_epochs", "mae", "mae_top",
                                         "coverage", "coverage_n"}
    # the baseline saves nothing against itself
    assert saved["policies"]["menndl"]["summary"]["epochs_saved_mean"] == 0.0
    assert saved["policies"]["menndl"]["summary"]["throughput_gain"] == 1.0
    assert [b["k"] for b in saved["fixed_budget"]] == list(range(1, 21))
    budgets = saved["adaptive_budget"]
    assert budgets[0]["budget"] == 1.5 and budgets[-1]["budget"] == 10.0  # c_min points of E = 0.5 .. e_max / 2
    # Three networks cannot repay the references a budget buys on credit (tests/test_adaptive.py checks the
    # budget on searches long enough to); the mean still falls as the budget does.
    means = [b["summary"]["mean_epochs"] for b in budgets]
    assert means[0] <= means[-1]
    text = (out / "report.md").read_text()
    for heading in ("Table IV", "Table V", "Every policy", "Fixed budget", "under a budget", "Figures"):
        assert heading in text
    for name in saved["figures"].values():
        assert f"]({name})" in text


def test_engine_rows_match_a_direct_replay(sample_report):
    from peng4nn.replay import policy_factory, replay

    result, _ = sample_report
    direct = replay(read_curves(SAMPLE), policy_factory("paper", estimator={"E": 0.5, "e_max": 20}, num_classes=100))
    rows = result.results["engine_models"]
    assert [r["stop_epoch"] for r in rows] == [o.stop_epoch for o in direct]
    assert [r["estimate"] for r in rows] == [o.estimate for o in direct]


def test_fixed_budget_at_e_max_ranks_by_the_ground_truth_itself():
    curves = read_curves(SAMPLE)
    budget = fixed_budget_curve(curves, E=0.5, e_max=20)
    full = budget[-1]["summary"]
    assert budget[-1]["k"] == 20
    assert full["overlap"] == {"10": 1.0, "20": 1.0, "30": 1.0}
    assert full["regret_at_1"] == 0.0
    # k epochs of every model: saving and throughput follow from the MENNDL stops alone
    saved = [b["summary"]["epochs_saved_mean"] for b in budget]
    assert saved == sorted(saved, reverse=True)


def test_figures_render_headless_from_plain_numbers(tmp_path):
    paths = [
        figures.epochs_saved_histogram([0.9, 0.5, -0.1, 0.75], tmp_path / "a.png"),
        figures.estimate_vs_actual([10, 50, 90, 70], [12, 40, 88, 75], {2}, {3}, tmp_path / "b.png"),
        figures.top_models_boxplot([90, 80], [85, 70], tmp_path / "c.png"),
        figures.example_curve([0.5, 1, 1.5, 2], [10, 20, 25, 27], [0.5, 2], [10, 27], 1.5, 28.0, tmp_path / "d.png"),
        figures.frontier([("x", 0.8, 0.7)], [(1, 0.5, 0.95), (2, 0.7, 0.9)], tmp_path / "e.png"),
    ]
    assert all(_is_png(p) for p in paths)


def test_report_cli_writes_the_directory(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["report", str(SAMPLE), "--out", str(out), "--num-classes", "100"]) == 0
    assert (out / "report.md").exists() and (out / "results.json").exists()
    err = capsys.readouterr().err
    assert "3 models, adaptive (the default): saves" in err and "3 models, paper (Algorithm 2): saves" in err


def test_report_cli_bad_file_is_one_line_naming_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("model_id,epoch,val_acc\nm,0.5,10\nm,1.0,oops\nm,1.5,12\n")
    out = tmp_path / "r"
    assert main(["report", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{bad}:3" in err and "val_acc" in err
    assert not out.exists()  # nothing half-written


def test_report_cli_rejects_bad_options(tmp_path, capsys):
    assert main(["report", str(SAMPLE), "--out", str(tmp_path), "--num-classes", "1"]) == 2
    assert "--num-classes" in capsys.readouterr().err


def test_user_curves_without_losses_or_full_length_still_report(tmp_path):
    """A user's file with only model_id,epoch,val_acc and curves that end before e_max."""
    rows = ["model_id,epoch,val_acc"]
    for model, top in (("fast", 90.0), ("slow", 60.0), ("flat", 10.0), ("mid", 75.0)):
        rows += [f"{model},{e:g},{top - (top - 10.0) * 0.6 ** e:.3f}" for e in (0.5 * i for i in range(1, 17))]
    path = tmp_path / "mine.csv"
    path.write_text("\n".join(rows) + "\n")
    result = build_report(path, tmp_path / "out", num_classes=10)
    saved = result.results
    assert saved["baseline_monitor"] == "val_acc"
    assert "paper-loss" not in saved["policies"]  # the LOSS check needs a val_loss column
    assert saved["n_models"] == 4 and saved["E"] == 0.5
    # every curve ends at epoch 8 < e_max: no policy can have trained longer than the curve
    for entry in saved["policies"].values():
        assert entry["summary"]["n_models"] == 4
    assert all(row["stop_epoch"] <= 8.0 for row in saved["engine_models"])
    assert all(_is_png(p) for p in result.figures.values())
