"""PEng4NNStopper in real Ray Tune experiments on a local Ray instance (2 CPUs), fed real recorded SVHN curves.

Ray 2.x has no local mode any more (``ray.init(local_mode=True)`` raises); one local instance is started
for the module and shut down after it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import pickle
import re
import tempfile
from collections import defaultdict
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no token file written to the home directory
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
import ray  # noqa: E402  (after the environment above)
from ray import tune  # noqa: E402

from peng4nn.integrations.ray import PEng4NNStopper  # noqa: E402
from peng4nn.policies import make_policy  # noqa: E402
from peng4nn.replay import policy_factory, read_curves, replay  # noqa: E402
from peng4nn.schedule import LRSchedule  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SVHN_CSV = ROOT / "tests" / "data" / "metaqnn-svhn-120.csv"
SVHN = {"E": 1.0, "e_max": 20.0}
SVHN_SCHEDULE = LRSchedule(kind="step", milestones=(5.0, 10.0, 15.0), gamma=0.2)
pytestmark = pytest.mark.timeout(180)


def svhn_curves(n: int) -> list[list[tuple[float, float]]]:
    curves: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with SVHN_CSV.open() as f:
        for row in csv.DictReader(f):
            curves[row["model_id"]].append((float(row["val_acc"]), float(row["lr"])))
    return list(curves.values())[:n]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def replay_curve(config):
    """A trainable that 'trains' network config['model']: one recorded point per iteration, with its rate."""
    for acc, lr in config["curves"][config["model"]]:
        tune.report({"val_acc": acc, "lr": lr})


def run(stopper, trainable, models, tmp_path, concurrent=1, **config):
    tuner = tune.Tuner(
        trainable,
        param_space={"model": tune.grid_search(list(models)), **config},
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrent, reuse_actors=True),  # no process per trial
        run_config=tune.RunConfig(stop=stopper, storage_path=str(tmp_path), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=1)),
    )
    return tuner.fit()


def test_an_experiment_is_one_search_and_decides_as_replay_does(local_ray, tmp_path):
    n = 14
    curves = svhn_curves(n)
    # The search's schedule, known in advance as replay knows it from the lr column.
    stopper = PEng4NNStopper(estimator=SVHN, num_classes=10, warmup_models=4, schedule=SVHN_SCHEDULE)
    results = run(stopper, replay_curve, range(n), tmp_path, curves=curves)

    recorded = read_curves(SVHN_CSV)[:n]
    outcomes = replay(recorded, policy_factory("adaptive", estimator=SVHN, num_classes=10, warmup_models=4), e_max=20)
    by_model = {r.config["model"]: r for r in results}
    assert [by_model[i].metrics["training_iteration"] for i in range(n)] == [o.stop_epoch for o in outcomes]
    assert any(o.stop_epoch < 20 for o in outcomes)  # some were stopped early
    for i, outcome in enumerate(outcomes):
        metrics = by_model[i].metrics
        assert metrics["peng4nn_estimate"] == pytest.approx(outcome.estimate, abs=1e-9)
        assert metrics["peng4nn_lo"] <= metrics["peng4nn_estimate"] <= metrics["peng4nn_hi"]
        estimate = stopper.estimate_of(by_model[i].metrics["trial_id"])
        assert estimate.final and estimate.value == pytest.approx(outcome.estimate, abs=1e-9)
    assert stopper.search.n_finished == n and stopper.n_running == 0
    best = max(range(n), key=lambda i: (outcomes[i].estimate, -i))
    assert stopper.best_trial_id() == by_model[best].metrics["trial_id"]
    pickle.dumps(stopper)  # Tune may save it with the experiment


def crash_once(config):
    """Checkpoints every 2 iterations and dies once after reporting iteration 5, so 5 is reported twice."""
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            start = json.loads(Path(d, "state.json").read_text())["iteration"]
    for i in range(start, len(config["curve"])):
        acc, lr = config["curve"][i]
        if i % 2 == 1:
            with tempfile.TemporaryDirectory() as d:
                Path(d, "state.json").write_text(json.dumps({"iteration": i + 1}))
                tune.report({"val_acc": acc, "lr": lr}, checkpoint=tune.Checkpoint.from_directory(d))
        else:
            tune.report({"val_acc": acc, "lr": lr})
        marker = Path(config["marker"])
        if i == 4 and not marker.exists():
            marker.write_text("crashed")
            raise RuntimeError("the node went away")


def test_a_trial_restored_from_a_checkpoint_goes_on_with_its_curve(local_ray, tmp_path):
    curve = svhn_curves(8)[7]
    seen = []

    class Spy(PEng4NNStopper):
        def __call__(self, trial_id, result):
            seen.append(result["training_iteration"])
            return super().__call__(trial_id, result)

    stopper = Spy(policy="paper", estimator=SVHN, num_classes=10)
    [result] = run(stopper, crash_once, [0], tmp_path, curve=curve, marker=str(tmp_path / "marker"))
    assert (tmp_path / "marker").exists()
    assert seen.count(5) == 2  # iteration 5 came twice: before the crash and after the restore
    [(trial_id, estimate)] = stopper.ranked()
    policy = make_policy("paper", estimator=SVHN, num_classes=10)
    decisions = [policy.observe(float(i + 1), acc, lr=lr) for i, (acc, lr) in enumerate(curve)]
    first_stop = next(d for d in decisions if d.stop)
    assert result.metrics["training_iteration"] == first_stop.epoch
    assert estimate.value == first_stop.estimate and estimate.reason == first_stop.reason.value


def nan_at_three(config):
    for i, (acc, lr) in enumerate(config["curves"][config["model"]]):
        tune.report({"val_acc": math.nan if config["model"] == 1 and i == 2 else acc, "lr": lr})


def test_a_nan_metric_stops_the_trial_as_diverged(local_ray, tmp_path):
    curves = svhn_curves(3)
    stopper = PEng4NNStopper(estimator=SVHN, num_classes=10)
    results = run(stopper, nan_at_three, range(3), tmp_path, concurrent=2, curves=curves)
    by_model = {r.config["model"]: r for r in results}
    assert by_model[1].metrics["training_iteration"] == 3
    estimate = stopper.estimate_of(by_model[1].metrics["trial_id"])
    assert estimate.value is None and estimate.reason == "diverged"
    assert stopper.ranked()[-1][0] == by_model[1].metrics["trial_id"]
    assert stopper.search.n_finished == 2  # the diverged trial teaches the search nothing
    assert all(by_model[i].metrics["training_iteration"] == 20 for i in (0, 2))  # still in the warm-up


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="value_scale must be a positive number but got 0"):
        PEng4NNStopper(value_scale=0)
    with pytest.raises(ValueError, match="The 'policy' parameter must be one of"):
        PEng4NNStopper(policy="nope")
    stopper = PEng4NNStopper("val_acc", estimator=SVHN)
    with pytest.raises(KeyError, match="trial t1, epoch 1: .*monitors 'val_acc', which was not logged; "
                                       r"logged metrics: \['acc', 'training_iteration'\]"):
        stopper("t1", {"acc": 50.0, "training_iteration": 1})
    with pytest.raises(ValueError, match=r"trial t2, epoch 1: val_acc at epoch 1 .*= 150.0: val_acc must be"):
        stopper("t2", {"val_acc": 150.0, "training_iteration": 1})


def test_the_shipped_example_ranks_an_experiment(local_ray, tmp_path, monkeypatch, capsys):
    """examples/ray_tune_digits.py as docs/OBSERVE.md runs it (on this module's Ray instance)."""
    import runpy
    import sys

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["ray_tune_digits.py", "--trials", "4"])
    runpy.run_path(str(ROOT / "examples" / "ray_tune_digits.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert re.search(r"^best: trial \w+; \d+ epochs trained of 48", out, re.M), out
    assert len(re.findall(r" (max_epochs|out_of_contention|converged)$", out, re.M)) == 4
    assert ray.is_initialized()  # the example leaves a Ray it did not start running
