"""The baselines PEng4NN is judged against, behind the same observe() interface."""

from __future__ import annotations

import pytest

from peng4nn.analyzer import PredictionAnalyzer, Reason
from peng4nn.policies import POLICY_NAMES, PolicyConfigError, make_policy

E = 0.5


def run(policy, accs, val_loss=None, train_loss=None):
    """Feed points every E epochs until the policy stops; return the stopping decision or None."""
    for i, acc in enumerate(accs):
        d = policy.observe(
            E * (i + 1),
            acc,
            val_loss=None if val_loss is None else val_loss[i],
            train_loss=None if train_loss is None else train_loss[i],
        )
        if d.stop:
            return d
    return None


def test_policy_names():
    assert set(POLICY_NAMES) >= {"paper", "menndl", "patience", "fixed"}
    assert isinstance(make_policy("paper"), PredictionAnalyzer)
    for name in ("paper", "menndl", "patience", "fixed"):
        policy = make_policy(name)
        assert policy.name == name and policy.E == 0.5 and policy.e_max == 20


# ---------------------------------------------------------------- MENNDL


def test_menndl_stops_10_epochs_after_the_last_new_minimum_training_loss():
    train = [3.0 - 0.1 * i for i in range(11)] + [2.5] * 29  # last new minimum at epoch 5.5
    accs = [10.0 + i for i in range(40)]
    d = run(make_policy("menndl"), accs, train_loss=train)
    assert d.epoch == 15.5 and d.reason is Reason.PATIENCE_EXHAUSTED
    assert d.estimate == max(accs[:31]) and not d.converged


def test_menndl_trains_at_most_20_epochs():
    train = [3.0 - 0.01 * i for i in range(60)]
    d = run(make_policy("menndl"), [50.0] * 60, train_loss=train)
    assert d.epoch == 20.0 and d.reason is Reason.MAX_EPOCHS


def test_menndl_falls_back_to_validation_loss_then_accuracy():
    stall = [2.0] * 40
    falling = [3.0 - 0.01 * i for i in range(40)]
    # train_loss present: it decides, whatever val_loss does.
    assert run(make_policy("menndl"), [50.0] * 40, val_loss=falling, train_loss=stall).epoch == 10.5
    # No train_loss: val_loss decides.
    policy = make_policy("menndl")
    assert run(policy, [50.0] * 40, val_loss=stall).epoch == 10.5 and policy.monitor == "val_loss"
    policy = make_policy("menndl")
    assert run(policy, [50.0] * 40, val_loss=falling).epoch == 20.0
    # Neither: validation accuracy (higher is better) decides.
    policy = make_policy("menndl")
    accs = [10.0 + i for i in range(8)] + [17.0] * 32  # best at epoch 4.0
    assert run(policy, accs).epoch == 14.0 and policy.monitor == "val_acc"


def test_menndl_patience_is_a_parameter():
    assert run(make_policy("menndl", patience=2), [50.0] * 40, train_loss=[2.0] * 40).epoch == 2.5


# ---------------------------------------------------------------- patience


def test_patience_stops_after_patience_epochs_without_a_better_accuracy():
    accs = [10.0 + 5 * i for i in range(6)] + [30.0] * 34  # best 35.0 at epoch 3.0
    d = run(make_policy("patience", patience=4), accs)
    assert d.epoch == 7.0 and d.reason is Reason.PATIENCE_EXHAUSTED and d.estimate == 35.0


def test_patience_min_delta_ignores_small_gains():
    accs = [50.0 + 0.05 * i for i in range(40)]  # creeping up by 0.05 per point
    assert run(make_policy("patience", patience=2), accs).epoch == 20.0  # every gain counts
    d = run(make_policy("patience", patience=2, min_delta=0.2), accs)
    assert d.epoch == 2.5  # no gain of more than 0.2 within 2 epochs: the best stays the one at epoch 0.5


# ---------------------------------------------------------------- fixed budget


@pytest.mark.parametrize("k", [1, 2, 3])
def test_fixed_budget_k_epochs_reports_the_best_accuracy_seen(k):
    accs = [20.0, 35.0, 30.0, 40.0, 38.0, 45.0, 50.0] + [60.0] * 33
    d = run(make_policy("fixed", k=k), accs)
    assert d.epoch == k and d.reason is Reason.BUDGET_REACHED
    assert d.estimate == max(accs[: int(k / E)])


def test_fixed_budget_defaults_to_e_max():
    d = run(make_policy("fixed", estimator={"e_max": 10}), [50.0] * 40)
    assert d.epoch == 10.0


# ---------------------------------------------------------------- configuration errors


def test_unknown_policy_names_the_choices():
    with pytest.raises(PolicyConfigError, match="'policy' parameter must be one of"):
        make_policy("nope")


@pytest.mark.parametrize(
    "name, params, field",
    [("patience", {"patience": -1}, "patience"), ("fixed", {"k": 0}, "k"), ("menndl", {"monitor": "x"}, "monitor"),
     ("patience", {"k": 3}, "k")],
)
def test_bad_policy_parameters_name_the_parameter(name, params, field):
    with pytest.raises(PolicyConfigError, match=field):
        make_policy(name, **params)


def test_paper_takes_its_parameters_from_the_estimator():
    with pytest.raises(PolicyConfigError, match="estimator settings"):
        make_policy("paper", patience=3)
    assert make_policy("paper", estimator={"N": 4}).settings.N == 4
