"""PEng4NNEarlyStopping in a real Lightning Trainer: a tiny MLP on sklearn digits, CPU, validated every half epoch."""

from __future__ import annotations

import csv

import pytest

pl = pytest.importorskip("lightning.pytorch")
torch = pytest.importorskip("torch")

from sklearn.datasets import load_digits  # noqa: E402

from peng4nn.integrations import ESTIMATE_ATTR  # noqa: E402
from peng4nn.integrations.lightning import PEng4NNEarlyStopping  # noqa: E402
from peng4nn.policies import make_policy  # noqa: E402

MAX_EPOCHS = 20


class DigitsMLP(pl.LightningModule):
    def __init__(self, log_as: str = "val_acc", fraction: bool = False):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
        self.log_as, self.fraction = log_as, fraction

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        acc = (self.net(x).argmax(1) == y).float().mean()
        self.log(self.log_as, acc if self.fraction else acc * 100, on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.3)


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


def fit(loaders, callback, tmp_path, module=None):
    pl.seed_everything(0, verbose=False)
    trainer = pl.Trainer(
        max_epochs=MAX_EPOCHS,
        val_check_interval=0.5,
        callbacks=[callback],
        logger=pl.loggers.CSVLogger(tmp_path, name="run"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module or DigitsMLP(), *loaders)
    return trainer


def test_stops_when_the_engine_converges_and_logs_the_estimate(loaders, tmp_path):
    callback = PEng4NNEarlyStopping("val_acc", num_classes=10)
    trainer = fit(loaders, callback, tmp_path)

    # Half-epoch validation gives the paper's E = 0.5 grid.
    assert [e for e, _ in callback.points] == [0.5 * (i + 1) for i in range(len(callback.points))]
    last = callback.decision
    assert last.stop and last.converged and last.reason.value == "converged"
    assert not any(d.stop for d in callback.decisions[:-1])  # stopped at the first converged point
    assert trainer.current_epoch < MAX_EPOCHS - 1
    assert callback.estimate == last.estimate
    assert 50 < callback.estimate < 100

    # The same points through the library policy give the same decisions.
    policy = make_policy("paper", num_classes=10)
    assert [policy.observe(e, a) for e, a in callback.points] == callback.decisions

    [metrics_csv] = tmp_path.glob("run/*/metrics.csv")
    logged = [float(r[ESTIMATE_ATTR]) for r in csv.DictReader(metrics_csv.open()) if r.get(ESTIMATE_ATTR)]
    assert logged == [pytest.approx(callback.estimate)]


def test_value_scale_reads_fractions(loaders, tmp_path):
    callback = PEng4NNEarlyStopping("acc", num_classes=10, value_scale=100)
    fit(loaders, callback, tmp_path, DigitsMLP(log_as="acc", fraction=True))
    accs = [a for _, a in callback.points]
    assert max(accs) > 50  # logged in [0, 1], seen in percent
    assert callback.decision.converged and callback.estimate > 50


def test_a_metric_never_logged_is_named(loaders, tmp_path):
    callback = PEng4NNEarlyStopping("val_accuracy")
    expected = "monitors 'val_accuracy', which was not logged; logged metrics: \\['val_acc'\\]"
    with pytest.raises(KeyError, match=expected):
        fit(loaders, callback, tmp_path)


def test_remote_callback_uses_a_service_session(api, loaders, tmp_path):
    from peng4nn.client import Client

    server = api()
    with Client(server.url) as client:
        callback = PEng4NNEarlyStopping("val_acc", num_classes=10, client=client, label="lightning-run")
        fit(loaders, callback, tmp_path)
        stored = callback.curve.get()
    assert callback.decision.converged
    policy = make_policy("paper", num_classes=10)
    assert [policy.observe(e, a) for e, a in callback.points] == callback.decisions
    assert stored["label"] == "lightning-run"
    assert [(p["epoch"], p["val_acc"]) for p in stored["points"]] == callback.points
    assert stored["final"]["estimate"] == callback.estimate
