"""PEng4NNEarlyStopping in a real Keras 3 fit on the torch back-end: a tiny MLP on sklearn digits, CPU."""

from __future__ import annotations

import math

import pytest
from sklearn.datasets import load_digits

from tests.conftest import import_keras

keras = import_keras()

from peng4nn.integrations.keras import MonitorMissingWarning, PEng4NNEarlyStopping  # noqa: E402
from peng4nn.policies import make_policy, make_policy_factory  # noqa: E402

pytestmark = pytest.mark.timeout(120)
EPOCHS = 20


@pytest.fixture(scope="module")
def digits():
    import numpy as np

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    perm = np.random.default_rng(0).permutation(len(x))
    return (x[perm[:1400]], y[perm[:1400]]), (x[perm[1400:]], y[perm[1400:]])


def fit(digits, callbacks, epochs=EPOCHS, initial_epoch=0, model=None):
    (x, y), (xv, yv) = digits
    keras.utils.set_random_seed(0)
    if model is None:
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                                  keras.layers.Dense(10, activation="softmax")])
        model.compile(optimizer=keras.optimizers.SGD(0.3), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    history = model.fit(x, y, validation_data=(xv, yv), epochs=epochs, initial_epoch=initial_epoch,
                        batch_size=100, verbose=0, callbacks=callbacks)
    return model, history


class Poison(keras.callbacks.Callback):
    """Makes the validation accuracy NaN from an epoch on (a diverged network)."""

    def __init__(self, from_epoch: int):
        super().__init__()
        self.from_epoch = from_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch >= self.from_epoch:
            logs["val_accuracy"] = math.nan


class Crash(keras.callbacks.Callback):
    def __init__(self, at_epoch: int):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise RuntimeError("the machine went away")


def test_stops_when_the_engine_converges_and_logs_the_estimate_every_epoch(digits):
    callback = PEng4NNEarlyStopping(num_classes=10)
    _, history = fit(digits, [callback])
    assert [e for e, _, _ in callback.points] == [float(i + 1) for i in range(len(callback.points))]  # E = 1
    assert callback.decision.stop and callback.decision.converged
    assert len(history.history["loss"]) == len(callback.points) < EPOCHS
    assert 50 < callback.estimate < 100
    assert all(a == pytest.approx(100 * v) for (_, a, _), v in zip(callback.points, history.history["val_accuracy"]))
    policy = make_policy("paper", estimator={"E": 1.0}, num_classes=10)
    assert [policy.observe(e, a) for e, a, _ in callback.points] == callback.decisions
    # In the epoch logs (so in History) from the first prediction on; the last one is the final estimate.
    logged = history.history["peng4nn_estimate"]
    assert logged[-1] == callback.estimate
    assert logged == pytest.approx([d.estimate if d.stop else d.prediction for d in callback.decisions
                                    if d.prediction is not None])


def test_the_learning_rate_is_read_from_the_optimizer_and_the_interval_logged(digits):
    callback = PEng4NNEarlyStopping(policy="adaptive", num_classes=10)
    schedule = keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.3 * 0.5 ** (epoch // 2))
    _, history = fit(digits, [schedule, callback], epochs=6)
    assert [lr for _, _, lr in callback.points] == pytest.approx([0.3, 0.3, 0.15, 0.15, 0.075, 0.075])
    assert [p.lr for p in callback.curve.history.points] == [lr for _, _, lr in callback.points]
    los, his = history.history["peng4nn_lo"], history.history["peng4nn_hi"]
    assert los and all(lo <= est <= hi for lo, est, hi in zip(los, history.history["peng4nn_estimate"], his))


def test_an_interrupted_fit_resumes_with_its_curve(digits, tmp_path):
    backup = tmp_path / "peng4nn.json"
    restore = keras.callbacks.BackupAndRestore(str(tmp_path / "model-backup"))
    first = PEng4NNEarlyStopping(num_classes=10, backup_path=backup)
    with pytest.raises(RuntimeError, match="went away"):
        fit(digits, [restore, first, Crash(at_epoch=2)])
    assert backup.is_file() and [e for e, _, _ in first.points] == [1.0, 2.0, 3.0]

    resumed = PEng4NNEarlyStopping(num_classes=10, backup_path=backup)
    fit(digits, [keras.callbacks.BackupAndRestore(str(tmp_path / "model-backup")), resumed])
    assert resumed.points[:3] == first.points
    assert [e for e, _, _ in resumed.points] == [float(i + 1) for i in range(len(resumed.points))]
    assert resumed.decision.stop and not backup.exists()  # a fit that ended removes its backup
    policy = make_policy("paper", estimator={"E": 1.0}, num_classes=10)
    assert [policy.observe(e, a) for e, a, _ in resumed.points] == resumed.decisions


def test_a_nan_metric_stops_the_fit_as_diverged(digits):
    callback = PEng4NNEarlyStopping(num_classes=10)
    _, history = fit(digits, [Poison(from_epoch=3), callback])
    assert callback.decision.reason.value == "diverged" and callback.estimate is None
    assert len(history.history["loss"]) == 4 and len(callback.points) == 3

    lenient = PEng4NNEarlyStopping(num_classes=10, check_finite=False)
    _, history = fit(digits, [Poison(from_epoch=3), lenient], epochs=5)
    assert len(history.history["loss"]) == 5 and len(lenient.points) == 3


def test_a_metric_never_logged_is_named_or_skipped_when_not_strict(digits):
    with pytest.raises(KeyError, match="monitors 'val_acc', which was not logged; logged metrics: .*'val_accuracy'"):
        fit(digits, [PEng4NNEarlyStopping("val_acc")], epochs=2)
    lenient = PEng4NNEarlyStopping("val_acc", strict=False)
    with pytest.warns(MonitorMissingWarning, match="strict=False"):
        _, history = fit(digits, [lenient], epochs=2)
    assert len(history.history["loss"]) == 2 and lenient.points == []


def test_fits_of_one_search_share_what_they_learn(digits):
    search = make_policy_factory("adaptive", estimator={"E": 1.0, "e_max": 3}, num_classes=10, warmup_models=2)
    for _ in range(3):
        fit(digits, [PEng4NNEarlyStopping(search=search)], epochs=3)
    assert search.n_finished == 3
