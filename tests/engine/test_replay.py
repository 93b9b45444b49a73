"""Replay of recorded curves: reading with validation, the real CIFAR-100 sample, population-aware factories."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from peng4nn.analyzer import Decision, Reason, StoppingPolicy
from peng4nn.policies import make_policy
from peng4nn.replay import (
    CurveFileError,
    RecordedCurve,
    ReplayError,
    baseline_monitor,
    infer_epoch_step,
    policy_factory,
    read_curves,
    replay,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "data" / "penguin-cifar100-sample.csv"  # the shipped copy of ../shared/data/

HEADER = "model_id,epoch,val_acc,val_loss,train_loss\n"


def write(tmp_path, text, name="curves.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def rows(model, accs, start=0.5, step=0.5, losses=True):
    out = []
    for i, acc in enumerate(accs):
        loss = f",{2.0 - 0.01 * i:.3f},{2.1 - 0.01 * i:.3f}" if losses else ""
        out.append(f"{model},{start + step * i:g},{acc}{loss}\n")
    return "".join(out)


# ---------------------------------------------------------------- reading


def test_reads_the_sample():
    curves = read_curves(SAMPLE)
    assert [len(c) for c in curves] == [80, 80, 80]
    assert [c.first_line for c in curves] == [2, 82, 162]
    c = curves[0]
    assert c.model_id == "2021_02_15_13_55_26_539263"
    assert c.epochs[0] == 0.5 and c.epochs[-1] == 40.0 and c.val_acc[0] == 9.68
    assert c.val_loss is not None and c.train_loss is not None
    assert infer_epoch_step(curves) == 0.5
    assert baseline_monitor(curves) == "train_loss"


def test_optional_columns_and_extra_columns(tmp_path):
    text = "note,epoch,model_id,val_acc,val_loss\n" + "".join(f"x,{e},m,{10 + e},{2 - e / 10}\n" for e in (1, 2, 3, 4))
    curves = read_curves(write(tmp_path, text))
    assert curves[0].train_loss is None and curves[0].val_loss is not None
    assert infer_epoch_step(curves) == 1.0
    assert baseline_monitor(curves) == "val_loss"
    bare = read_curves(write(tmp_path, "model_id,epoch,val_acc\n" + rows("m", [1, 2, 3], losses=False)))
    assert baseline_monitor(bare) == "val_acc"


@pytest.mark.parametrize(
    "text, line, model, words",
    [
        ("", 1, None, "empty file"),
        (HEADER, 2, None, "no data rows"),
        ("model_id,epoch,val_loss\nm,0.5,2.0\n", 1, None, "missing column(s) val_acc"),
        ("model_id,val_acc\nm,2.0\n", 1, None, "missing column(s) epoch"),
        (HEADER + rows("m", [10, 11]) + "m,1.5,abc,1,1\n", 4, "m", "val_acc is not a number: 'abc'"),
        (HEADER + rows("m", [10, 11]) + "m,1.5,nan,1,1\n", 4, "m", "val_acc must be finite"),
        (HEADER + rows("m", [10, 11]) + "m,1.5,12,inf,1\n", 4, "m", "val_loss must be finite"),
        (HEADER + rows("m", [10, 11]) + "m,1.5,12,1\n", 4, "m", "train_loss is missing"),
        (HEADER + rows("m", [10, 11]) + "m,1.5,12,,1\n", 4, "m", "val_loss is missing"),
        (HEADER + rows("m", [10, 11]) + "m,x,12,1,1\n", 4, "m", "epoch is not a number"),
        (HEADER + rows("m", [10, 11, 12]) + "m,1.5,13,1,1\n", 5, "m", "epoch 1.5 repeats epoch 1.5"),
        (HEADER + rows("m", [10, 11, 12]) + "m,1.0,13,1,1\n", 5, "m", "epoch 1 decreases after epoch 1.5"),
        (HEADER + "m,-1,10,1,1\n" + rows("m", [10, 11], start=0.5), 2, "m", "epoch must be positive"),
        (HEADER + rows("m", [10, 11, 101]), 4, "m", "val_acc must be a percentage"),
        (HEADER + rows("a", [10, 11, 12]) + rows("b", [1, 2, 3]) + rows("a", [13], start=2), 8, "a",
         "rows of one model must be consecutive; this model's earlier rows end at line 4"),
        (HEADER + ",0.5,10,1,1\n", 2, None, "model_id is missing"),
    ],
)
def test_bad_input_names_file_line_and_model(tmp_path, text, line, model, words):
    path = write(tmp_path, text)
    with pytest.raises(CurveFileError) as info:
        read_curves(path)
    err = info.value
    assert (err.line, err.model) == (line, model)
    assert words in err.message
    message = str(err)
    assert message.startswith(f"{path}:{line}:") and "\n" not in message
    if model is not None:
        assert f"model {model!r}" in message


def test_c_min_is_a_parameter(tmp_path):
    path = write(tmp_path, HEADER + rows("m", [10, 11, 12, 13]))
    assert len(read_curves(path, c_min=4)[0]) == 4 and not read_curves(path, c_min=4)[0].file_notes
    short = read_curves(path, c_min=5)  # a run that crashed early is data, not an error: replay ends it
    assert len(short[0]) == 4 and "1 model(s) with fewer than c_min=5 points (first: 'm')" in short[0].file_notes[0]
    (outcome,) = replay(short, policy_factory("paper", estimator={"c_min": 5}))
    assert outcome.reason is Reason.CURVE_ENDED and outcome.estimate == outcome.actual_max == 13


def test_missing_file(tmp_path):
    with pytest.raises(CurveFileError, match="cannot open"):
        read_curves(tmp_path / "absent.csv")


def test_blank_lines_are_skipped(tmp_path):
    curves = read_curves(write(tmp_path, HEADER + rows("m", [10, 11]) + "\n" + rows("m", [12], start=1.5) + "\n\n"))
    assert list(curves[0].val_acc) == [10, 11, 12]


# ---------------------------------------------------------------- the sample, derived independently


def paper_rule_by_hand(epochs, accs, N=3, E=0.5, e_max=20.0, t=0.5):
    """Algorithms 1 and 2 written out with scipy's curve_fit, not through the analyzer."""
    from scipy.optimize import curve_fit

    def f(x, a, b, c):
        return a - b ** (c - x)

    predictions = []
    for i, e in enumerate(epochs):
        if i + 1 >= 3:
            x = np.asarray(epochs[: i + 1]) / epochs[0]
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                try:
                    (a, _, _), _ = curve_fit(f, x, accs[: i + 1], p0=(10, 1.001, 100),
                                             bounds=([0.5, 1, 0], [102.5, np.inf, np.inf]))
                except RuntimeError:  # curve_fit gave up: no prediction at this point
                    a = None
            predictions.append(a)
        else:
            predictions.append(None)
        if e <= N * E:
            continue
        if e >= e_max:
            return e, max(accs[: i + 1]), False
        last = predictions[-N:]
        if None in last or predictions[-1] > 100:
            continue
        mean = sum(last) / N
        if all(abs(p - mean) <= t for p in last):
            return e, predictions[-1], True
    raise AssertionError("the rule must stop by e_max")


def menndl_by_hand(epochs, train_loss, e_max=20.0, patience=10.0):
    best, best_epoch = None, 0.0
    for e, loss in zip(epochs, train_loss):
        if best is None or loss < best:
            best, best_epoch = loss, e
        if e >= e_max or e - best_epoch >= patience:
            return e
    return epochs[-1]


def test_sample_replay_matches_the_rule_worked_by_hand():
    curves = read_curves(SAMPLE)
    outcomes = replay(curves, policy_factory("paper", num_classes=100), e_max=20)
    assert [o.model_id for o in outcomes] == [c.model_id for c in curves]
    for curve, out in zip(curves, outcomes):
        epochs, accs = list(curve.epochs), list(curve.val_acc)
        stop, estimate, converged = paper_rule_by_hand(epochs, accs)
        assert out.stop_epoch == stop and out.converged == converged
        assert out.estimate == pytest.approx(estimate, abs=1e-3)
        assert out.baseline_stop_epoch == menndl_by_hand(epochs, list(curve.train_loss))
        assert out.actual_max == max(a for e, a in zip(epochs, accs) if e <= 20)
        assert len(out.decisions) == int(stop / 0.5) and out.decisions[-1].stop
        assert out.decisions[-1].a == pytest.approx(out.estimate)
    # What the hand derivation gives on this sample (kept visible for the reader):
    assert [o.stop_epoch for o in outcomes] == [4.0, 5.5, 8.5]
    assert [round(o.estimate, 2) for o in outcomes] == [25.71, 2.01, 24.31]
    assert [o.baseline_stop_epoch for o in outcomes] == [20.0, 20.0, 20.0]


def test_batched_fits_decide_exactly_like_single_fits():
    curves = read_curves(SAMPLE)
    cached = replay(curves, policy_factory("paper", num_classes=100, estimator={"t": 0.05}))
    plain = replay(curves, lambda c: make_policy("paper", num_classes=100, estimator={"t": 0.05}))
    for a, b in zip(cached, plain):
        assert (a.stop_epoch, a.reason) == (b.stop_epoch, b.reason)
        assert a.estimate == pytest.approx(b.estimate, abs=1e-9)
        assert [d.prediction for d in a.decisions] == pytest.approx([d.prediction for d in b.decisions], abs=1e-9)


@pytest.mark.parametrize("name, params, stops", [("fixed", {"k": 1}, [1.0] * 3), ("menndl", {}, [20.0] * 3)])
def test_baseline_policies_replay(name, params, stops):
    outcomes = replay(read_curves(SAMPLE), policy_factory(name, **params))
    assert [o.stop_epoch for o in outcomes] == stops
    assert all(not o.converged for o in outcomes)


# ---------------------------------------------------------------- replay semantics


def curve(model_id, accs, step=0.5):
    epochs = step * np.arange(1, len(accs) + 1)
    return RecordedCurve(model_id, epochs, np.asarray(accs, float), None, None, 2)


def test_a_curve_that_ends_first_stops_at_its_last_point():
    short = curve("short", [10.0, 30.0, 20.0, 45.0, 44.0, 43.0])
    [out] = replay([short], policy_factory("paper", estimator={"t": 0.0}))
    assert out.reason is Reason.CURVE_ENDED and not out.converged
    assert out.stop_epoch == 3.0 and out.estimate == 45.0
    assert out.baseline_stop_epoch == 3.0  # MENNDL on val_acc did not stop either
    assert out.to_dict() == {
        "model_id": "short", "stop_epoch": 3.0, "estimate": 45.0, "converged": False,
        "baseline_stop_epoch": 3.0, "actual_max": 45.0, "interval": None,
    }


class RecordingPolicy(StoppingPolicy):
    """A population-aware stand-in: one log shared by every model's policy."""

    name = "recording"

    def __init__(self, log, model_id, stop_after):
        super().__init__(E=0.5, e_max=20)
        self.log, self.model_id, self.stop_after = log, model_id, stop_after

    def _decide(self, epoch):
        self.log.append(("observe", self.model_id, epoch))
        stop = len(self.history.points) >= self.stop_after
        return Decision(epoch, None, None, None, None, False, stop, 1.0 if stop else None,
                        Reason.BUDGET_REACHED if stop else Reason.UNSTABLE)

    def finish(self):
        self.log.append(("finish", self.model_id, self.history.last_epoch))


def test_models_are_replayed_one_after_another_with_finish():
    log = []

    def factory(c):
        log.append(("create", c.model_id, None))
        return RecordingPolicy(log, c.model_id, stop_after=2)

    curves = [curve("a", [10, 11, 12, 13]), curve("b", [10, 11, 12])]
    outcomes = replay(curves, factory)
    assert log == [
        ("create", "a", None), ("observe", "a", 0.5), ("observe", "a", 1.0), ("finish", "a", 1.0),
        ("create", "b", None), ("observe", "b", 0.5), ("observe", "b", 1.0), ("finish", "b", 1.0),
    ]
    assert [o.stop_epoch for o in outcomes] == [1.0, 1.0]
    assert [len(o.decisions) for o in outcomes] == [2, 2]


def test_policy_factory_rejects_bad_configuration_up_front():
    with pytest.raises(ValueError, match="policy"):
        policy_factory("nope")
    with pytest.raises(ValueError, match="patience"):
        policy_factory("patience", patience=-1)


def test_a_point_a_policy_refuses_names_model_line_and_epoch(tmp_path):
    curves = read_curves(write(tmp_path, "model_id,epoch,val_acc\n" + rows("a", [10, 11, 12], losses=False)
                               + "\n" + rows("b", [10, 11, 12], losses=False)))
    with pytest.raises(ReplayError) as info:
        replay(curves, policy_factory("menndl", monitor="val_loss"))
    err = info.value
    assert (err.model, err.line, err.epoch) == ("a", 2, 0.5)
    assert "val_loss is required" in err.message
    assert curves[1].line_of(0) == 6  # blank line skipped, line numbers kept


def test_the_paper_policy_with_curve_fit_reproduces_the_authors_published_run():
    """TauferLab/PENGUIN's TestRun.md on the shipped sample: stops at 4.0, 3.0 and 8.5 epochs, and the
    never-learner's estimate a = 2.0336. It needs curve_fit to be allowed to finish (SCIPY_MAX_EVALUATIONS):
    with SciPy's default budget it gives up on 4 of the never-learner's first 8 prefixes and stops at 5.5."""
    curves = read_curves(SAMPLE)
    outcomes = replay(curves, policy_factory("paper", estimator={"E": 0.5}, num_classes=100, backend="scipy"))
    assert [o.stop_epoch for o in outcomes] == [4.0, 3.0, 8.5]
    assert all(o.converged for o in outcomes)
    assert outcomes[1].estimate == pytest.approx(2.0336, abs=5e-5)
