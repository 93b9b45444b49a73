"""A Ray Tune search over small MLPs on the 8x8 digits, where PEng4NN's stopper makes the experiment one search.

    python examples/ray_tune_digits.py [--trials 16]

Each trial reports its validation accuracy and learning rate once per epoch (E = 1, e_max = 12). The
stopper ranks every trial against the trials that finished before it and stops it once it cannot
reach the top 20% or its final accuracy is known; the best is chosen by the engine's estimate.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray  # noqa: E402
from ray import tune  # noqa: E402

from peng4nn.integrations.ray import PEng4NNStopper  # noqa: E402

E_MAX = 12


def trainable(config):
    import torch
    from sklearn.datasets import load_digits

    torch.set_num_threads(1)
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    (xt, yt), (xv, yv) = (x[perm[:1400]], y[perm[:1400]]), (x[perm[1400:]], y[perm[1400:]])
    torch.manual_seed(config["seed"])
    width = config["width"]
    net = torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU(), torch.nn.Linear(width, 10))
    opt = torch.optim.SGD(net.parameters(), lr=config["lr"], momentum=0.9)
    for _ in range(E_MAX):
        for idx in torch.randperm(len(xt)).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
        with torch.inference_mode():
            acc = (net(xv).argmax(1) == yv).float().mean().item() * 100
        tune.report({"val_acc": acc, "lr": opt.param_groups[0]["lr"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    args = parser.parse_args()
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    stopper = PEng4NNStopper("val_acc", estimator={"E": 1, "e_max": E_MAX}, num_classes=10, warmup_models=4)
    space = {"width": tune.lograndint(8, 128), "lr": tune.loguniform(1e-3, 0.5), "seed": tune.randint(0, 10_000)}
    results = tune.Tuner(trainable, param_space=space,
                         tune_config=tune.TuneConfig(num_samples=args.trials, reuse_actors=True,
                                                     search_alg=tune.search.BasicVariantGenerator(random_state=0)),
                         run_config=tune.RunConfig(stop=stopper, verbose=0,
                                                   storage_path=os.path.abspath("runs/ray"))).fit()
    by_id = {r.metrics["trial_id"]: r for r in results}
    print(f"{'trial':>10} {'width':>5} {'lr':>7} {'epochs':>6} {'estimate':>8}  reason")
    for trial_id, est in stopper.ranked():
        r = by_id[trial_id]
        print(f"{trial_id:>10} {r.config['width']:5d} {r.config['lr']:7.4f} {r.metrics['training_iteration']:6d} "
              f"{est.value:8.2f}  {est.reason}")
    trained = sum(r.metrics["training_iteration"] for r in results)
    print(f"best: trial {stopper.best_trial_id()}; {trained} epochs trained of {E_MAX * len(by_id)} "
          f"({1 - trained / (E_MAX * len(by_id)):.0%} saved)")
    if started:
        ray.shutdown()


if __name__ == "__main__":
    main()
