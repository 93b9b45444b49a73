"""Trainer throughput versus a minimal hand-written PyTorch loop, and the engine's share of each iteration.

Both sides train the same fixed CNN on the same device-resident tensors with the
same batch size, optimizer and E = 0.5 validation cadence, so the ratio isolates
what ``train_and_estimate`` adds: the event objects, the policy call (curve fit +
analyzer) and the bookkeeping. Runs alternate (trainer, raw, trainer, raw, ...)
so that load from other processes hits both sides alike; medians are reported.

    python bench/bench_trainer.py                       # CPU, MNIST-sized tensors
    python bench/bench_trainer.py --device cuda --shape 3,32,32 --n-train 50000 --n-val 10000 --e-max 4

Targets (issue 3): trainer >= 0.95 of the raw loop; engine < 1% of iteration wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from peng4nn.datasets import DatasetInfo, DatasetTensors, iteration_train_size
from peng4nn.model import build_model
from peng4nn.policies import make_policy
from peng4nn.spec import ArchSpec
from peng4nn.train import MIN_EVAL_BATCH, make_optimizer, train_and_estimate


def fixed_cnn(batch_size: int) -> ArchSpec:
    return ArchSpec.parse({
        "schema": "peng4nn.arch/v1",
        "layers": [
            {"type": "conv2d", "filters": 8, "kernel": 3, "padding": 1}, {"type": "relu"},
            {"type": "maxpool2d", "kernel": 2},
            {"type": "conv2d", "filters": 16, "kernel": 3, "padding": 1}, {"type": "relu"},
            {"type": "maxpool2d", "kernel": 2},
            {"type": "flatten"},
            {"type": "linear", "units": 64}, {"type": "relu"},
            {"type": "linear", "units": "num_classes"},
        ],
        "training": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": batch_size, "seed": 0},
    })


def synthetic_tensors(shape, n_train, n_val, classes, batch_size, device) -> DatasetTensors:
    """Learnable random data (a class-dependent offset on noise), already on the device."""
    g = torch.Generator().manual_seed(0)
    kept, steps = iteration_train_size(n_train, 0.5, batch_size)

    def make(n):
        y = torch.randint(0, classes, (n,), generator=g)
        x = torch.randn(n, *shape, generator=g) + 0.5 * (y.float() / classes).view(-1, *[1] * len(shape))
        return x.to(device), y.to(device)

    x_train, y_train = make(kept)
    x_val, y_val = make(n_val)
    if len(shape) == 3:  # as load_dataset does
        x_train = x_train.contiguous(memory_format=torch.channels_last)
        x_val = x_val.contiguous(memory_format=torch.channels_last)
    info = DatasetInfo("synthetic", tuple(shape), classes, "bench tensors")
    return DatasetTensors(info, x_train, y_train, x_val, y_val, 0.5, batch_size, steps)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def raw_loop(spec: ArchSpec, data: DatasetTensors, iterations: int, device: torch.device) -> float:
    """The obvious hand-written loop over the same tensors; returns wall seconds (model build included,
    as in the trainer's timing)."""
    sync(device)
    start = time.perf_counter()
    torch.manual_seed(spec.training.seed)
    model = build_model(spec, data.info.input_shape, data.info.num_classes).to(device)
    if data.x_train.ndim == 4:  # what a careful hand-written loop does too
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model.parameters(), spec.training)
    gen = torch.Generator(device=device).manual_seed(0)
    n, b, steps = len(data.x_train), data.batch_size, data.steps_per_iteration
    use_bf16 = device.type == "cuda"
    eval_batch = max(MIN_EVAL_BATCH, b)
    perm = torch.randperm(n, generator=gen, device=device)
    pos = 0
    for _ in range(iterations):
        model.train()
        for _ in range(steps):
            if pos >= n:
                perm, pos = torch.randperm(n, generator=gen, device=device), 0
            idx = perm[pos:pos + b]
            pos += b
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
                loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        correct = torch.zeros((), dtype=torch.long, device=device)
        with torch.inference_mode():
            for s in range(0, len(data.x_val), eval_batch):
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
                    logits = model(data.x_val[s:s + eval_batch])
                correct += (logits.argmax(1) == data.y_val[s:s + eval_batch]).sum()
        _ = int(correct)  # the trainer syncs once per iteration too (it must hand the accuracy to the engine)
    sync(device)
    return time.perf_counter() - start


def trainer_run(spec: ArchSpec, data: DatasetTensors, e_max: float, device: torch.device) -> tuple[float, float, float]:
    """(wall s, summed iteration s, summed engine s) of ``train_and_estimate`` in shadow mode (never stops early)."""
    policy = make_policy("paper", estimator={"E": 0.5, "e_max": e_max}, num_classes=data.info.num_classes)
    sync(device)
    start = time.perf_counter()
    result = train_and_estimate(spec, data, policy=policy, shadow=True, e_max=e_max)
    sync(device)
    wall = time.perf_counter() - start
    return wall, sum(e.iteration_s for e in result.events), sum(e.engine_s for e in result.events)


def compare_memory_formats(models: int, shape: tuple[int, ...], batch_size: int, device: torch.device) -> None:
    """Time one SGD step of random CPU-preset CNNs in NCHW and in channels_last, interleaved."""
    import random

    from peng4nn.search_space import CPU_RANGES, random_cnn

    rng = random.Random(11)
    formats = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}
    totals = dict.fromkeys(formats, 0.0)
    for k in range(models):
        spec = random_cnn(rng, shape, 10, **CPU_RANGES)
        row = {}
        for name, fmt in formats.items():
            torch.manual_seed(0)
            model = build_model(spec, shape, 10).to(device=device, memory_format=fmt)
            opt = make_optimizer(model.parameters(), spec.training)
            x = torch.randn(batch_size, *shape, device=device).contiguous(memory_format=fmt)
            y = torch.randint(0, 10, (batch_size,), device=device)

            def step():
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            for _ in range(3):
                step()
            sync(device)
            start = time.perf_counter()
            for _ in range(10):
                step()
            sync(device)
            row[name] = (time.perf_counter() - start) / 10 * 1000
            totals[name] += row[name]
        print(f"  model {k}: " + "  ".join(f"{n} {ms:6.1f} ms/step" for n, ms in row.items()))
    print(f"total over {models} models: " + "  ".join(f"{n} {ms:.0f} ms" for n, ms in totals.items())
          + f"   channels_last / NCHW = {totals['channels_last'] / totals['NCHW']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape", default="1,28,28", help="sample shape C,H,W (default MNIST-sized)")
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--n-val", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--e-max", type=float, default=2.0, help="epochs per run (validated every 0.5)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--formats", type=int, default=0, metavar="N",
                        help="instead: time a step of N random CPU-preset CNNs in NCHW vs channels_last")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shape = tuple(int(s) for s in args.shape.split(","))
    if args.formats:
        compare_memory_formats(args.formats, shape, args.batch_size, device)
        return
    spec = fixed_cnn(args.batch_size)
    data = synthetic_tensors(shape, args.n_train, args.n_val, args.classes, args.batch_size, device)
    iterations = int(round(args.e_max / 0.5))
    samples = iterations * data.steps_per_iteration * data.batch_size

    raw_loop(spec, data, 1, device)  # warm-up (allocator, kernels, lazy init)
    trainer_run(spec, data, 0.5, device)
    trainer_walls, raw_walls, engine_shares = [], [], []
    for _ in range(args.repeats):
        wall, iter_s, engine_s = trainer_run(spec, data, args.e_max, device)
        trainer_walls.append(wall)
        engine_shares.append(engine_s / iter_s)
        raw_walls.append(raw_loop(spec, data, iterations, device))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    pair_ratios = [r / t for t, r in zip(trainer_walls, raw_walls)]
    trainer_rate = samples / statistics.median(trainer_walls)
    raw_rate = samples / statistics.median(raw_walls)
    report = {
        "device": name, "shape": list(shape), "train_samples_per_run": samples, "batch_size": args.batch_size,
        "repeats": args.repeats, "trainer_samples_per_s": round(trainer_rate, 1),
        "raw_loop_samples_per_s": round(raw_rate, 1), "throughput_ratio": round(trainer_rate / raw_rate, 3),
        "median_pair_ratio": round(statistics.median(pair_ratios), 3),
        "engine_share_of_iteration": round(statistics.median(engine_shares), 5),
        "trainer_walls_s": [round(w, 3) for w in trainer_walls], "raw_walls_s": [round(w, 3) for w in raw_walls],
    }
    print(f"device {name}; {samples} training samples per run (+ validation every 0.5 epochs), "
          f"median of {args.repeats}")
    print(f"  raw PyTorch loop   {raw_rate:10.1f} samples/s")
    print(f"  train_and_estimate {trainer_rate:10.1f} samples/s   ratio {trainer_rate / raw_rate:.3f} (target >= 0.95)")
    print(f"  median of the per-pair ratios (raw wall / trainer wall, run back to back) "
          f"{statistics.median(pair_ratios):.3f}")
    print(f"  engine share of iteration wall time {100 * statistics.median(engine_shares):.3f}% (target < 1%)")
    print(json.dumps(report))


if __name__ == "__main__":
    np.random.seed(0)
    main()
