"""The experiment runner end to end on tiny real networks trained on sklearn's digits."""

from __future__ import annotations

import json

import pytest

from peng4nn.cli import main
from peng4nn.experiment import ExperimentConfig, ExperimentError, completed_models, run_experiment
from peng4nn.replay import read_curves
from peng4nn.report import build_report

#: One small conv layer, few filters: each model trains 1.5 epochs of digits in well under a second.
TINY = {"conv_layers": [1, 1], "filters": [2, 4], "fc_units": [8, 16], "lr": [0.01, 0.1], "batch_sizes": [64]}


def _config(models: int, **kw) -> ExperimentConfig:
    return ExperimentConfig(dataset="digits", models=models, e_max=1.5, E=0.5, seed=7, ranges=TINY, **kw)


def _rows(path):
    return path.read_text().splitlines()


def _assert_same_curves(first, second):
    """Same models, epochs and accuracies; losses equal up to float summation order."""
    a, b = read_curves(first), read_curves(second)
    assert sorted(c.model_id for c in a) == sorted(c.model_id for c in b)
    other = {c.model_id: c for c in b}
    for curve in a:
        twin = other[curve.model_id]
        assert list(curve.epochs) == list(twin.epochs)
        assert list(curve.val_acc) == list(twin.val_acc)
        assert curve.val_loss == pytest.approx(twin.val_loss, rel=1e-5)
        assert curve.train_loss == pytest.approx(twin.train_loss, rel=1e-5)


def test_runner_records_full_curves_resumes_and_reports(tmp_path):
    out = tmp_path / "run"
    first = run_experiment(_config(3), out, progress=False)
    assert (first.trained, first.skipped, first.failed) == (3, 0, 0)
    rows = _rows(out / "curves.csv")
    assert rows[0] == "model_id,epoch,val_acc,val_loss,train_loss,lr"
    assert len(rows) == 1 + 3 * 3
    curves = read_curves(out / "curves.csv")
    assert [c.model_id for c in curves] == ["s7-m00000", "s7-m00001", "s7-m00002"]
    assert all(list(c.epochs) == [0.5, 1.0, 1.5] for c in curves)
    assert all(c.train_loss is not None and c.val_loss is not None for c in curves)
    meta = [json.loads(line) for line in _rows(out / "models.jsonl")]
    assert [m["model_id"] for m in meta] == ["s7-m00000", "s7-m00001", "s7-m00002"]
    assert all(m["spec"]["schema"] == "peng4nn.arch/v1" and m["params"] > 0 for m in meta)

    # resume with more models: the first three are not trained again, their rows are untouched
    second = run_experiment(_config(5), out, progress=False)
    assert (second.trained, second.skipped) == (2, 3)
    after = _rows(out / "curves.csv")
    assert after[:len(rows)] == rows and len(after) == 1 + 5 * 3
    again = run_experiment(_config(5), out, progress=False)
    assert (again.trained, again.skipped) == (0, 5)
    state = json.loads((out / "run.json").read_text())
    assert [s["trained"] for s in state["sessions"]] == [3, 2, 0]
    assert all(s["wall_s"] >= 0 for s in state["sessions"])

    result = build_report(out / "curves.csv", out, num_classes=10, e_max=1.5)
    assert result.results["n_models"] == 5
    assert result.results["training"]["models_recorded"] == 5
    for path in [result.report_path, result.results_path, *result.figures.values()]:
        assert path.stat().st_size > 0
    assert "Training: 5 full curves recorded" in result.report_path.read_text()


def test_same_models_whatever_the_order_or_split_of_sessions(tmp_path):
    one = tmp_path / "one"
    run_experiment(_config(2), one, progress=False)
    two = tmp_path / "two"
    run_experiment(_config(1), two, progress=False)
    run_experiment(_config(2), two, progress=False)
    specs_one = [json.loads(line)["spec"] for line in _rows(one / "models.jsonl")]
    specs_two = [json.loads(line)["spec"] for line in _rows(two / "models.jsonl")]
    assert specs_one == specs_two
    _assert_same_curves(one / "curves.csv", two / "curves.csv")


def test_torn_last_block_is_cut_and_that_model_trained_again(tmp_path):
    out = tmp_path / "run"
    run_experiment(_config(2), out, progress=False)
    curves = out / "curves.csv"
    complete = curves.read_text()
    second_block = complete.splitlines(keepends=True)[4:]
    curves.write_text(complete.replace("".join(second_block), "") + "".join(second_block[:2]) + "s7-m00001,1.5,5")
    assert completed_models(out, 3) == {"s7-m00000"}
    assert _rows(curves) == complete.splitlines()[:4]  # the torn block is gone, the file replays
    summary = run_experiment(_config(2), out, progress=False)
    assert (summary.trained, summary.skipped) == (1, 1)
    reference = tmp_path / "complete.csv"
    reference.write_text(complete)
    _assert_same_curves(curves, reference)


def test_parallel_workers_record_the_same_curves(tmp_path):
    serial = tmp_path / "serial"
    run_experiment(_config(2), serial, progress=False)
    parallel = tmp_path / "parallel"
    summary = run_experiment(_config(2), parallel, workers=2, progress=False)
    assert summary.trained == 2
    _assert_same_curves(serial / "curves.csv", parallel / "curves.csv")  # completion order may differ


def test_a_directory_of_another_experiment_is_refused(tmp_path):
    run_experiment(_config(1), tmp_path, progress=False)
    with pytest.raises(ExperimentError, match=r"settings differ in \['seed'\]"):
        run_experiment(ExperimentConfig(dataset="digits", models=1, e_max=1.5, E=0.5, seed=8, ranges=TINY),
                       tmp_path, progress=False)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"models": 0}, "models must be at least 1"),
        ({"e_max": 1.25}, "whole number of iterations"),
        ({"ranges": {"filters": [9, 2]}}, "'filters' range must have lo <= hi"),
        ({"ranges": {"wings": [1, 2]}}, "unknown range"),
        ({"preset": "gpu"}, "preset must be one of"),
    ],
)
def test_bad_settings_name_the_parameter(kw, message):
    settings = {"dataset": "digits", "models": 1, "e_max": 1.5, "E": 0.5, **kw}
    with pytest.raises(ExperimentError, match=message):
        ExperimentConfig(**settings)


def test_cli_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main(["experiment", "--dataset", "digits", "--models", "1", "--ranges", "{oops", "--out", str(tmp_path)]) == 2
    assert "--ranges is not valid JSON" in capsys.readouterr().err
    assert main(["experiment", "--dataset", "nope", "--models", "1", "--out", str(tmp_path)]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err


def test_cli_trains_and_reports(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["experiment", "--dataset", "digits", "--models", "2", "--e-max", "1.5", "--seed", "7",
                 "--ranges", json.dumps(TINY), "--no-progress", "--out", str(out)])
    assert code == 0
    assert len(read_curves(out / "curves.csv")) == 2
    assert (out / "report.md").exists() and (out / "fig5_epochs_saved.png").stat().st_size > 0
    assert "trained 2 models" in capsys.readouterr().err
