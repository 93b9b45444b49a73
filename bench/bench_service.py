"""Load benchmark of the job API against ``peng4nn serve`` on this machine.

Measures, in one run:
  1. submissions/s and latency p50/p99 with N concurrent clients (POST /v1/jobs), next to
     batched submission (POST /v1/jobs/batch) and a route without I/O (/v1/datasets) as the HTTP stack's floor;
  2. status reads/s and latency (GET /v1/jobs/{id});
  3. M concurrent SSE streams: delivery latency from the worker-side write (the same
     `JobStore.apply` a worker calls) to the client having parsed the event (one XREAD per
     client; the hub fan-out it was compared with was removed, docs/BENCHMARKS.md keeps that run);
  4. where a submission's time goes, in-process: validation, the Redis transaction, and
     plain RQ ``enqueue`` (the obvious alternative) side by side.

The load generator is a minimal asyncio HTTP/1.1 client (keep-alive, no library
overhead) so that the numbers are the server's, not httpx's. Workers are off
(``--workers 0``): training would compete for the same two cores.

    python bench/bench_service.py                      # starts its own `peng4nn serve`
    python bench/bench_service.py --api-workers 2 --streams 500 --clients 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TINY_CNN = {
    "schema": "peng4nn.arch/v1",
    "layers": [{"type": "conv2d", "filters": 8, "kernel": 3, "padding": 1}, {"type": "relu"},
               {"type": "maxpool2d", "kernel": 2}, {"type": "flatten"}, {"type": "linear", "units": "num_classes"}],
    "training": {"optimizer": "adam", "lr": 0.01, "batch_size": 64},
}
JOB = {"architecture": TINY_CNN, "dataset": "digits", "estimator": {"e_max": 2.0}}


# --------------------------------------------------------------------------- a minimal HTTP/1.1 client


class Conn:
    """One keep-alive HTTP/1.1 connection; requests are sequential on it."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def open(self) -> "Conn":
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def request(self, method: str, path: str, body: bytes = b"", headers: str = "") -> tuple[int, bytes]:
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{headers}"
                f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n\r\n")
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer:
            self.writer.close()


def _tree(root: int) -> list[int]:
    """``root`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def cpu_seconds(root: int) -> dict[str, float]:
    """CPU time (user + system) so far of the serve process tree, split into Redis and API."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"api": 0.0, "redis": 0.0}
    for pid in _tree(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        used = (int(fields[11]) + int(fields[12])) / tick
        out["redis" if b"redis-server" in cmd else "api"] += used
    return out


SERVE_PID = 0
"""Root of the process tree under test (set by main)."""


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def closed_loop(host, port, clients: int, duration: float, make_request) -> dict:
    """``clients`` connections each sending back-to-back requests for ``duration`` s."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration

    async def one(i: int):
        nonlocal errors
        conn = await Conn(host, port).open()
        n = 0
        while time.perf_counter() < deadline:
            method, path, body = make_request(i, n)
            t0 = time.perf_counter()
            status, _ = await conn.request(method, path, body)
            latencies.append(time.perf_counter() - t0)
            errors += status >= 400
            n += 1
        conn.close()

    cpu0, gen0 = cpu_seconds(SERVE_PID), time.process_time()
    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(clients)))
    wall = time.perf_counter() - t0
    cpu1, gen1 = cpu_seconds(SERVE_PID), time.process_time()
    n = max(1, len(latencies))
    return {"requests": len(latencies), "rate": len(latencies) / wall, "p50_ms": pct(latencies, 50) * 1e3,
            "p99_ms": pct(latencies, 99) * 1e3, "errors": errors, "gen_cpu_ms": (gen1 - gen0) / n * 1e3,
            "api_cpu_ms": (cpu1["api"] - cpu0["api"]) / n * 1e3, "redis_cpu_ms": (cpu1["redis"] - cpu0["redis"]) / n * 1e3}


# --------------------------------------------------------------------------- SSE


async def sse_streams(host, port, job_ids: list[str], expected: int, ready: asyncio.Event,
                      opened: list[int]) -> list[float]:
    """Open one stream per job; collect (receive time - publish time) of ``iteration`` events."""
    latencies: list[float] = []
    done = 0

    async def one(job_id: str):
        nonlocal done
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET /v1/jobs/{job_id}/events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        opened[0] += 1
        if opened[0] == len(job_ids):
            ready.set()
        got, event = 0, None
        while got < expected:
            line = await reader.readline()
            if not line:
                break
            if line.startswith(b"event: "):
                event = line[7:].strip()
            elif line.startswith(b"data: ") and event == b"iteration":
                sent = json.loads(line[6:])["elapsed_s"]  # the publisher puts its wall clock here
                latencies.append(time.time() - sent)
                got += 1
        writer.close()
        done += 1

    await asyncio.gather(*(one(j) for j in job_ids))
    return latencies


def publisher(redis_url: str, job_ids: list[str], rounds: int, interval: float, start: mp.Event) -> None:
    """Worker-side writes: one iteration event per job per round, through the same JobStore.apply a worker uses."""
    from redis import Redis

    from peng4nn.jobs import EVENT_ITERATION, JobStatus
    from peng4nn_store.encoding import dumps
    from peng4nn_store.job_store import JobStore

    store = JobStore(Redis.from_url(redis_url, decode_responses=True), 3600)
    start.wait()
    for r in range(rounds):
        t_round = time.perf_counter()
        for job_id in job_ids:
            data = dumps({"iteration": r + 1, "epoch": 0.5 * (r + 1), "val_acc": 50.0, "elapsed_s": time.time()})
            store.apply(job_id, expect=[JobStatus.RUNNING], set_fields={"latest": data}, incr={"iterations": 1},
                        events=[(EVENT_ITERATION, data)])
        time.sleep(max(0.0, interval - (time.perf_counter() - t_round)))


# --------------------------------------------------------------------------- in-process breakdown


def breakdown(redis_url: str, n: int = 2000) -> dict:
    """Per-submission cost without HTTP: validation, our atomic create+enqueue, plain RQ enqueue."""
    from redis import Redis
    from rq import Queue

    from peng4nn.jobs import JobCreate
    from peng4nn_service.jobs import submit_jobs, validate_job
    from peng4nn_store.job_store import JobStore
    from peng4nn_store.settings import Settings

    settings = Settings(redis_url=redis_url, queue_name="bench-breakdown")
    redis = Redis.from_url(redis_url, decode_responses=True)
    queue = Queue(settings.queue_name, connection=Redis.from_url(redis_url))
    store = JobStore(redis, settings.job_ttl_s)
    body = json.dumps(JOB)

    def per_call(fn) -> float:
        fn()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n * 1e6

    create = JobCreate.model_validate_json(body)
    out = {
        "parse JobCreate (pydantic)": per_call(lambda: JobCreate.model_validate_json(body)),
        "validate_job (dataset, shapes, policy)": per_call(lambda: validate_job(create)),
        "submit_jobs (validate + Lua create + RQ enqueue, 1 MULTI)": per_call(
            lambda: submit_jobs(store, queue, settings, "bench", [create])),
        "plain RQ queue.enqueue (no record, no stream)": per_call(
            lambda: queue.enqueue("peng4nn_worker.tasks.run_job", "x", job_timeout=60, result_ttl=60, failure_ttl=60)),
        "redis PING round trip": per_call(lambda: redis.ping()),
    }
    queue.empty()
    return out


# --------------------------------------------------------------------------- driver


UNLIMITED = {"PENG4NN_QUOTA_ACTIVE_JOBS": "0", "PENG4NN_QUOTA_REQUESTS_PER_S": "0", "PENG4NN_QUOTA_OPEN_STREAMS": "0",
             "PENG4NN_STREAM_POOL_SIZE": "5000"}
"""One load generator is one token: the per-token quotas (docs/SECURITY.md) would measure themselves."""

CHECKED = {"PENG4NN_QUOTA_ACTIVE_JOBS": str(10**9), "PENG4NN_QUOTA_REQUESTS_PER_S": str(10**9),
           "PENG4NN_QUOTA_REQUEST_BURST": str(10**9), "PENG4NN_QUOTA_OPEN_STREAMS": str(10**6)}
"""`--quota-cost`: every quota checked on every request, with limits this run never reaches."""


def start_serve(port: int, api_workers: int, **extra_env: str) -> tuple[subprocess.Popen, str]:
    import secrets

    password = secrets.token_hex(16)  # the bench writes worker-side events straight to the embedded Redis
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PENG4NN_REDIS_URL")}
    env.update(UNLIMITED, PENG4NN_REDIS_PASSWORD=password, **extra_env)
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from peng4nn.cli import main; sys.exit(main())", "serve",
         "--port", str(port), "--workers", "0", "--api-workers", str(api_workers), "--log-level", "error"],
        env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    banner = proc.stderr.readline()
    redis_port = banner.rsplit("redis://127.0.0.1:", 1)[1].split("/")[0]
    redis_url = f"redis://:{password}@127.0.0.1:{redis_port}/0"
    import httpx

    for _ in range(400):  # no workers here: /healthz says 503 no_workers; the API is up when it answers at all
        if proc.poll() is not None:
            raise RuntimeError(f"peng4nn serve exited with code {proc.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz")
            break
        except httpx.TransportError:
            time.sleep(0.05)
    return proc, redis_url


async def run(args, host: str, port: int, redis_url: str) -> dict:
    results: dict = {}
    body = json.dumps(JOB).encode()
    await closed_loop(host, port, args.clients, 1.0, lambda i, n: ("POST", "/v1/jobs", body))  # warm-up

    results["GET /v1/datasets (no I/O: HTTP floor)"] = await closed_loop(
        host, port, args.clients, args.duration, lambda i, n: ("GET", "/v1/datasets", b""))
    results["POST /v1/jobs"] = await closed_loop(host, port, args.clients, args.duration,
                                                 lambda i, n: ("POST", "/v1/jobs", body))
    batch = json.dumps({"jobs": [JOB] * args.batch}).encode()
    r = await closed_loop(host, port, max(1, args.clients // 4), args.duration,
                          lambda i, n: ("POST", "/v1/jobs/batch", batch))
    r["jobs_per_s"] = r["rate"] * args.batch
    results[f"POST /v1/jobs/batch ({args.batch} jobs)"] = r

    conn = await Conn(host, port).open()
    _, listing = await conn.request("GET", "/v1/jobs?limit=200")
    ids = [j["id"] for j in json.loads(listing)["data"]]
    conn.close()
    results["GET /v1/jobs/{id}"] = await closed_loop(host, port, args.clients, args.duration,
                                                     lambda i, n: ("GET", f"/v1/jobs/{ids[(i + n) % len(ids)]}", b""))

    return results


async def sse_phase(args, host: str, port: int, redis_url: str) -> dict:
    """M running jobs, one stream each, events written worker-side at a fixed rate."""
    from redis import Redis

    from peng4nn.jobs import JobStatus
    from peng4nn_store.job_store import JobStore

    conn = await Conn(host, port).open()
    stream_ids: list[str] = []
    while len(stream_ids) < args.streams:
        n = min(args.batch, args.streams - len(stream_ids))
        _, out = await conn.request("POST", "/v1/jobs/batch", json.dumps({"jobs": [JOB] * n}).encode())
        stream_ids += [j["id"] for j in json.loads(out)["data"]]
    conn.close()
    store = JobStore(Redis.from_url(redis_url, decode_responses=True), 3600)
    for job_id in stream_ids:
        store.transition(job_id, JobStatus.RUNNING, expect=[JobStatus.QUEUED])
    ready, opened = asyncio.Event(), [0]
    start = mp.Event()
    pub = mp.Process(target=publisher, args=(redis_url, stream_ids, args.rounds, args.interval, start))
    pub.start()
    collector = asyncio.create_task(sse_streams(host, port, stream_ids, args.rounds, ready, opened))
    await asyncio.wait_for(ready.wait(), 60)
    await asyncio.sleep(0.5)
    cpu0, gen0 = cpu_seconds(SERVE_PID), time.process_time()
    t0 = time.perf_counter()
    start.set()
    latencies = await collector
    wall = time.perf_counter() - t0
    pub.join()
    cpu1, gen1 = cpu_seconds(SERVE_PID), time.process_time()
    expected = args.streams * args.rounds
    n = max(1, len(latencies))
    return {
        "gen_cpu_ms": (gen1 - gen0) / n * 1e3,
        "api_cpu_ms": (cpu1["api"] - cpu0["api"]) / n * 1e3, "redis_cpu_ms": (cpu1["redis"] - cpu0["redis"]) / n * 1e3,
        "events": len(latencies), "expected": expected, "rate": len(latencies) / wall,
        "p50_ms": pct(latencies, 50) * 1e3, "p99_ms": pct(latencies, 99) * 1e3,
        "max_ms": max(latencies) * 1e3 if latencies else float("nan"),
    }


def quota_cost(args) -> int:
    """What the per-token quota checks cost a submission and a read: the same phases, checks off and on."""
    global SERVE_PID
    body = json.dumps(JOB).encode()
    rows = {}
    for label, env in (("quotas off", {}), ("quotas checked", CHECKED)):
        proc, _ = start_serve(args.port, args.api_workers, **env)
        SERVE_PID = proc.pid
        try:
            asyncio.run(closed_loop("127.0.0.1", args.port, args.clients, 1.0, lambda i, n: ("POST", "/v1/jobs", body)))
            for phase, request in (("POST /v1/jobs", lambda i, n: ("POST", "/v1/jobs", body)),
                                   ("GET /v1/datasets", lambda i, n: ("GET", "/v1/datasets", b""))):
                rows[(phase, label)] = asyncio.run(closed_loop("127.0.0.1", args.port, args.clients, args.duration,
                                                               request))
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(30)
    print(f"\nquota checks: {args.clients} clients, {args.duration:g} s per phase, --api-workers {args.api_workers}")
    print(f"{'phase':<36} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'API cpu':>9} {'Redis cpu':>9}")
    for (phase, label), r in rows.items():
        print(f"{phase + ', ' + label:<36} {r['rate']:>8.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
              f"{r['api_cpu_ms']:>7.3f}ms {r['redis_cpu_ms']:>7.3f}ms")
    for phase in ("POST /v1/jobs", "GET /v1/datasets"):
        off, on = rows[(phase, "quotas off")], rows[(phase, "quotas checked")]
        print(f"ratio {phase}: API+Redis cpu checked / off = "
              f"{(on['api_cpu_ms'] + on['redis_cpu_ms']) / (off['api_cpu_ms'] + off['redis_cpu_ms']):.2f}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients (default 32)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per closed-loop phase (default 5)")
    parser.add_argument("--batch", type=int, default=100, help="jobs per batch request (default 100)")
    parser.add_argument("--streams", type=int, default=500, help="concurrent SSE streams (default 500)")
    parser.add_argument("--rounds", type=int, default=20, help="events per stream (default 20)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between rounds (default 0.5)")
    parser.add_argument("--api-workers", type=int, default=1, help="API processes of peng4nn serve (default 1)")
    parser.add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    parser.add_argument("--sse-only", action="store_true", help="run only the SSE phases")
    parser.add_argument("--quota-cost", action="store_true",
                        help="only: submissions and reads with the quota checks off, then on (limits never reached)")
    args = parser.parse_args(argv)
    if not args.port:
        from peng4nn_store.embedded import free_port

        args.port = free_port()
    if args.quota_cost:
        return quota_cost(args)

    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    global SERVE_PID
    proc, redis_url = start_serve(args.port, args.api_workers)
    SERVE_PID = proc.pid
    try:
        results = {} if args.sse_only else asyncio.run(run(args, "127.0.0.1", args.port, redis_url))
        results[f"SSE {args.streams} streams, XREAD per client"] = asyncio.run(
            sse_phase(args, "127.0.0.1", args.port, redis_url))
        results["breakdown_us"] = {} if args.sse_only else breakdown(redis_url)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)

    print(f"\npeng4nn serve --workers 0 --api-workers {args.api_workers}; {args.clients} clients; "
          f"{os.cpu_count()} cores; load generator on the same machine")
    print(f"{'phase':<40} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'API cpu':>8} {'Redis cpu':>9} {'gen cpu':>8}"
          f" {'2-core cap':>10}  notes")
    print(f"load average before the run: {load_before}; after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for name, r in results.items():
        if name == "breakdown_us":
            continue
        notes = f"{r['jobs_per_s']:.0f} jobs/s" if "jobs_per_s" in r else ""
        if "expected" in r:
            notes = f"{r['events']}/{r['expected']} events delivered, max {r['max_ms']:.1f} ms"
        elif r.get("errors"):
            notes += f" {r['errors']} errors"
        cap = 2000 / (r["api_cpu_ms"] + r["redis_cpu_ms"] + r["gen_cpu_ms"])
        print(f"{name:<40} {r['rate']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['api_cpu_ms']:>6.3f}ms "
              f"{r['redis_cpu_ms']:>7.3f}ms {r['gen_cpu_ms']:>6.3f}ms {cap:>9.0f}/s  {notes}")
    print("(API cpu / Redis cpu / gen cpu: CPU time of the serve processes and of this load generator per request"
          " or per delivered event;\n 2-core cap: the rate their sum allows if the 2 cores served only this run)")
    print("\nper submission, in-process (no HTTP):")
    for name, us in results["breakdown_us"].items():
        print(f"  {name:<58} {us:8.0f} us")
    b = results["breakdown_us"]
    if not b:
        return 0
    print(f"  ratio: our create+enqueue / plain RQ enqueue = "
          f"{b['submit_jobs (validate + Lua create + RQ enqueue, 1 MULTI)'] / b['plain RQ queue.enqueue (no record, no stream)']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
