"""One PyTorch Lightning run on the 8x8 digits, stopped by PEng4NN; resumable from its last checkpoint.

    python examples/lightning_digits.py                 # trains until the engine's estimate is known
    python examples/lightning_digits.py --resume        # goes on from runs/lightning-digits/last.ckpt

Validation every half epoch gives the paper's E = 0.5; the learning rate (halved every 5 epochs)
is read from the optimizer and passed on; the estimate is logged at every validation.
"""

from __future__ import annotations

import argparse

import lightning.pytorch as pl
import torch
from sklearn.datasets import load_digits

from peng4nn.integrations.lightning import PEng4NNEarlyStopping

OUT = "runs/lightning-digits"


class DigitsMLP(pl.LightningModule):
    def __init__(self, width: int = 32, lr: float = 0.1):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU(), torch.nn.Linear(width, 10))
        self.lr = lr

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_acc", (self.net(x).argmax(1) == y).float().mean() * 100)

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 5, gamma=0.5)}


def loaders():
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    data = lambda idx: torch.utils.data.TensorDataset(x[idx], y[idx])  # noqa: E731
    return (torch.utils.data.DataLoader(data(perm[:1400]), batch_size=64, shuffle=True),
            torch.utils.data.DataLoader(data(perm[1400:]), batch_size=500))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--resume", action="store_true", help=f"resume from {OUT}/last.ckpt")
    args = parser.parse_args()
    pl.seed_everything(0, verbose=False)
    stopper = PEng4NNEarlyStopping("val_acc", num_classes=10, estimator={"E": 0.5, "e_max": args.max_epochs})
    trainer = pl.Trainer(max_epochs=args.max_epochs, val_check_interval=0.5, accelerator="cpu", logger=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[stopper, pl.callbacks.ModelCheckpoint(dirpath=OUT, save_last=True, save_top_k=0)])
    trainer.fit(DigitsMLP(), *loaders(), ckpt_path=f"{OUT}/last.ckpt" if args.resume else None)
    for epoch, acc, lr in stopper.points:
        d = next(d for d in stopper.decisions if d.epoch == epoch)
        pred = "" if d.prediction is None else f"  prediction {d.prediction:6.2f}"
        stop = f"  STOP ({d.reason.value})" if d.stop else ""
        print(f"epoch {epoch:4.1f}  val_acc {acc:6.2f}  lr {lr:.4f}{pred}{stop}")
    d = stopper.decision
    print(f"{d.reason.value} at epoch {d.epoch:g} of {args.max_epochs}: estimate "
          + (f"{stopper.estimate:.2f}%" if stopper.estimate is not None else "none"))


if __name__ == "__main__":
    main()
