"""PEng4NNEarlyStopping in a real Lightning Trainer: a tiny MLP on sklearn digits, CPU, validated every half epoch."""

from __future__ import annotations

import csv
import math

import lightning.pytorch as pl
import pytest
import torch
from sklearn.datasets import load_digits

from peng4nn.integrations import ESTIMATE_ATTR
from peng4nn.integrations.lightning import MonitorMissingWarning, PEng4NNEarlyStopping
from peng4nn.policies import make_policy, make_policy_factory

MAX_EPOCHS = 20
pytestmark = pytest.mark.timeout(120)


class DigitsMLP(pl.LightningModule):
    def __init__(self, log_as: str = "val_acc", fraction: bool = False, nan_from: float | None = None,
                 step_lr: bool = False):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
        self.log_as, self.fraction, self.nan_from, self.step_lr = log_as, fraction, nan_from, step_lr

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        acc = (self.net(x).argmax(1) == y).float().mean()
        if self.nan_from is not None and self.current_epoch >= self.nan_from:
            acc = acc * math.nan  # a diverged network
        self.log(self.log_as, acc if self.fraction else acc * 100, on_epoch=True)

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.3)
        if not self.step_lr:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 2, gamma=0.5)}


@pytest.fixture(scope="module")
def loaders():
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, val = perm[:1400], perm[1400:]

    def loader(idx, shuffle):
        data = torch.utils.data.TensorDataset(x[idx], y[idx])
        return torch.utils.data.DataLoader(data, batch_size=100, shuffle=shuffle)

    return loader(train, True), loader(val, False)


def fit(loaders, callback, tmp_path, module=None, max_epochs=MAX_EPOCHS, ckpt_path=None, checkpoint=None):
    pl.seed_everything(0, verbose=False)
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        val_check_interval=0.5,
        callbacks=[callback] + ([checkpoint] if checkpoint else []),
        logger=pl.loggers.CSVLogger(tmp_path, name="run"),
        enable_checkpointing=checkpoint is not None,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module or DigitsMLP(), *loaders, ckpt_path=ckpt_path)
    return trainer


def logged_rows(tmp_path) -> list[dict]:
    [metrics_csv] = tmp_path.glob("run/*/metrics.csv")
    return [r for r in csv.DictReader(metrics_csv.open()) if r.get(ESTIMATE_ATTR)]


def test_stops_when_the_engine_converges_and_logs_the_estimate_at_every_validation(loaders, tmp_path):
    callback = PEng4NNEarlyStopping("val_acc", num_classes=10)
    trainer = fit(loaders, callback, tmp_path)

    # Half-epoch validation gives the paper's E = 0.5 grid.
    assert [e for e, _, _ in callback.points] == [0.5 * (i + 1) for i in range(len(callback.points))]
    last = callback.decision
    assert last.stop and last.converged and last.reason.value == "converged"
    assert not any(d.stop for d in callback.decisions[:-1])  # stopped at the first converged point
    assert trainer.current_epoch < MAX_EPOCHS - 1
    assert callback.estimate == last.estimate and 50 < callback.estimate < 100

    # The same points through the library policy give the same decisions.
    policy = make_policy("paper", num_classes=10)
    assert [policy.observe(e, a) for e, a, _ in callback.points] == callback.decisions

    # Logged at every validation with a prediction: the running prediction, then the final estimate.
    logged = [float(r[ESTIMATE_ATTR]) for r in logged_rows(tmp_path)]
    expected = [d.estimate if d.stop else d.prediction for d in callback.decisions if d.prediction is not None]
    assert logged == pytest.approx(expected) and len(logged) >= 3


def test_the_interval_is_logged_and_the_learning_rate_passed_on(loaders, tmp_path):
    callback = PEng4NNEarlyStopping("val_acc", policy="adaptive", num_classes=10)
    fit(loaders, callback, tmp_path, DigitsMLP(step_lr=True), max_epochs=6)
    # StepLR(step_size=2 epochs, gamma=0.5) from 0.3: the rate in force while training towards each point.
    assert [lr for _, _, lr in callback.points] == pytest.approx([0.3] * 4 + [0.15] * 4 + [0.075] * 4)
    assert [p.lr for p in callback.curve.history.points] == [lr for _, _, lr in callback.points]
    rows = logged_rows(tmp_path)
    assert rows and all(float(r["peng4nn_lo"]) <= float(r[ESTIMATE_ATTR]) <= float(r["peng4nn_hi"]) for r in rows)


def test_a_resumed_run_keeps_its_curve(loaders, tmp_path):
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0)
    first = PEng4NNEarlyStopping("val_acc", num_classes=10)
    fit(loaders, first, tmp_path / "a", max_epochs=2, checkpoint=checkpoint)
    assert [e for e, _, _ in first.points] == [0.5, 1.0, 1.5, 2.0] and not first.decision.stop

    resumed = PEng4NNEarlyStopping("val_acc", num_classes=10)
    fit(loaders, resumed, tmp_path / "b", ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert resumed.points[:4] == first.points  # the curve came back with the checkpoint ...
    assert [e for e, _, _ in resumed.points] == [0.5 * (i + 1) for i in range(len(resumed.points))]
    assert resumed.decision.stop and resumed.decision.converged  # ... and the engine went on with it
    policy = make_policy("paper", num_classes=10)
    assert [policy.observe(e, a) for e, a, _ in resumed.points] == resumed.decisions


def test_a_checkpoint_of_another_monitor_is_refused_by_name():
    state = PEng4NNEarlyStopping("val_acc").state_dict()
    with pytest.raises(ValueError, match="monitored 'val_acc', this one monitors 'acc'"):
        PEng4NNEarlyStopping("acc").load_state_dict(state)


def test_a_nan_metric_stops_the_run_as_diverged(loaders, tmp_path):
    callback = PEng4NNEarlyStopping("val_acc", num_classes=10)
    trainer = fit(loaders, callback, tmp_path, DigitsMLP(nan_from=2))
    assert callback.decision.reason.value == "diverged" and callback.decision.stop
    assert callback.estimate is None and trainer.current_epoch == 3  # should_stop mid-epoch ends that epoch
    assert [e for e, _, _ in callback.points] == [0.5, 1.0, 1.5, 2.0]  # the NaN never reached the engine

    lenient = PEng4NNEarlyStopping("val_acc", num_classes=10, check_finite=False)
    trainer = fit(loaders, lenient, tmp_path / "lenient", DigitsMLP(nan_from=2), max_epochs=4)
    assert trainer.current_epoch == 4 and len(lenient.points) == 4  # skipped, not stopped


def test_value_scale_reads_fractions(loaders, tmp_path):
    callback = PEng4NNEarlyStopping("acc", num_classes=10, value_scale=100)
    fit(loaders, callback, tmp_path, DigitsMLP(log_as="acc", fraction=True))
    assert max(a for _, a, _ in callback.points) > 50  # logged in [0, 1], seen in percent
    assert callback.decision.converged and callback.estimate > 50


def test_a_metric_never_logged_is_named_or_skipped_when_not_strict(loaders, tmp_path):
    expected = "monitors 'val_accuracy', which was not logged; logged metrics: \\['val_acc'\\]"
    with pytest.raises(KeyError, match=expected):
        fit(loaders, PEng4NNEarlyStopping("val_accuracy"), tmp_path)
    lenient = PEng4NNEarlyStopping("val_accuracy", strict=False)
    with pytest.warns(MonitorMissingWarning, match="strict=False"):
        trainer = fit(loaders, lenient, tmp_path / "lenient", max_epochs=2)
    assert trainer.current_epoch == 2 and lenient.points == []


def test_runs_of_one_search_share_what_they_learn(loaders, tmp_path):
    search = make_policy_factory("adaptive", estimator={"e_max": 2}, num_classes=10, warmup_models=2)
    for i in range(3):
        fit(loaders, PEng4NNEarlyStopping("val_acc", search=search), tmp_path / str(i), max_epochs=2)
    assert search.n_finished == 3


def test_remote_callback_uses_a_service_session(api, loaders, tmp_path):
    from peng4nn.client import Client

    server = api()
    with Client(server.url) as client:
        callback = PEng4NNEarlyStopping("val_acc", num_classes=10, client=client, label="lightning-run")
        fit(loaders, callback, tmp_path)
        stored = callback.curve.get()
    assert callback.decision.converged
    policy = make_policy("paper", num_classes=10)
    assert [policy.observe(e, a) for e, a, _ in callback.points] == callback.decisions
    assert stored["label"] == "lightning-run"
    assert [(p["epoch"], p["val_acc"]) for p in stored["points"]] == [(e, a) for e, a, _ in callback.points]
    assert stored["final"]["estimate"] == callback.estimate
