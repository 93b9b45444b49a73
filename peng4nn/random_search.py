"""A small random-search NAS against a running ``peng4nn serve``.

It submits one generation of random CNNs on the digits dataset in one batch,
streams every network's predictions as they arrive, and prints the top-k by
predicted accuracy next to what each network actually reached. Jobs run in
shadow mode (trained to e_max anyway) so that the "actual" column exists;
a real search would leave shadow off and save the epochs after each stop.

    peng4nn demo                        # starts an embedded service and runs this search
    peng4nn serve                       # or: terminal 1
    python examples/random_search.py    # terminal 2 (zero configuration)

It lives in the package (not only under examples/) so that `peng4nn demo` can run it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from peng4nn import defaults
from peng4nn.client import DEFAULT_URL, ApiError, AsyncClient
from peng4nn.datasets import dataset_info
from peng4nn.search_space import CPU_RANGES, random_cnn


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help=f"service URL (default: $PENG4NN_URL or {DEFAULT_URL})")
    parser.add_argument("--token", default=None, help="bearer token (default: $PENG4NN_API_TOKEN)")
    parser.add_argument("--population", type=int, default=8, help="networks in the generation (default: 8)")
    parser.add_argument("--top-k", type=int, default=3, help="how many to report (default: 3)")
    parser.add_argument("--e-max", type=float, default=10.0, help="epochs each network may train (default: 10)")
    parser.add_argument("--dataset", default="digits", help="dataset name (default: digits)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the architecture draws (default: 0)")
    parser.add_argument("--policy", default=defaults.LONE_POLICY,
                        help="stopping policy of every job: paper, menndl, patience, fixed, adaptive "
                             f"(default: {defaults.LONE_POLICY})")
    args = parser.parse_args(argv)
    if args.population < 1 or not 1 <= args.top_k <= args.population:
        parser.error("need population >= 1 and 1 <= top-k <= population")
    return args


async def follow(client: AsyncClient, job_id: str, name: str) -> None:
    """Print each prediction of one job as its iteration event arrives."""
    async for event in client.stream(job_id):
        if event.event == "iteration":
            it = event.typed
            pred = f"predicts {it.prediction:5.1f}%" if it.prediction is not None else "no fit yet      "
            flag = "  <- converged" if it.converged else ""
            print(f"{name}  epoch {it.epoch:4.1f}  val_acc {it.val_acc:5.1f}%  {pred}{flag}", flush=True)
        elif event.event == "status" and event.data["status"] not in ("queued", "running"):
            print(f"{name}  {event.data['status']}", flush=True)


async def search(args: argparse.Namespace) -> int:
    info = dataset_info(args.dataset)
    specs = [random_cnn(args.seed * 1000 + i, info.input_shape, info.num_classes, **CPU_RANGES)
             for i in range(args.population)]
    async with AsyncClient(args.url, args.token) as client:
        jobs = await client.submit_batch([
            {"architecture": spec.to_dict(), "dataset": args.dataset, "estimator": {"e_max": args.e_max},
             "policy": args.policy, "shadow": True, "search": f"random-search-{args.seed}", "label": f"net{i}"}
            for i, spec in enumerate(specs)
        ])
        print(f"submitted {len(jobs)} networks to {client.base_url}; streaming predictions...", flush=True)
        await asyncio.gather(*(follow(client, job.id, f"net{i}") for i, job in enumerate(jobs)))
        finished = [await client.get(job.id) for job in jobs]

    rows = []
    for i, job in enumerate(finished):
        result = job.result
        if job.status.value in ("failed", "cancelled") or result is None:
            print(f"net{i}: {job.status.value}: {job.error}")
            continue
        stopped = bool(result.shadow_converged)
        predicted = result.shadow_estimate if stopped else result.estimate
        stop = result.shadow_stop_epoch if stopped else result.stop_epoch
        rows.append((f"net{i}" + ("" if stopped else "*"), predicted, stop, result.final_val_acc, job.params))
    by_actual = sorted(rows, key=lambda r: -(r[3] or 0))
    actual_rank = {row[0]: rank for rank, row in enumerate(by_actual, 1)}
    ranked = sorted(rows, key=lambda r: -(r[1] if r[1] is not None else -1))

    print(f"\ntop {args.top_k} of {len(rows)} by predicted accuracy (engine's estimate vs accuracy at epoch {args.e_max:g}):")
    print(f"{'rank':>4}  {'net':<6} {'predicted':>9}  {'at epoch':>8}  {'actual':>7}  {'actual rank':>11}  {'params':>7}")
    for rank, (name, predicted, stop, actual, params) in enumerate(ranked[: args.top_k], 1):
        pred = f"{predicted:8.1f}%" if predicted is not None else "     n/a "
        stop_text = f"{stop:8.1f}" if stop is not None else "     n/a"
        print(f"{rank:>4}  {name:<6} {pred}  {stop_text}  {actual:6.1f}%  {actual_rank[name]:>11}  {params:>7}")
    if any(row[0].endswith("*") for row in ranked[: args.top_k]):
        print("* the engine did not converge on this network before e_max: its estimate is the best accuracy seen")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(search(args))
    except ApiError as exc:
        hint = " (is `peng4nn serve` running?)" if exc.code == "unreachable" else ""
        print(f"random_search: {exc.detail}{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
