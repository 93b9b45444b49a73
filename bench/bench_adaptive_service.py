"""Observe-mode post latency of `adaptive` sessions in a search versus `paper` sessions, side by side.

One client posts a generated search's curves through the real API (uvicorn, embedded Redis), one
network after another, one point per post until the engine says stop. `adaptive` sessions carry a
`search`, so each post also reads the search's new finished networks from Redis (an LRANGE) and a
stop appends the network; `paper` sessions are the obvious alternative. What is timed is the whole
HTTP round trip as the client sees it, so it includes the framework and Redis, not only the policy.

Run: python bench/bench_adaptive_service.py [--models 60] [--population nas-like]
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from dataclasses import replace

import httpx
import numpy as np

from peng4nn.synthetic_curves import POPULATIONS, generate_population


def serve(redis_url: str):
    import uvicorn

    from peng4nn_service.app import create_app
    from peng4nn_store.embedded import free_port
    from peng4nn_store.settings import Settings

    port = free_port()
    app = create_app(Settings(redis_url=redis_url, quota_requests_per_s=0))  # measure the policy, not the quota
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=3))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return server, f"http://127.0.0.1:{port}"


def run_search(http: httpx.Client, curves, body: dict) -> tuple[np.ndarray, int]:
    """Post every network's points one by one until it stops; per-post latencies (s) and points posted."""
    latencies = []
    for curve in curves:
        curve_id = http.post("/v1/curves", json=body).json()["id"]
        for e, v in zip(curve.epochs, curve.val_acc):
            t0 = time.perf_counter()
            answer = http.post(f"/v1/curves/{curve_id}/observations",
                               json={"points": [{"epoch": float(e), "val_acc": float(v)}]})
            latencies.append(time.perf_counter() - t0)
            if answer.json()["stop"]:
                break
        else:
            http.delete(f"/v1/curves/{curve_id}")
    return np.array(latencies), len(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=60)
    parser.add_argument("--population", default="nas-like", choices=sorted(POPULATIONS))
    args = parser.parse_args()
    curves = generate_population(replace(POPULATIONS[args.population], n_models=args.models), seed=0)

    from peng4nn_store.embedded import EmbeddedRedis

    with EmbeddedRedis() as redis:
        server, url = serve(redis.url)
        with httpx.Client(base_url=url, timeout=30) as http:
            # Warm the process up (the first adaptive session imports scipy.stats, ~0.8 s, in a thread).
            for policy in ("paper", "adaptive"):
                run_search(http, curves[:3], {"policy": policy, "num_classes": 10})
            rows = []
            for name, body in (("paper", {"policy": "paper", "num_classes": 10}),
                               ("adaptive", {"policy": "adaptive", "num_classes": 10,
                                             "search": f"bench-{uuid.uuid4().hex[:6]}"})):
                t0 = time.perf_counter()
                lat, n = run_search(http, curves, body)
                rows.append((name, n, time.perf_counter() - t0, lat))
        server.should_exit = True
    print(f"{args.models} networks ({args.population}), one point per post, one client, sequential")
    print(f"{'policy':<9} {'posts':>6} {'wall s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    for name, n, wall, lat in rows:
        p50, p95, p99 = np.percentile(lat, [50, 95, 99]) * 1e3
        print(f"{name:<9} {n:>6} {wall:>7.2f} {p50:>7.2f} {p95:>7.2f} {p99:>7.2f} {lat.max() * 1e3:>7.1f}")
    (_, _, _, paper), (_, _, _, adaptive) = rows
    print(f"p50 ratio adaptive/paper: {np.median(adaptive) / np.median(paper):.2f}")


if __name__ == "__main__":
    main()
