"""`peng4nn replay`: the JSON shape, the table, and one-line errors with exit code 2 for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from peng4nn.cli import main
from peng4nn.metrics import summarize
from peng4nn.replay import FRACTION_NOTE, policy_factory, read_curves, replay

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "data" / "penguin-cifar100-sample.csv"  # the shipped copy of ../shared/data/

MODEL_KEYS = {"model_id", "stop_epoch", "estimate", "converged", "baseline_stop_epoch", "actual_max", "interval"}
SUMMARY_KEYS = {"n_models", "epochs_saved_mean", "throughput_gain", "overlap", "mean_acc_diff", "regret_at_1",
                "mean_epochs", "mae", "mae_top", "coverage", "coverage_n"}


def run_cli(capsys, *argv):
    code = main(["replay", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def curves_file(tmp_path, header="model_id,epoch,val_acc", step=1.0, models=("a", "b", "c"), name="curves.csv"):
    lines = [header]
    columns = header.split(",")
    for m, model in enumerate(models):
        for i in range(12):
            acc = 20 + 10 * m + 30 * (1 - 0.7 ** (i + 1))
            values = {"model_id": model, "epoch": f"{step * (i + 1):g}", "val_acc": f"{acc:.3f}",
                      "val_loss": f"{2 - 0.1 * i:.2f}", "train_loss": f"{2.2 - 0.1 * i:.2f}"}
            lines.append(",".join(values[c] for c in columns))
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_json_is_one_object_of_the_issues_shape(capsys):
    code, out, err = run_cli(capsys, SAMPLE, "--num-classes", 100, "--policy", "paper", "--json")
    assert code == 0
    doc = json.loads(out)  # exactly one JSON document on stdout
    assert set(doc) == {"summary", "models"}
    assert set(doc["summary"]) == SUMMARY_KEYS
    assert set(doc["summary"]["overlap"]) == set(doc["summary"]["mean_acc_diff"]) == {"10", "20", "30"}
    assert all(set(m) == MODEL_KEYS for m in doc["models"])
    assert "train_loss" in err  # which signal the baseline watched
    # The same numbers as the library gives.
    outcomes = replay(read_curves(SAMPLE), policy_factory("paper", estimator={"E": 0.5}, num_classes=100))
    assert doc["models"] == [o.to_dict() for o in outcomes]
    assert doc["summary"] == summarize(outcomes)
    assert isinstance(doc["summary"]["n_models"], int) and 0 <= doc["summary"]["epochs_saved_mean"] <= 1


def test_accuracy_given_as_fractions_is_scaled_to_percent_and_said(tmp_path, capsys):
    percent = curves_file(tmp_path)
    lines = percent.read_text().splitlines()
    fractions = tmp_path / "fractions.csv"
    fractions.write_text("\n".join([lines[0]] + [f"{m},{e},{float(a) / 100:.5f}" for m, e, a in
                                                (row.split(",") for row in lines[1:])]) + "\n")
    _, want, _ = run_cli(capsys, percent, "--json")
    code, got, err = run_cli(capsys, fractions, "--json")
    assert code == 0 and "val_acc holds fractions" in err and str(fractions) in err
    assert json.loads(got)["summary"] == json.loads(want)["summary"]
    assert all(c.file_notes == (FRACTION_NOTE,) for c in read_curves(fractions))
    assert not any(c.file_notes for c in read_curves(percent))


def test_rows_at_epoch_0_are_an_evaluation_before_training_and_are_skipped_and_said(tmp_path, capsys):
    plain = curves_file(tmp_path)
    lines = plain.read_text().splitlines()
    with_zero = tmp_path / "with-zero.csv"
    body = []
    for model in ("a", "b", "c"):
        body.append(f"{model},0,10.0")
        body += [row for row in lines[1:] if row.startswith(f"{model},")]
    with_zero.write_text("\n".join([lines[0], *body]) + "\n")
    _, want, _ = run_cli(capsys, plain, "--json")
    code, got, err = run_cli(capsys, with_zero, "--json")
    assert code == 0 and "3 row(s) at epoch 0 dropped" in err
    assert json.loads(got) == json.loads(want)
    code, _, err = run_cli(capsys, curves_file(tmp_path, step=-1.0, name="negative.csv"))
    assert code == 2 and "epoch must be positive" in err


def test_the_default_policy_is_adaptive_because_a_file_is_one_search(tmp_path, capsys):
    path = curves_file(tmp_path)
    _, default, _ = run_cli(capsys, path, "--json")
    _, named, _ = run_cli(capsys, path, "--json", "--policy", "adaptive")
    assert json.loads(default) == json.loads(named)
    _, table, _ = run_cli(capsys, path)
    assert "policy: adaptive;" in table


def test_json_models_carry_the_stopping_interval(capsys):
    code, out, _ = run_cli(capsys, SAMPLE, "--num-classes", 100, "--policy", "adaptive", "--json")
    assert code == 0
    models = json.loads(out)["models"]
    assert models and all(m["interval"] is not None for m in models)
    for m in models:
        lo, hi = m["interval"]
        assert lo <= m["estimate"] <= hi
    outcomes = replay(read_curves(SAMPLE), policy_factory("adaptive", estimator={"E": 0.5}, num_classes=100))
    assert [m["interval"] for m in models] == [list(o.interval) for o in outcomes]


def test_table_names_models_baseline_and_inferred_E(capsys):
    code, out, _ = run_cli(capsys, SAMPLE, "--num-classes", 100, "--policy", "paper")
    assert code == 0
    assert "2021_02_15_13_55_26_539263" in out and "converged" in out
    assert "baseline: MENNDL rule on train_loss" in out
    assert "E=0.5 (inferred from the epoch spacing)" in out
    assert "throughput gain" in out and "regret@1" in out


def test_e_is_inferred_or_given(tmp_path, capsys):
    path = curves_file(tmp_path, step=1.0)
    _, out, _ = run_cli(capsys, path)
    assert "E=1 (inferred" in out
    _, out, _ = run_cli(capsys, path, "--E", 0.5)
    assert "E=0.5," in out and "inferred" not in out


@pytest.mark.parametrize(
    "header, monitor",
    [("model_id,epoch,val_acc,val_loss", "val_loss"), ("model_id,epoch,val_acc", "val_acc"),
     ("model_id,epoch,val_acc,train_loss,val_loss", "train_loss")],
)
def test_the_output_says_which_signal_the_baseline_watched(tmp_path, capsys, header, monitor):
    _, out, _ = run_cli(capsys, curves_file(tmp_path, header=header))
    assert f"baseline: MENNDL rule on {monitor}" in out


def test_baseline_policies_by_name(tmp_path, capsys):
    path = curves_file(tmp_path, step=0.5)
    code, out, _ = run_cli(capsys, path, "--policy", "fixed", "--k", 1, "--json")
    assert code == 0
    assert [m["stop_epoch"] for m in json.loads(out)["models"]] == [1.0, 1.0, 1.0]
    code, out, _ = run_cli(capsys, path, "--policy", "patience", "--patience", 1, "--json")
    assert code == 0 and len(json.loads(out)["models"]) == 3


def test_scipy_backend_gives_the_same_decisions_on_the_sample_learners(capsys):
    """The never-learner (model 1) is where the two differ: at its 6th point curve_fit stops in a local optimum
    (SSE 0.01301, a = 2.0336, which the authors' run converged on), the fast back-end finds the lower one
    (SSE 0.01251, a = 1.054), and Algorithm 2 then converges 2.5 epochs later."""
    _, fast, _ = run_cli(capsys, SAMPLE, "--json", "--num-classes", 100, "--policy", "paper")
    _, ref, _ = run_cli(capsys, SAMPLE, "--json", "--num-classes", 100, "--policy", "paper", "--backend", "scipy")
    fast, ref = json.loads(fast)["models"], json.loads(ref)["models"]
    learners = [0, 2]
    assert [fast[i]["stop_epoch"] for i in learners] == [ref[i]["stop_epoch"] for i in learners]
    assert [fast[i]["estimate"] for i in learners] == pytest.approx([ref[i]["estimate"] for i in learners], abs=1e-3)
    assert (fast[1]["stop_epoch"], ref[1]["stop_epoch"]) == (5.5, 3.0)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--policy", "paper", "--N", "0"], "invalid estimator setting N"),
        (["--policy", "nope"], "'policy' parameter must be one of"),
        (["--policy", "paper", "--k", "2"], "policy 'paper' takes its parameters from the estimator settings"),
        (["--policy", "patience", "--patience", "-1"], "'patience' parameter"),
        (["--num-classes", "1"], "--num-classes must be at least 2"),
        (["--e-max", "0.1", "--E", "0.5"], "e_max must be at least E"),
        (["--policy", "paper", "--loss-check"], "--loss-check needs a val_loss column"),
        (["--t", "0.3"], "--t applies only to the paper's rule; add --policy paper (the policy is 'adaptive' by default)"),
        (["--policy", "fixed", "--N", "2", "--window", "median"], "--N, --window apply only to the paper's rule"),
        (["--policy", "menndl", "--monitor", "train_loss"], "--monitor train_loss needs a train_loss column"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path, capsys, argv, words):
    code, out, err = run_cli(capsys, curves_file(tmp_path), *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and words in err and "Traceback" not in err


def test_an_invalid_choice_is_argparse_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["replay", str(curves_file(tmp_path)), "--window", "mode"])
    assert info.value.code == 2
    assert "invalid choice: 'mode'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, where",
    [
        ("", ":1: empty file"),
        ("model_id,epoch\nm,1\n", ":1: missing column(s) val_acc"),
        ("model_id,epoch,val_acc\nm,0.5,10\nm,1.0,oops\nm,1.5,12\n", ":3: model 'm': val_acc is not a number"),
        ("model_id,epoch,val_acc\nm,0.5,10\nm,1.0,NaN\nm,1.5,12\n", ":3: model 'm': val_acc must be finite"),
        ("model_id,epoch,val_acc\nm,0.5,10\nm,0.5,11\nm,1.5,12\n", ":3: model 'm': epoch 0.5 repeats"),
        ("model_id,epoch,val_acc\nm,0.5,10\nm,1.5,11\nm,1.0,12\n", ":4: model 'm': epoch 1 decreases"),
        # An optional column empty in some rows only is a hole in the data, not an absent column.
        ("model_id,epoch,val_acc,val_loss\nm,1,10,2.0\nm,2,11,\nm,3,12,1.8\n", ":3: model 'm': val_loss is missing"),
        ("model_id,epoch,val_acc,lr\nm,1,10,0.1\nm,2,11,-0.1\nm,3,12,0.1\n", ":3: model 'm': lr must not be negative"),
        ("model_id,epoch,val_acc,lr\nm,1,10,0.1\nm,2,11,nan\nm,3,12,0.1\n", ":3: model 'm': lr must be finite"),
    ],
)
def test_bad_files_exit_2_naming_file_line_and_model(tmp_path, capsys, text, where):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    code, out, err = run_cli(capsys, path, "--json")
    assert code == 2 and out == ""
    assert err == f"peng4nn replay: error: {path}{where}" + err.split(where, 1)[1]
    assert err.count("\n") == 1 and "Traceback" not in err


def test_console_command_end_to_end(tmp_path):
    """The installed entry point, in a real process: success prints JSON, bad input one line and exit 2."""
    good = curves_file(tmp_path)
    installed = Path(sys.executable).parent / "peng4nn"
    command = [str(installed)] if installed.exists() else [sys.executable, "-c", "import sys; from peng4nn.cli import main; sys.exit(main())"]
    done = subprocess.run([*command, "replay", str(good), "--json"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["summary"]["n_models"] == 3
    bad = tmp_path / "bad.csv"
    bad.write_text("model_id,epoch,val_acc\nm,0.5,10\nm,1.0,x\n")
    done = subprocess.run([*command, "replay", str(bad)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == f"peng4nn replay: error: {bad}:3: model 'm': val_acc is not a number: 'x'"


def test_columns_empty_in_every_row_are_absent_and_said(tmp_path, capsys):
    """Real logs often carry val_loss,train_loss columns the source never filled."""
    plain = curves_file(tmp_path)
    lines = plain.read_text().splitlines()
    empty = tmp_path / "empty-columns.csv"
    empty.write_text("\n".join(["model_id,epoch,val_acc,val_loss,train_loss", *(f"{r},," for r in lines[1:])]) + "\n")
    _, want, _ = run_cli(capsys, plain, "--json")
    code, got, err = run_cli(capsys, empty, "--json")
    assert code == 0, err
    assert "column val_loss is empty in every row: read as absent" in err and "column train_loss" in err
    assert json.loads(got) == json.loads(want)


def test_epoch_zero_is_dropped_at_chance_shifted_above_it_and_either_can_be_forced(tmp_path, capsys):
    plain = curves_file(tmp_path)
    lines = plain.read_text().splitlines()

    def with_epoch_zero(name, accs):
        body = []
        for model, acc in zip(("a", "b", "c"), accs):
            body.append(f"{model},0,{acc}")
            body += [row for row in lines[1:] if row.startswith(f"{model},")]
        path = tmp_path / name
        path.write_text("\n".join([lines[0], *body]) + "\n")
        return path

    at_chance = with_epoch_zero("init.csv", [10.1, 9.8, 10.4])
    code, _, err = run_cli(capsys, at_chance, "--json")
    assert code == 0 and "3 row(s) at epoch 0 dropped" in err and "sit together at chance" in err
    learned = with_epoch_zero("zero-based.csv", [25.0, 31.0, 44.0])  # the first epoch already learned
    code, out, err = run_cli(capsys, learned, "--json")
    assert code == 0 and "shifted up by 1" in err
    assert json.loads(out)["models"][0]["actual_max"] == pytest.approx(max(float(r.split(",")[2]) for r in lines[1:13]))
    code, _, err = run_cli(capsys, learned, "--epoch-zero", "drop", "--json")
    assert code == 0 and "dropped" in err and "sit together" not in err
    code, _, err = run_cli(capsys, at_chance, "--epoch-zero", "shift", "--json")
    assert code == 0 and "shifted up by 1" in err


def test_the_lr_column_is_the_networks_schedule(tmp_path):
    path = tmp_path / "lr.csv"
    rows = ["model_id,epoch,val_acc,lr"] + [f"m,{e},{50 + e},{0.1 if e <= 5 else 0.01}" for e in range(1, 11)]
    path.write_text("\n".join(rows) + "\n")
    [curve] = read_curves(path)
    assert list(curve.lr[:6]) == [0.1] * 5 + [0.01]
    assert curve.point(5)[4] == 0.01
    assert curve.schedule.rate_at(10) == 0.01  # known in advance, as a NAS knows the schedule it set


@pytest.mark.parametrize("argv, words", [
    (["--lr-schedule", "step:5,30"], "--lr-schedule: milestones[1] = 30.0 is not before e_max (20)"),
    (["--lr-schedule", "wavy"], "--lr-schedule: kind"),
    (["--models", "missing.csv"], "cannot open"),
])
def test_bad_search_knowledge_exits_2_with_one_line(tmp_path, capsys, argv, words):
    code, out, err = run_cli(capsys, curves_file(tmp_path), *argv)
    assert code == 2 and out == "" and words in err and err.count("\n") == 1


def test_a_schedule_flag_on_a_file_with_an_lr_column_is_refused(tmp_path, capsys):
    path = tmp_path / "lr.csv"
    path.write_text("model_id,epoch,val_acc,lr\n" + "".join(f"m,{e},{50 + e},0.1\n" for e in range(1, 6)))
    code, _, err = run_cli(capsys, path, "--lr-schedule", "step:3")
    assert code == 2 and "for files without an lr column" in err


def test_a_models_side_file_gives_metadata_and_names_its_bad_rows(tmp_path, capsys):
    curves = curves_file(tmp_path)
    side = tmp_path / "models.csv"
    side.write_text("model_id,num_params,depth,initial_lr\na,1000,3,0.01\nb,2000,4,0.02\n")
    code, _, err = run_cli(capsys, curves, "--models", side, "--json")
    assert code == 0 and "1 model(s) of" in err and "'c'" in err  # c has no row: estimated without metadata
    side.write_text("model_id,num_params,depth\na,1000,3\nb,-5,4\n")
    code, _, err = run_cli(capsys, curves, "--models", side)
    assert code == 2 and f"{side}:3: model 'b': num_params" in err
    side.write_text("model_id,size\na,3\n")
    code, _, err = run_cli(capsys, curves, "--models", side)
    assert code == 2 and "no known column" in err


def test_curves_longer_than_e_max_are_said_to_be_cut(capsys):
    code, _, err = run_cli(capsys, SAMPLE, "--num-classes", 100, "--policy", "paper", "--json")
    assert code == 0 and "curves run to epoch 40; replayed up to e_max=20 (--e-max 40" in err
