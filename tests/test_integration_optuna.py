"""PEng4NNPruner on real Optuna studies fed the recorded CIFAR-100 curves (real networks, half-epoch points)."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from peng4nn.integrations import ESTIMATE_ATTR, REASON_ATTR  # noqa: E402
from peng4nn.integrations.optuna import PEng4NNPruner, estimate_of  # noqa: E402
from peng4nn.policies import make_policy  # noqa: E402

CURVES_CSV = Path(__file__).resolve().parents[1] / "examples" / "data" / "penguin-cifar100-sample.csv"
"""Three real CIFAR-100 curves (half-epoch points, both losses), shipped with the examples."""

optuna.logging.set_verbosity(optuna.logging.WARNING)


def recorded_curves() -> list[list[tuple[float, float]]]:
    if not CURVES_CSV.is_file():
        pytest.skip(f"recorded curves not found at {CURVES_CSV}")
    curves: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with CURVES_CSV.open() as f:
        for row in csv.DictReader(f):
            curves[row["model_id"]].append((float(row["epoch"]), float(row["val_acc"])))
    return list(curves.values())


def first_stop(points, **policy_kwargs):
    """The library's answer on the same points: (index of the first stop, its decision) or (None, None)."""
    policy = make_policy("paper", **policy_kwargs)
    for i, (epoch, acc) in enumerate(points):
        decision = policy.observe(epoch, acc)
        if decision.stop:
            return i, decision
    return None, None


def run_study(pruner, curves, scale=1.0, n_jobs=1, score_pruned=False):
    """One trial per curve; each reports its points as intermediate values until pruned.

    ``score_pruned``: instead of raising TrialPruned, complete the trial with its estimate.
    """
    reported: dict[int, int] = {}

    def objective(trial):
        points = curves[trial.suggest_int("model", 0, len(curves) - 1)]
        for step, (_, acc) in enumerate(points):
            trial.report(acc / scale, step)
            reported[trial.number] = step + 1
            if trial.should_prune():
                if score_pruned:
                    return estimate_of(trial)
                raise optuna.TrialPruned()
        return points[-1][1]

    study = optuna.create_study(direction="maximize", pruner=pruner)
    for i in range(len(curves)):
        study.enqueue_trial({"model": i})
    study.optimize(objective, n_trials=len(curves), n_jobs=n_jobs)
    return study, reported


def test_pruner_prunes_where_the_library_converges_and_records_its_estimate():
    curves = recorded_curves()
    study, reported = run_study(PEng4NNPruner(num_classes=100), curves)
    pruned = 0
    for trial in study.trials:
        points = curves[trial.params["model"]]
        index, decision = first_stop(points, num_classes=100)
        if decision is not None and decision.converged:
            pruned += 1
            assert trial.state == optuna.trial.TrialState.PRUNED
            assert reported[trial.number] == index + 1  # pruned at exactly that point, not later
            assert estimate_of(trial) == decision.estimate
            assert trial.user_attrs[REASON_ATTR] == "converged"
        else:
            assert trial.state == optuna.trial.TrialState.COMPLETE
            assert reported[trial.number] == len(points)
    assert pruned >= 1, "the recorded curves should converge before 40 epochs"


def test_the_objective_can_score_a_pruned_trial_by_its_estimate():
    curves = recorded_curves()
    study, reported = run_study(PEng4NNPruner(num_classes=100), curves, score_pruned=True)
    for trial in study.trials:
        points = curves[trial.params["model"]]
        index, decision = first_stop(points, num_classes=100)
        assert trial.state == optuna.trial.TrialState.COMPLETE
        if decision is not None and decision.converged:
            assert trial.value == decision.estimate  # read inside the objective, from a live Trial
        else:
            assert trial.value == points[-1][1]


def test_value_scale_and_epochs_per_step_map_fractions_and_steps():
    curves = recorded_curves()[:1]
    # Report accuracies in [0, 1] and one step per epoch: keep every second point (whole epochs).
    whole = [p for p in curves[0] if p[0] == int(p[0])]
    study, reported = run_study(PEng4NNPruner(num_classes=100, value_scale=100, epochs_per_step=1.0), [whole],
                                scale=100)
    index, decision = first_stop(whole, num_classes=100)
    [trial] = study.trials
    assert decision is not None
    assert trial.user_attrs[ESTIMATE_ATTR] == pytest.approx(decision.estimate, abs=1e-9)
    assert reported[trial.number] == index + 1


def test_threads_keep_each_trial_on_its_own_curve():
    curves = recorded_curves()
    study, _ = run_study(PEng4NNPruner(num_classes=100), curves, n_jobs=3)
    for trial in study.trials:
        _, decision = first_stop(curves[trial.params["model"]], num_classes=100)
        assert estimate_of(trial) == (decision.estimate if decision is not None else None)


def test_estimator_settings_reach_the_engine():
    curves = recorded_curves()
    strict = {"N": 6, "t": 0.05}
    study, reported = run_study(PEng4NNPruner(strict, num_classes=100), curves)
    for trial in study.trials:
        index, decision = first_stop(curves[trial.params["model"]], num_classes=100, estimator=strict)
        expected = index + 1 if decision is not None and decision.converged else len(curves[trial.params["model"]])
        assert reported[trial.number] == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs_per_step": 0}, "epochs_per_step must be a positive number but got 0"),
        ({"value_scale": -1}, "value_scale must be a positive number but got -1"),
        ({"num_classes": 1}, "num_classes must be at least 2 but got 1"),
    ],
)
def test_bad_parameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PEng4NNPruner(**kwargs)


def test_values_outside_percent_name_the_trial_and_the_scale():
    def objective(trial):
        trial.report(250.0, 0)
        trial.should_prune()
        return 0.0

    study = optuna.create_study(direction="maximize", pruner=PEng4NNPruner())
    with pytest.raises(ValueError, match=r"trial 0, step 0: intermediate value 250.0 \(x value_scale 1.0\)"):
        study.optimize(objective, n_trials=1, catch=())


def test_remote_pruner_decides_like_the_in_process_one(api):
    """Given a client, each trial's curve is a session on a live service; same prunes, same estimates."""
    from peng4nn.client import Client

    curves = recorded_curves()
    server = api()
    with Client(server.url) as client:
        remote, remote_reported = run_study(PEng4NNPruner(num_classes=100, client=client), curves)
        sessions = {s["label"]: s for s in (client._request("GET", f"/v1/curves/{cid}").json()
                                            for cid in _session_ids(server))}
    local, local_reported = run_study(PEng4NNPruner(num_classes=100), curves)
    assert remote_reported == local_reported
    for r, l in zip(remote.trials, local.trials):
        assert (r.state, r.user_attrs) == (l.state, l.user_attrs)
        assert sessions[f"optuna-trial-{r.number}"]["n_points"] == remote_reported[r.number]


def _session_ids(server) -> list[str]:
    redis = server.app.state.redis
    return [k.split(":")[2] for k in redis.scan_iter("peng4nn:curve:*") if k.count(":") == 2]
