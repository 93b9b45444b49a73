"""An Optuna search over small MLPs on the 8x8 digits, pruned by PEng4NN.

Each trial trains its network half an epoch at a time and reports the validation accuracy;
`PEng4NNPruner` prunes the trial once the engine's prediction of its final accuracy is
stable, and the trial is scored by that prediction. At the end it prints, per trial, the
epochs trained and the predicted or reached accuracy, and the epochs saved against
training every trial to e_max.

    python examples/optuna_digits.py                            # in-process engine
    python examples/optuna_digits.py --url http://127.0.0.1:8000  # decide on `peng4nn serve`
"""

from __future__ import annotations

import argparse

import optuna
import torch
from sklearn.datasets import load_digits

from peng4nn.integrations.optuna import PEng4NNPruner, estimate_of

E, E_MAX = 0.5, 20.0


def load_data(seed: int = 0):
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return (x[perm[:1400]], y[perm[:1400]]), (x[perm[1400:]], y[perm[1400:]])


def make_objective(train, val):
    (xt, yt), (xv, yv) = train, val
    half = len(xt) // 2

    def objective(trial: optuna.Trial) -> float:
        torch.manual_seed(trial.number)
        width = trial.suggest_int("width", 8, 128, log=True)
        lr = trial.suggest_float("lr", 1e-3, 0.5, log=True)
        net = torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU(), torch.nn.Linear(width, 10))
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
        epoch_order = torch.randperm(len(xt))
        for step in range(int(E_MAX / E)):  # step k is the validation after (k + 1) * E epochs
            if step % 2 == 0:
                epoch_order = torch.randperm(len(xt))
            part = epoch_order[:half] if step % 2 == 0 else epoch_order[half:]
            for i in range(0, len(part), 64):
                idx = part[i:i + 64]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
                opt.step()
            with torch.inference_mode():
                acc = (net(xv).argmax(1) == yv).float().mean().item() * 100
            trial.report(acc, step)
            trial.set_user_attr("epochs", (step + 1) * E)
            if trial.should_prune():
                return estimate_of(trial)  # scored by the predicted final accuracy
        return acc

    return objective


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--url", default=None, help="decide on this PEng4NN service instead of in-process")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    client = None
    if args.url:
        from peng4nn.client import Client

        client = Client(args.url)
    pruner = PEng4NNPruner({"E": E, "e_max": E_MAX}, num_classes=10, client=client)
    study = optuna.create_study(direction="maximize", pruner=pruner, sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(make_objective(*load_data()), n_trials=args.trials)

    print(f"{'trial':>5} {'width':>5} {'lr':>7} {'epochs':>6}  accuracy")
    for t in study.trials:
        kind = "predicted" if t.user_attrs.get("peng4nn_reason") == "converged" else "reached"
        print(f"{t.number:5d} {t.params['width']:5d} {t.params['lr']:7.4f} {t.user_attrs['epochs']:6.1f}  "
              f"{t.value:6.2f} ({kind})")
    trained = sum(t.user_attrs["epochs"] for t in study.trials)
    print(f"best: trial {study.best_trial.number} ({study.best_value:.2f}%); "
          f"{trained:.0f} epochs trained of {E_MAX * len(study.trials):.0f} without early stopping")


if __name__ == "__main__":
    main()
