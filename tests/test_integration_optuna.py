"""PEng4NNPruner on real Optuna studies fed real recorded curves: 120 MetaQNN networks on SVHN (one point per
epoch, with their learning rates) and three CIFAR-100 networks (half-epoch points)."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import optuna
import pytest

from peng4nn.integrations import ESTIMATE_ATTR, INTERVAL_ATTR, REASON_ATTR
from peng4nn.integrations.optuna import (
    PEng4NNPruner,
    best_trial_by_estimate,
    estimate_of,
    ranked_trials,
    report,
)
from peng4nn.policies import PolicyConfigError, make_policy
from peng4nn.replay import policy_factory, read_curves, replay

ROOT = Path(__file__).resolve().parents[1]
CIFAR_CSV = ROOT / "examples" / "data" / "penguin-cifar100-sample.csv"
SVHN_CSV = ROOT / "tests" / "data" / "metaqnn-svhn-120.csv"
SVHN = {"E": 1.0, "e_max": 20.0}

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.timeout(60)


def cifar_curves() -> list[list[tuple[float, float]]]:
    curves: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with CIFAR_CSV.open() as f:
        for row in csv.DictReader(f):
            curves[row["model_id"]].append((float(row["epoch"]), float(row["val_acc"])))
    return list(curves.values())


def svhn_curves() -> list[list[tuple[float, float, float]]]:
    """(epoch, val_acc, lr) per point, per network, in file order."""
    curves: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    with SVHN_CSV.open() as f:
        for row in csv.DictReader(f):
            curves[row["model_id"]].append((float(row["epoch"]), float(row["val_acc"]), float(row["lr"])))
    return list(curves.values())


def first_stop(points, **policy_kwargs):
    """The library's answer on the same points: (index of the first stop, its decision) or (None, None)."""
    policy = make_policy("paper", **policy_kwargs)
    for i, (epoch, acc) in enumerate(points):
        decision = policy.observe(epoch, acc)
        if decision.stop:
            return i, decision
    return None, None


def curve_objective(curves, reported, scale=1.0, score_pruned=False, offset=0):
    """Trial n reports curve n + offset point by point (with its rate when known) until pruned."""

    def objective(trial):
        points = curves[trial.number + offset]
        for step, point in enumerate(points):
            report(trial, point[1] / scale, step, lr=point[2] if len(point) > 2 else None)
            reported[trial.number] = step + 1
            if trial.should_prune():
                if score_pruned:
                    return estimate_of(trial).value
                raise optuna.TrialPruned()
        return max(p[1] for p in points) / scale

    return objective


def run_study(pruner, curves, scale=1.0, n_jobs=1, score_pruned=False, storage=None, name=None, n=None, offset=0):
    reported: dict[int, int] = {}
    study = optuna.create_study(direction="maximize", pruner=pruner, storage=storage, study_name=name,
                                load_if_exists=True)
    study.optimize(curve_objective(curves, reported, scale, score_pruned, offset),
                   n_trials=len(curves) if n is None else n, n_jobs=n_jobs)
    return study, reported


# -- the paper's rule, one trial at a time ---------------------------------------------------------

def test_paper_policy_prunes_where_the_library_converges_and_records_its_estimate():
    curves = cifar_curves()
    study, reported = run_study(PEng4NNPruner("paper", num_classes=100), curves)
    pruned = 0
    for trial in study.trials:
        index, decision = first_stop(curves[trial.number], num_classes=100)
        if decision is not None and decision.converged:
            pruned += 1
            assert trial.state == optuna.trial.TrialState.PRUNED
            assert reported[trial.number] == index + 1  # pruned at exactly that point, not later
            estimate = estimate_of(trial, study)
            assert (estimate.value, estimate.reason, estimate.final) == (decision.estimate, "converged", True)
            assert estimate.epoch == decision.epoch
        else:
            assert trial.state == optuna.trial.TrialState.COMPLETE
            assert reported[trial.number] == len(curves[trial.number])
    assert pruned >= 1, "the recorded curves should converge before 40 epochs"


def test_the_objective_can_score_a_pruned_trial_by_its_estimate():
    curves = cifar_curves()
    study, _ = run_study(PEng4NNPruner("paper", num_classes=100), curves, score_pruned=True)
    for trial in study.trials:
        _, decision = first_stop(curves[trial.number], num_classes=100)
        assert trial.state == optuna.trial.TrialState.COMPLETE
        if decision is not None and decision.converged:
            assert trial.value == decision.estimate  # read inside the objective, from a live Trial
            # ... which also left it on the trial, readable without the study
            assert trial.user_attrs[ESTIMATE_ATTR] == decision.estimate
            assert trial.user_attrs[REASON_ATTR] == "converged"
            assert estimate_of(trial).value == decision.estimate
        else:
            assert trial.value == max(a for _, a in curves[trial.number])


def test_value_scale_and_epochs_per_step_map_fractions_and_steps():
    whole = [p for p in cifar_curves()[0] if p[0] == int(p[0])]  # one step per epoch, accuracies in [0, 1]
    pruner = PEng4NNPruner("paper", num_classes=100, value_scale=100, epochs_per_step=1.0)
    study, reported = run_study(pruner, [whole], scale=100)
    index, decision = first_stop(whole, num_classes=100)
    [trial] = study.trials
    assert decision is not None
    assert estimate_of(trial, study).value == pytest.approx(decision.estimate, abs=1e-9)
    assert reported[trial.number] == index + 1


def test_threads_keep_each_trial_on_its_own_curve():
    curves = cifar_curves() * 3
    study, _ = run_study(PEng4NNPruner("paper", num_classes=100), curves, n_jobs=3)
    for trial in study.trials:
        _, decision = first_stop(curves[trial.number], num_classes=100)
        estimate = estimate_of(trial, study)
        assert (estimate.value if estimate else None) == (decision.estimate if decision is not None else None)


# -- the default: a study is one search ------------------------------------------------------------

def test_a_study_is_one_search_and_decides_exactly_as_replay_does():
    curves = svhn_curves()
    pruner = PEng4NNPruner(estimator=SVHN, num_classes=10)
    assert pruner.policy == "adaptive"  # the default for a study
    study, reported = run_study(pruner, curves)

    recorded = read_curves(SVHN_CSV)
    outcomes = replay(recorded, policy_factory("adaptive", estimator=SVHN, num_classes=10), e_max=20)
    assert [reported[t.number] for t in study.trials] == [o.stop_epoch for o in outcomes]
    for trial, outcome in zip(study.trials, outcomes):
        estimate = estimate_of(trial, study)
        assert estimate.value == pytest.approx(outcome.estimate, abs=1e-9)
        assert estimate.reason == outcome.reason.value
        assert estimate.interval is not None and estimate.interval[0] <= estimate.value <= estimate.interval[1]
        reached_e_max = outcome.stop_epoch >= 20
        assert trial.state == (optuna.trial.TrialState.COMPLETE if reached_e_max else optuna.trial.TrialState.PRUNED)
    assert sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials) > 60  # it does save epochs
    # The crowned trial is the one replay ranks first; the ranking is replay's.
    best = max(range(len(outcomes)), key=lambda i: (outcomes[i].estimate, -i))
    assert best_trial_by_estimate(study).number == best
    assert [t.number for t, _ in ranked_trials(study)][:10] == sorted(
        range(len(outcomes)), key=lambda i: (-outcomes[i].estimate, i))[:10]
    assert pruner.n_running == 0  # nothing of a finished trial stays in memory


def run_part(journal: str, name: str, first: int, count: int) -> None:
    """Run trials first..first+count-1 of the SVHN study on a journal file (used by a separate process)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(journal))
    run_study(PEng4NNPruner(estimator=SVHN, num_classes=10), svhn_curves(), storage=storage, name=name,
              n=count, offset=first)


def test_processes_sharing_a_journal_storage_share_one_search(tmp_path):
    """Another process runs the first 20 trials; this one, with a fresh pruner, decides the rest as if it had."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = str(tmp_path / "study.log")
    code = f"from tests.test_integration_optuna import run_part; run_part({journal!r}, 'svhn', 0, 20)"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=50)

    curves = svhn_curves()[:40]
    storage = JournalStorage(JournalFileBackend(journal))
    study, reported = run_study(PEng4NNPruner(estimator=SVHN, num_classes=10), curves, storage=storage, name="svhn",
                                n=20, offset=0)
    # trial numbers continue at 20 in this process; their curves are curves[20:40]
    alone, alone_reported = run_study(PEng4NNPruner(estimator=SVHN, num_classes=10), curves)
    assert [len(t.intermediate_values) for t in study.trials] == [len(t.intermediate_values) for t in alone.trials]
    assert [estimate_of(t, study).value for t in study.trials] == [estimate_of(t, alone).value for t in alone.trials]
    assert any(t.state == optuna.trial.TrialState.PRUNED for t in study.trials[20:])  # decided by the search


def test_the_learning_rate_reaches_the_engine():
    curves = svhn_curves()[:2]
    pruner = PEng4NNPruner(estimator=SVHN, num_classes=10)
    seen = []

    def objective(trial):
        policy = None
        for step, (_, acc, lr) in enumerate(curves[trial.number]):
            report(trial, acc, step, lr=lr)
            trial.should_prune()
            policy = pruner.running_policy(trial.number) or policy  # dropped after the last point
            seen.append((policy.history.points[-1].lr, lr))
        return acc

    optuna.create_study(direction="maximize", pruner=pruner).optimize(objective, n_trials=2)
    assert len(seen) == 40 and all(got == sent for got, sent in seen)
    assert {sent for _, sent in seen} >= {curves[0][0][2], curves[0][-1][2]}  # the drops are there


def test_a_nan_report_prunes_the_trial_as_diverged_and_the_search_goes_on():
    curves = svhn_curves()[:14]

    def objective(trial):
        for step, (_, acc, _) in enumerate(curves[trial.number]):
            value = math.nan if trial.number == 3 and step == 4 else acc
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return acc

    pruner = PEng4NNPruner(estimator=SVHN, num_classes=10)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    study.optimize(objective, n_trials=len(curves))
    diverged = study.trials[3]
    assert diverged.state == optuna.trial.TrialState.PRUNED and len(diverged.intermediate_values) == 5
    estimate = estimate_of(diverged, study)
    assert estimate.value is None and estimate.reason == "diverged" and estimate.epoch == 5.0
    assert ranked_trials(study)[-1][0].number == 3  # last in the ranking
    # The search ignores it: it learned the 12 others that had finished before trial 13's last decision.
    assert pruner.search.n_finished == 12
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials[:11] if t.number != 3)


def test_trials_ended_by_the_objective_are_forgotten_and_still_teach_the_search():
    curves = svhn_curves()[:12]

    def objective(trial):
        for step, (_, acc, _) in enumerate(curves[trial.number]):
            trial.report(acc, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
            if trial.number % 2 and step == 9:
                return acc  # the objective stops at half the run on its own
        return acc

    pruner = PEng4NNPruner(estimator=SVHN, num_classes=10)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    study.optimize(objective, n_trials=len(curves))
    # Forgotten at the next prune() call: only the last trial, which ended on its own, is still held.
    assert pruner.n_running == 1 and pruner.running_policy(11) is not None
    assert pruner.search.n_finished == 11  # the search learned the half-run trials too
    half = ranked_trials(study)
    by_number = {t.number: e for t, e in half}
    assert by_number[1].value == max(a for _, a, _ in curves[1][:10]) and by_number[1].reason == "curve_ended"


def test_a_minimize_study_is_refused_by_name():
    study = optuna.create_study(direction="minimize", pruner=PEng4NNPruner(), study_name="errors")

    def objective(trial):
        trial.report(0.3, 0)
        trial.should_prune()
        return 0.3

    with pytest.raises(ValueError, match=r"direction='maximize'; study 'errors' has direction\(s\) \['minimize'\]"):
        study.optimize(objective, n_trials=1)


def test_one_pruner_serves_one_study():
    pruner = PEng4NNPruner("paper")

    def objective(trial):
        trial.report(50.0, 0)
        trial.should_prune()
        return 50.0

    optuna.create_study(direction="maximize", pruner=pruner, study_name="a").optimize(objective, n_trials=1)
    with pytest.raises(ValueError, match="belongs to study 'a' .* another pruner for study 'b'"):
        optuna.create_study(direction="maximize", pruner=pruner, study_name="b").optimize(objective, n_trials=1)


def test_estimate_of_a_running_trial_is_its_latest_prediction():
    curve = svhn_curves()[5]
    seen = []

    def objective(trial):
        for step, (_, acc, _) in enumerate(curve):
            trial.report(acc, step)
            trial.should_prune()
            seen.append(estimate_of(trial))
        return acc

    study = optuna.create_study(direction="maximize", pruner=PEng4NNPruner("adaptive", estimator=SVHN))
    study.optimize(objective, n_trials=1)
    assert seen[0] is None  # no prediction from one point
    running = [e for e in seen[:-1] if e is not None]
    assert running and all(not e.final and e.interval is not None for e in running)
    assert seen[-1].final and seen[-1].reason == "max_epochs" and seen[-1].value == max(a for _, a, _ in curve)
    assert study.trials[0].user_attrs[INTERVAL_ATTR] == list(seen[-1].interval)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {"epochs_per_step": 0}, "epochs_per_step must be a positive number but got 0"),
        ((), {"value_scale": -1}, "value_scale must be a positive number but got -1"),
        ((), {"num_classes": 1}, "num_classes must be at least 2 but got 1"),
        (("nope",), {}, r"The 'policy' parameter must be one of .*; got 'nope' instead"),
        ((), {"top": 0}, r"The 'top' parameter of policy 'adaptive' is invalid"),
        (({"N": 3},), {}, "the first argument of PEng4NNPruner is the policy name"),
    ],
)
def test_bad_parameters_are_named(args, kwargs, message):
    with pytest.raises((ValueError, TypeError, PolicyConfigError), match=message):
        PEng4NNPruner(*args, **kwargs)


def test_a_bad_learning_rate_is_refused_where_it_is_reported():
    def objective(trial):
        report(trial, 50.0, 0, lr=math.nan)
        return 0.0

    study = optuna.create_study(direction="maximize", pruner=PEng4NNPruner())
    with pytest.raises(ValueError, match=r"lr must be a non-negative finite number; got nan \(trial 0, step 0\)"):
        study.optimize(objective, n_trials=1, catch=())


def test_threads_share_one_search_without_losing_a_trial():
    curves = svhn_curves()[:40]
    pruner = PEng4NNPruner(estimator=SVHN, num_classes=10)
    study, reported = run_study(pruner, curves, n_jobs=3)
    assert len(study.trials) == 40 and all(t.state.is_finished() for t in study.trials)
    assert all(estimate_of(t, study).final for t in study.trials)
    assert pruner.search.n_finished >= 37  # all but (at most) the trials still running at the last decision


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

    curves = cifar_curves()
    server = api()
    with Client(server.url) as client:
        remote, remote_reported = run_study(PEng4NNPruner("paper", num_classes=100, client=client), curves)
        sessions = {s["label"]: s for s in (client._request("GET", f"/v1/curves/{cid}").json()
                                            for cid in _session_ids(server))}
    local, local_reported = run_study(PEng4NNPruner("paper", num_classes=100), curves)
    assert remote_reported == local_reported
    for r, l in zip(remote.trials, local.trials):
        assert r.state == l.state
        assert estimate_of(r, remote) == estimate_of(l, local)
        assert sessions[f"optuna-trial-{r.number}"]["n_points"] == remote_reported[r.number]


def _session_ids(server) -> list[str]:
    redis = server.app.state.redis
    return [k.split(":")[2] for k in redis.scan_iter("peng4nn:curve:*") if k.count(":") == 2]


def test_the_shipped_example_crowns_a_true_top_3_network():
    """examples/optuna_digits.py end to end, checking itself: every trial retrained to e_max."""
    proc = subprocess.run([sys.executable, "examples/optuna_digits.py", "--trials", "14", "--verify"], cwd=ROOT,
                          capture_output=True, text=True, timeout=55, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "in the true top 3" in proc.stdout and "Traceback" not in proc.stderr
