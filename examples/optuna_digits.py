"""An Optuna search over small MLPs on the 8x8 digits, where PEng4NN's pruner makes the study one search.

Each trial trains its network half an epoch at a time and reports the validation accuracy (with
its learning rate) through `peng4nn.integrations.optuna.report`. The pruner ranks every trial
against the trials that finished before it: it stops a trial once it cannot reach the study's
top 20%, or once its final accuracy is known well enough. At the end the study's best is chosen
by the engine's estimate (`best_trial_by_estimate`), not by ``study.best_trial`` (which ignores
pruned trials), and the epochs saved are printed.

    python examples/optuna_digits.py                   # the search (about a minute on a laptop CPU)
    python examples/optuna_digits.py --verify          # then retrain every trial to e_max and check the crown
    python examples/optuna_digits.py --url http://127.0.0.1:8000   # decide on `peng4nn serve`

``--verify`` trains every trial's network again, with the same parameters and seed, for all e_max
epochs; the crowned trial must be among the 3 best by the accuracy they really reach (exit 1 if not).
"""

from __future__ import annotations

import argparse
import sys

import optuna
import torch
from sklearn.datasets import load_digits

from peng4nn.integrations.optuna import PEng4NNPruner, best_trial_by_estimate, ranked_trials, report

E, E_MAX = 0.5, 20.0


def load_data(seed: int = 0):
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return (x[perm[:1400]], y[perm[:1400]]), (x[perm[1400:]], y[perm[1400:]])


def train(params: dict, seed: int, train_set, val_set):
    """Yield (step, validation accuracy in percent, learning rate) every half epoch up to E_MAX."""
    (xt, yt), (xv, yv) = train_set, val_set
    torch.manual_seed(seed)
    width = params["width"]
    net = torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU(), torch.nn.Linear(width, 10))
    opt = torch.optim.SGD(net.parameters(), lr=params["lr"], momentum=0.9)
    half = len(xt) // 2
    order = torch.randperm(len(xt))
    for step in range(int(E_MAX / E)):  # step k is the validation after (k + 1) * E epochs
        if step % 2 == 0:
            order = torch.randperm(len(xt))
        part = order[:half] if step % 2 == 0 else order[half:]
        rate = opt.param_groups[0]["lr"]
        for i in range(0, len(part), 64):
            idx = part[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
        with torch.inference_mode():
            acc = (net(xv).argmax(1) == yv).float().mean().item() * 100
        yield step, acc, rate


def make_objective(train_set, val_set):
    def objective(trial: optuna.Trial) -> float:
        params = {"width": trial.suggest_int("width", 8, 128, log=True),
                  "lr": trial.suggest_float("lr", 1e-3, 0.5, log=True)}
        best = 0.0
        for step, acc, rate in train(params, trial.number, train_set, val_set):
            best = max(best, acc)
            report(trial, acc, step, lr=rate)
            trial.set_user_attr("epochs", (step + 1) * E)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return best  # trained to e_max: the best accuracy it reached

    return objective


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampler")
    parser.add_argument("--verify", action="store_true", help="retrain every trial to e_max and check the crown")
    parser.add_argument("--url", default=None, help="decide on this PEng4NN service instead of in-process")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    client = None
    if args.url:
        from peng4nn.client import Client

        client = Client(args.url)
    pruner = PEng4NNPruner(estimator={"E": E, "e_max": E_MAX}, num_classes=10, client=client)
    study = optuna.create_study(direction="maximize", pruner=pruner, sampler=optuna.samplers.TPESampler(seed=args.seed))
    data = load_data()
    study.optimize(make_objective(*data), n_trials=args.trials)

    truth = {}
    if args.verify:
        for t in study.trials:
            truth[t.number] = max(acc for _, acc, _ in train(t.params, t.number, *data))
    true_rank = {n: r + 1 for r, n in enumerate(sorted(truth, key=lambda n: -truth[n]))}

    print(f"{'rank':>4} {'trial':>5} {'width':>5} {'lr':>7} {'epochs':>6}  {'estimate':>8}  {'interval':>13}  reason"
          + ("           truth (rank)" if truth else ""))
    ranked = ranked_trials(study)
    for rank, (t, est) in enumerate(ranked, 1):
        interval = f"[{est.interval[0]:5.1f}, {est.interval[1]:5.1f}]" if est.interval else " " * 13
        line = (f"{rank:4d} {t.number:5d} {t.params['width']:5d} {t.params['lr']:7.4f} {t.user_attrs['epochs']:6.1f}  "
                f"{est.value:8.2f}  {interval}  {est.reason:18s}")
        print(line + (f"{truth[t.number]:6.2f} ({true_rank[t.number]})" if truth else ""))
    best = best_trial_by_estimate(study)
    trained = sum(t.user_attrs["epochs"] for t in study.trials)
    print(f"crowned: trial {best.number} (estimate {ranked[0][1].value:.2f}%); {trained:.0f} epochs trained of "
          f"{E_MAX * len(study.trials):.0f} without early stopping ({1 - trained / (E_MAX * len(study.trials)):.0%} "
          f"saved)")
    if not truth:
        return 0
    ok = true_rank[best.number] <= 3
    print(f"verify: trained to {E_MAX:g} epochs, trial {best.number} reaches {truth[best.number]:.2f}%, rank "
          f"{true_rank[best.number]} of {len(truth)} (the best reaches {max(truth.values()):.2f}%): "
          + ("in the true top 3" if ok else "NOT in the true top 3"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
