"""Soak: `peng4nn serve` under a mixed load for minutes; throughput, p99, memory and lost events.

Usage: python bench/bench_soak.py [--minutes 10] [--sessions 16] [--post-rate 100] [--job-every 2.0]

One `peng4nn serve --workers 1` (embedded Redis, one CPU worker, the product's default quotas
on) with two tokens, driven from this process at once by:
  * a job submitter: one tiny digits job every ``--job-every`` s, alternating tokens (every tenth
    submission a batch of 3), each followed over its SSE stream from the first event to ``result``
    (reconnecting with ``Last-Event-ID`` if the stream drops); when the result arrives the
    received event ids are compared with the job's Redis stream (XRANGE): lost or repeated
    events are counted (they must be 0);
  * ``--sessions`` observe-mode clients posting synthetic curves point by point (together about
    ``--post-rate`` posts/s), opening a new session when a curve stops, deleting half of them
    and leaving the others to expire;
  * a poller reading job status and job lists.
Every 10 s it samples the API process's RSS, the worker's RSS and Redis ``used_memory``.
Retention and the observe cache are set small so the run reaches its steady state within
minutes: ended jobs beyond 100 are deleted by the maintenance pass (PENG4NN_RETAIN_ENDED_JOBS),
sessions expire 60 s after their last post (PENG4NN_CURVE_TTL_S) and each API process keeps at
most 1,000 session policies (PENG4NN_CURVE_CACHE_SIZE); everything else is the default configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKENS = ("soak-token-a", "soak-token-b")
TINY_CNN = {
    "schema": "peng4nn.arch/v1",
    "layers": [{"type": "conv2d", "filters": 8, "kernel": 3, "padding": 1}, {"type": "relu"},
               {"type": "maxpool2d", "kernel": 2}, {"type": "flatten"}, {"type": "linear", "units": "num_classes"}],
    "training": {"optimizer": "adam", "lr": 0.01, "batch_size": 64},
}
SAMPLE_S = 10.0


def job(e_max: float) -> dict:
    return {"architecture": TINY_CNN, "dataset": "digits", "estimator": {"e_max": e_max}}


class Stats:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: dict[str, Counter] = defaultdict(Counter)
        self.events_received = self.events_lost = self.events_repeated = self.streams_checked = 0
        self.reconnects = 0
        self.job_outcomes: Counter = Counter()
        self.samples: list[dict] = []

    def record(self, op: str, seconds: float, status: int) -> None:
        self.latency[op].append(seconds)
        self.status[op][status] += 1


async def timed(stats: Stats, op: str, coro) -> httpx.Response | None:
    t0 = time.perf_counter()
    try:
        response = await coro
    except httpx.HTTPError as exc:
        stats.record(op, time.perf_counter() - t0, 0)
        stats.status[op][type(exc).__name__] += 1
        return None
    stats.record(op, time.perf_counter() - t0, response.status_code)
    return response


# --------------------------------------------------------------------------------------------- load


async def follow(http: httpx.AsyncClient, stats: Stats, token: str, job_id: str, redis) -> None:
    """Read a job's stream to its result (resuming on drops) and compare with what Redis holds."""
    seen: list[str] = []
    headers = {"Authorization": f"Bearer {token}"}
    done = False
    while not done:
        if seen:
            headers["Last-Event-ID"] = seen[-1]
            stats.reconnects += 1
        try:
            async with http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=None) as resp:
                stats.status["GET events (open)"][resp.status_code] += 1
                if resp.status_code == 204:
                    break
                if resp.status_code != 200:
                    await asyncio.sleep(1.0)
                    continue
                event = None
                async for line in resp.aiter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("id: "):
                        seen.append(line[4:])
                        if event == "result":
                            done = True
                            break
        except httpx.HTTPError:
            await asyncio.sleep(0.5)
    stored = [entry_id for entry_id, _ in await asyncio.to_thread(redis.xrange, f"peng4nn:job:{job_id}:events")]
    stats.events_received += len(seen)
    stats.events_repeated += len(seen) - len(set(seen))
    stats.events_lost += len(set(stored) - set(seen))
    stats.streams_checked += 1
    record = await asyncio.to_thread(redis.hget, f"peng4nn:job:{job_id}", "status")
    stats.job_outcomes[record or "expired"] += 1


async def submitter(http, stats, stop: asyncio.Event, every: float, redis, followers: list) -> None:
    n = 0
    while not stop.is_set():
        token = TOKENS[n % 2]
        headers = {"Authorization": f"Bearer {token}"}
        if n % 10 == 9:
            resp = await timed(stats, "POST /v1/jobs/batch (3)", http.post(
                "/v1/jobs/batch", json={"jobs": [job(1.0)] * 3}, headers=headers))
            ids = [j["id"] for j in resp.json()["data"]] if resp is not None and resp.status_code == 202 else []
        else:
            resp = await timed(stats, "POST /v1/jobs", http.post("/v1/jobs", json=job(random.choice([1.0, 1.5, 2.0])),
                                                                 headers=headers))
            ids = [resp.json()["id"]] if resp is not None and resp.status_code == 202 else []
        for job_id in ids:
            followers.append(asyncio.create_task(follow(http, stats, token, job_id, redis)))
        n += 1
        await asyncio.sleep(every)


def synthetic_curve(rng: np.random.Generator) -> list[tuple[float, float]]:
    top, rate = rng.uniform(40, 95), rng.uniform(0.1, 0.6)
    epochs = np.arange(1, 41) * 0.5
    acc = top - (top - 10) * np.exp(-rate * epochs) + rng.normal(0, 0.8, len(epochs))
    return [(float(e), float(np.clip(a, 0, 100))) for e, a in zip(epochs, acc)]


async def observer(http, stats, stop: asyncio.Event, index: int, interval: float) -> None:
    rng = np.random.default_rng(index)
    token = TOKENS[index % 2]
    headers = {"Authorization": f"Bearer {token}"}
    n = 0
    while not stop.is_set():
        resp = await timed(stats, "POST /v1/curves", http.post("/v1/curves", json={"num_classes": 10},
                                                                headers=headers))
        if resp is None or resp.status_code != 201:
            await asyncio.sleep(1.0)
            continue
        curve_id = resp.json()["id"]
        for epoch, acc in synthetic_curve(rng):
            if stop.is_set():
                return
            resp = await timed(stats, "POST /v1/curves/{id}/observations", http.post(
                f"/v1/curves/{curve_id}/observations", json={"points": [{"epoch": epoch, "val_acc": acc}]},
                headers=headers))
            await asyncio.sleep(interval * rng.uniform(0.5, 1.5))
            if resp is not None and resp.status_code == 200 and resp.json()["stop"]:
                break
        if n % 2 == 0:
            await timed(stats, "DELETE /v1/curves/{id}", http.delete(f"/v1/curves/{curve_id}", headers=headers))
        n += 1


async def poller(http, stats, stop: asyncio.Event) -> None:
    while not stop.is_set():
        for token in TOKENS:
            headers = {"Authorization": f"Bearer {token}"}
            resp = await timed(stats, "GET /v1/jobs", http.get("/v1/jobs", params={"limit": 20}, headers=headers))
            if resp is not None and resp.status_code == 200:
                for item in resp.json()["data"][:5]:
                    await timed(stats, "GET /v1/jobs/{id}", http.get(f"/v1/jobs/{item['id']}", headers=headers))
        await asyncio.sleep(0.5)


async def sampler(stats: Stats, stop: asyncio.Event, serve_pid: int, redis, started: float) -> None:
    while True:
        memory = await asyncio.to_thread(redis.info, "memory")
        stats.samples.append({"t": time.monotonic() - started, "api_rss_mb": rss_mb(serve_pid),
                              "worker_rss_mb": sum(rss_mb(p) for p in children(serve_pid, b"-m\x00worker")),
                              "redis_used_mb": memory["used_memory"] / 2**20,
                              "redis_rss_mb": memory["used_memory_rss"] / 2**20,
                              "redis_keys": await asyncio.to_thread(redis.dbsize)})
        if stop.is_set():
            return
        try:
            await asyncio.wait_for(stop.wait(), SAMPLE_S)
        except TimeoutError:
            pass


# --------------------------------------------------------------------------------------------- processes


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def children(pid: int, marker: bytes) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if ppid == pid and marker in cmd:
                found.append(int(entry.name))
    return found


def start_serve(port: int, password: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PENG4NN_REDIS_URL")}
    env.update(PYTHONPATH=str(ROOT), PENG4NN_API_TOKENS=",".join(TOKENS), PENG4NN_REDIS_PASSWORD=password,
               PENG4NN_RETAIN_ENDED_JOBS="100", PENG4NN_CURVE_TTL_S="60", PENG4NN_CURVE_CACHE_SIZE="1000")
    proc = subprocess.Popen([sys.executable, "-m", "peng4nn", "serve", "--port", str(port), "--workers", "1",
                             "--log-level", "error"], env=env, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    proc.banner = proc.stderr.readline()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"peng4nn serve exited with code {proc.returncode}: {proc.banner}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("peng4nn serve did not become healthy (with its worker) within 90 s")


# --------------------------------------------------------------------------------------------- report


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def report(stats: Stats, seconds: float, load_before, load_after) -> None:
    print(f"\nsoak: {seconds / 60:.1f} min; load average before {load_before}, after {load_after}")
    print(f"{'operation':<36} {'count':>7} {'per s':>7} {'p50 ms':>8} {'p99 ms':>8}  statuses")
    for op, values in sorted(stats.latency.items()):
        ms = [v * 1e3 for v in values]
        codes = " ".join(f"{k}:{v}" for k, v in sorted(stats.status[op].items(), key=lambda kv: str(kv[0])))
        print(f"{op:<36} {len(values):>7} {len(values) / seconds:>7.1f} {pct(ms, 50):>8.2f} {pct(ms, 99):>8.2f}  "
              f"{codes}")
    opened = " ".join(f"{k}:{v}" for k, v in sorted(stats.status["GET events (open)"].items()))
    print(f"event streams: {stats.streams_checked} followed to their result ({opened}), "
          f"{stats.events_received} events received, {stats.reconnects} reconnects; "
          f"lost {stats.events_lost}, repeated {stats.events_repeated}")
    print(f"jobs ended: {dict(stats.job_outcomes)}")
    print(f"{'t (s)':>6} {'API RSS MB':>11} {'worker RSS MB':>14} {'Redis used MB':>14} {'Redis RSS MB':>13} "
          f"{'Redis keys':>11}")
    for s in stats.samples[:: max(1, len(stats.samples) // 12)] + stats.samples[-1:]:
        print(f"{s['t']:>6.0f} {s['api_rss_mb']:>11.1f} {s['worker_rss_mb']:>14.1f} {s['redis_used_mb']:>14.2f} "
              f"{s['redis_rss_mb']:>13.1f} {s['redis_keys']:>11}")
    half = stats.samples[len(stats.samples) // 2:]
    for key in ("api_rss_mb", "redis_used_mb"):
        values = [s[key] for s in half]
        print(f"second half, {key}: min {min(values):.2f}, max {max(values):.2f}, last {values[-1]:.2f}")


async def run(args, port: int, serve_pid: int, redis) -> Stats:
    stats, stop = Stats(), asyncio.Event()
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30) as http:
        followers: list[asyncio.Task] = []
        interval = args.sessions / args.post_rate
        tasks = [asyncio.create_task(submitter(http, stats, stop, args.job_every, redis, followers)),
                 asyncio.create_task(poller(http, stats, stop)),
                 asyncio.create_task(sampler(stats, stop, serve_pid, redis, started)),
                 *(asyncio.create_task(observer(http, stats, stop, i, interval)) for i in range(args.sessions))]
        await asyncio.sleep(args.minutes * 60)
        stop.set()
        await asyncio.gather(*tasks)
        await asyncio.wait_for(asyncio.gather(*followers), 300)  # the last jobs finish and their streams end
    return stats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--sessions", type=int, default=16, help="concurrent observe-mode clients")
    parser.add_argument("--post-rate", type=float, default=100.0, help="observation posts per second, all together")
    parser.add_argument("--job-every", type=float, default=2.0, help="seconds between job submissions")
    args = parser.parse_args(argv)
    from redis import Redis

    from peng4nn_store.embedded import free_port

    port, password = free_port(), secrets.token_hex(16)
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    proc = start_serve(port, password)
    redis_port = proc.banner.rsplit("redis://127.0.0.1:", 1)[1].split("/")[0]
    redis = Redis.from_url(f"redis://:{password}@127.0.0.1:{redis_port}/0", decode_responses=True)
    t0 = time.monotonic()
    try:
        stats = asyncio.run(run(args, port, proc.pid, redis))
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
    report(stats, time.monotonic() - t0, load_before, " ".join(f"{x:.1f}" for x in os.getloadavg()))
    if args.minutes >= 1:
        out = ROOT / "runs" / "soak.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps({"args": vars(args), "samples": stats.samples,
                                   "lost": stats.events_lost, "repeated": stats.events_repeated}, indent=1))
    return 1 if stats.events_lost or stats.events_repeated else 0


if __name__ == "__main__":
    sys.exit(main())
