"""The train-validate-decide loop on real digits data: end to end, shadow mode, divergence, cancel."""

import math

import pytest
import torch

from peng4nn.analyzer import Reason
from peng4nn.datasets import load_dataset
from peng4nn.policies import make_policy
from peng4nn.results import IterationEvent, TrainResult
from peng4nn.spec import SpecError
from peng4nn.train import BatchOrder, train_and_estimate

SENSIBLE_CNN = {
    "schema": "peng4nn.arch/v1",
    "layers": [
        {"type": "conv2d", "filters": 16, "kernel": 3, "padding": 1}, {"type": "relu"},
        {"type": "maxpool2d", "kernel": 2},
        {"type": "conv2d", "filters": 32, "kernel": 3, "padding": 1}, {"type": "relu"},
        {"type": "global_avg_pool"},
        {"type": "linear", "units": "num_classes"},
    ],
    "training": {"optimizer": "adam", "lr": 0.01, "batch_size": 32, "seed": 1},
}

DEEP_LINEAR = {  # no non-linearity to saturate: large steps blow the weights up
    "layers": [{"type": "flatten"}] + [{"type": "linear", "units": 64}] * 4 + [{"type": "linear", "units": "num_classes"}],
    "training": {"optimizer": "sgd", "lr": 10.0, "momentum": 0.9, "batch_size": 32, "seed": 0},
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny nets train fastest on one thread, and the test machine's cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def converged_run(one_thread):
    events = []
    result = train_and_estimate(SENSIBLE_CNN, "digits", device="cpu", on_iteration=events.append)
    return result, events


def test_sensible_cnn_on_digits_learns_and_the_engine_converges_before_e_max(converged_run):
    result, events = converged_run
    assert isinstance(result, TrainResult)
    assert result.reason == Reason.CONVERGED.value and result.converged
    assert result.stop_epoch < 20 and result.epochs_trained == result.stop_epoch
    assert max(e.val_acc for e in events) > 80.0
    assert 80.0 < result.estimate <= 100.0
    assert result.events == events  # on_iteration saw every iteration, in order
    assert [e.iteration for e in events] == list(range(1, len(events) + 1))
    assert [e.epoch for e in events] == [0.5 * i for i in range(1, len(events) + 1)]
    assert events[-1].decision.stop and not any(e.decision.stop for e in events[:-1])
    assert result.estimate == events[-1].decision.estimate  # the analyzer's answer, not a re-derived one
    assert events[0].train_loss > events[-1].train_loss


def test_event_and_result_dicts_flatten_the_decision(converged_run):
    result, events = converged_run
    d = events[-1].to_dict()
    for key in ("iteration", "epoch", "train_loss", "val_acc", "val_loss", "elapsed_s", "prediction", "a", "b",
                "c", "converged", "stop", "estimate", "reason", "interval"):
        assert key in d
    assert d["reason"] == "converged" and d["stop"] is True and d["a"] == events[-1].decision.a
    assert events[-1].elapsed_s >= events[0].elapsed_s > 0
    out = result.to_dict()
    assert out["estimate"] == result.estimate and len(out["events"]) == len(events)
    assert out["shadow_stop_epoch"] is None


def test_same_seed_same_curve_and_shadow_mode_records_where_the_engine_stopped(converged_run):
    result, events = converged_run
    e_max = result.stop_epoch + 2.0
    shadow = train_and_estimate(SENSIBLE_CNN, "digits", device="cpu", shadow=True, e_max=e_max)
    # deterministic for a seed: the shadow run replays the same curve first
    assert [e.val_acc for e in shadow.events[:len(events)]] == [e.val_acc for e in events]
    assert shadow.epochs_trained == e_max and len(shadow.events) == int(e_max / 0.5)
    assert shadow.shadow_stop_epoch == result.stop_epoch
    assert shadow.shadow_estimate == pytest.approx(result.estimate)
    assert shadow.shadow_converged is True and shadow.shadow_reason == "converged"
    # the run itself went to e_max, where the paper's answer is the best accuracy seen
    assert shadow.reason == Reason.MAX_EPOCHS.value and not shadow.converged
    assert shadow.estimate == max(e.val_acc for e in shadow.events) == shadow.best_val_acc


def test_diverging_loss_ends_as_never_learn_not_a_crash():
    result = train_and_estimate(DEEP_LINEAR, "digits", device="cpu", e_max=3)
    assert result.reason == Reason.DIVERGED.value and not result.converged
    assert result.estimate == pytest.approx(10.0)  # never validated: chance level for 10 classes
    slower = {**DEEP_LINEAR, "training": {**DEEP_LINEAR["training"], "lr": 0.1}}
    result = train_and_estimate(slower, "digits", device="cpu", e_max=5)
    assert result.reason == Reason.DIVERGED.value
    expected = max((e.val_acc for e in result.events), default=10.0)
    assert result.estimate == pytest.approx(expected)
    assert all(math.isfinite(e.train_loss) for e in result.events)


def test_should_stop_cancels_at_an_iteration_boundary():
    events = []
    result = train_and_estimate(SENSIBLE_CNN, "digits", device="cpu", on_iteration=events.append,
                                should_stop=lambda: len(events) >= 2)
    assert result.reason == Reason.CANCELLED.value and result.estimate is None
    assert len(result.events) == 2 and result.epochs_trained == 1.0


def test_other_policies_drive_the_same_loop():
    result = train_and_estimate(SENSIBLE_CNN, "digits", device="cpu",
                                policy=make_policy("fixed", num_classes=10, k=1.5))
    assert result.reason == Reason.BUDGET_REACHED.value and result.stop_epoch == 1.5
    assert result.estimate == max(e.val_acc for e in result.events)
    policy = make_policy("paper", estimator={"E": 1.0, "e_max": 2.0}, num_classes=10)
    result = train_and_estimate(SENSIBLE_CNN, "digits", device="cpu", policy=policy)
    assert [e.epoch for e in result.events] == [1.0, 2.0] and result.reason == Reason.MAX_EPOCHS.value


def test_preloaded_tensors_must_match_the_run():
    data = load_dataset("digits", device="cpu", E=0.5, batch_size=32)
    result = train_and_estimate(SENSIBLE_CNN, data, e_max=1.0)
    assert len(result.events) == 2
    other = load_dataset("digits", device="cpu", E=0.5, batch_size=64)
    with pytest.raises(ValueError, match="batch_size=64"):
        train_and_estimate(SENSIBLE_CNN, other, e_max=1.0)


def test_invalid_spec_for_the_dataset_fails_before_training():
    bad = {**SENSIBLE_CNN, "layers": [{"type": "conv2d", "filters": 4, "kernel": 9}, {"type": "flatten"},
                                      {"type": "linear", "units": "num_classes"}]}
    with pytest.raises(SpecError) as info:
        train_and_estimate(bad, "digits", device="cpu")
    assert info.value.errors[0]["loc"] == ("layers", 0, "kernel")


def test_batch_order_covers_each_sample_once_per_epoch():
    gen = torch.Generator().manual_seed(0)
    order = BatchOrder(12, 3, gen, torch.device("cpu"))
    first, second = order.take(2), order.take(2)  # E = 0.5: two iterations make one epoch
    assert first.shape == (2, 3)
    assert sorted(torch.cat([first.flatten(), second.flatten()]).tolist()) == list(range(12))
    spanning = order.take(5)  # more than an epoch in one iteration (E > 1)
    assert spanning.shape == (5, 3) and sorted(spanning.flatten()[:12].tolist()) == list(range(12))


def test_iteration_event_is_a_plain_dataclass(converged_run):
    _, events = converged_run
    assert isinstance(events[0], IterationEvent)
    assert events[0].decision.prediction is None  # too few points to fit yet


def test_out_of_memory_ends_the_model_with_a_reason():
    # A 1x1 conv with padding 100,000 asks for ~640 GB per sample: the allocator refuses at once.
    from peng4nn.spec import SpecLimits

    huge = {"layers": [{"type": "conv2d", "filters": 4, "kernel": 1, "padding": 100_000},
                       {"type": "global_avg_pool"}, {"type": "linear", "units": "num_classes"}],
            "training": {"batch_size": 32}}
    result = train_and_estimate(huge, "digits", device="cpu", limits=SpecLimits(max_flops=None, max_params=None))
    assert result.reason == Reason.OUT_OF_MEMORY.value and result.estimate is None and result.events == []
    with pytest.raises(SpecError, match="FLOPs"):  # the default limits refuse it before training
        train_and_estimate(huge, "digits", device="cpu")
    # ~550 GB of parameters: building the model itself fails, and ends the same way
    wide = {"layers": [{"type": "flatten"}, {"type": "linear", "units": 2**31}, {"type": "linear", "units": 10}],
            "training": {"batch_size": 32}}
    result = train_and_estimate(wide, "digits", device="cpu", limits=SpecLimits(max_flops=None, max_params=None))
    assert result.reason == Reason.OUT_OF_MEMORY.value and result.epochs_trained == 0.0
