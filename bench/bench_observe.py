"""Observe-mode throughput and latency against `peng4nn serve`: many concurrent sessions posting points.

Usage: python bench/bench_observe.py [--sessions 200] [--connections 0] [--duration 20] [--api-workers 1]
       [--modes cached,replay,no-fit] [--rate OBS_PER_S] [--full-curves]

Each of --sessions clients (closed loop, or paced so that all together offer --rate
observations/s; one keep-alive connection each, or --connections shared by all, which
bounds the requests in flight as a NAS reporting through a connection pool would) opens
a session, posts one synthetic validation point at a time (the curves of bench_replay.py:
learners, never-learners, late and noisy ones; E = 0.5, e_max = 20) until the engine says
stop or the curve ends, then opens the next.
One `peng4nn serve --workers 0` per mode, on the embedded Redis, side by side in one run:

* ``cached``: the default, each API process keeps the session's policy (one fit per point);
* ``replay``: ``PENG4NN_CURVE_CACHE_SIZE=0``, a fresh policy replays the stored points on
  every post (the obvious alternative);
* ``no-fit``: every post repeats the session's last epoch and is answered 409 before any fit:
  the same HTTP, auth, validation, lock and cache path without the decision, i.e. the
  ceiling the framework alone allows.

Prints observations/s and p50/p99/max latency of the observation posts. For where the time
goes, which wall-clock rates on a shared machine cannot say, it also prints the CPU time per
request of the API process(es), of Redis and of the load generator (from /proc, independent
of how busy the machine is), and the in-process cost of one `policy.observe()` (the fit).
The load generator speaks HTTP/1.1 on raw asyncio streams so that it costs the shared
CPUs as little as possible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_replay import synthetic_curves  # noqa: E402

from peng4nn.policies import make_policy  # noqa: E402
from peng4nn_store.embedded import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class Connection:
    """A minimal HTTP/1.1 keep-alive client: enough for JSON requests to our own API."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port

    async def open(self) -> "Connection":
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else b""
        self.writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode() + data
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length) if length else b""

    def close(self) -> None:
        self.writer.close()


def curve_pool(n: int, seed: int) -> list[list[tuple[float, float]]]:
    return [[(float(e), float(a)) for e, a in zip(epochs, acc)]
            for _, epochs, acc, _, _ in synthetic_curves(n, seed=seed)]


class Pool:
    """Connections shared by sessions: at most len(pool) requests in flight, each on its own connection."""

    def __init__(self, conns: list[Connection]):
        self.free: asyncio.Queue[Connection] = asyncio.Queue()
        for conn in conns:
            self.free.put_nowait(conn)

    async def request(self, method: str, path: str, body: dict | None, stats: dict | None = None,
                      t_sched: float | None = None) -> tuple[int, bytes]:
        conn = await self.free.get()
        try:
            t0 = time.perf_counter()
            answer = await conn.request(method, path, body)
            if stats is not None:  # from the send, or from the scheduled time when paced
                stats["latency"].append(time.perf_counter() - (t_sched if t_sched is not None else t0))
            return answer
        finally:
            self.free.put_nowait(conn)


async def client_loop(pool: Pool, curves, start: int, step: int, deadline: float, stats: dict,
                      no_fit: bool = False, full: bool = False, interval: float = 0.0) -> None:
    """One client: sessions one after another, a point per post; paced every ``interval`` s if > 0.

    Paced (open loop), latency runs from the scheduled send time, so a backlog counts in full.
    """
    i = start
    next_at = time.perf_counter() + interval * (start % 97) / 97  # spread the clients' phases
    if no_fit:
        status, body = await pool.request("POST", "/v1/curves", {})
        path = f"/v1/curves/{json.loads(body)['id']}/observations"
        stale = {"points": [{"epoch": 1.0, "val_acc": 10.0}]}
        await pool.request("POST", path, stale)
        while time.perf_counter() < deadline:
            status, body = await pool.request("POST", path, stale, stats)
            stats["errors"] += status != 409
        return
    while time.perf_counter() < deadline:
        status, body = await pool.request("POST", "/v1/curves", {})
        assert status == 201, body
        curve_id = json.loads(body)["id"]
        stats["sessions"] += 1
        for epoch, acc in curves[i % len(curves)]:
            t_sched = None
            if interval:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                t_sched, next_at = next_at, next_at + interval
            status, body = await pool.request("POST", f"/v1/curves/{curve_id}/observations",
                                              {"points": [{"epoch": epoch, "val_acc": acc}]}, stats, t_sched)
            if status != 200:
                stats["errors"] += 1
                break
            if (json.loads(body)["stop"] and not full) or time.perf_counter() >= deadline:
                break
        i += step


async def open_pool(port: int, n: int) -> Pool:
    return Pool(await asyncio.gather(*(Connection("127.0.0.1", port).open() for _ in range(n))))


async def warm_up(port: int, curves, seconds: float = 2.0) -> None:
    """Load the API briefly first (imports, connection pools, Lua script, caches), unmeasured."""
    end = time.perf_counter() + seconds
    pool = await open_pool(port, 20)
    await asyncio.gather(*(client_loop(pool, curves, s, 20, end, {"latency": [], "errors": 0, "sessions": 0})
                           for s in range(20)))
    for conn in pool.free._queue:
        conn.close()


async def drive(port: int, sessions: int, duration: float, curves, no_fit: bool = False,
                full: bool = False, rate: float = 0.0, connections: int = 0) -> dict:
    """``sessions`` concurrent sessions over ``connections`` keep-alive connections (0: one each)."""
    stats = {"latency": [], "errors": 0, "sessions": 0}
    pool = await open_pool(port, connections or sessions)
    t0 = time.perf_counter()
    interval = sessions / rate if rate else 0.0
    await asyncio.gather(*(client_loop(pool, curves, s, sessions, t0 + duration, stats, no_fit, full, interval)
                           for s in range(sessions)))
    stats["elapsed"] = time.perf_counter() - t0
    for conn in pool.free._queue:
        conn.close()
    return stats


def start_server(port: int, api_workers: int, env_extra: dict) -> subprocess.Popen:
    # One load generator is one token: without this the per-token rate quota (docs/SECURITY.md) would be measured.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PENG4NN_QUOTA_REQUESTS_PER_S": "0",
           "PENG4NN_QUOTA_SESSIONS": "0", **env_extra}
    env.pop("REDIS_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "peng4nn.cli", "serve", "--workers", "0", "--port", str(port),
         "--api-workers", str(api_workers)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"peng4nn serve exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError("peng4nn serve did not answer within 60 s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def tree_cpu_s(root: int) -> dict[str, float]:
    """CPU seconds (user + system) used so far by ``root`` and its descendants, by command name."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            comm = text[text.index("(") + 1:text.rindex(")")]
            fields = text[text.rindex(")") + 2:].split()
            stats[int(entry.name)] = (int(fields[1]), comm, (int(fields[11]) + int(fields[12])) / tick)
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _, _) in stats.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    used: dict[str, float] = {}
    for pid in tree:
        if pid in stats:
            _, comm, cpu = stats[pid]
            name = "redis" if comm.startswith("redis") else "api"
            used[name] = used.get(name, 0.0) + cpu
    return used


def policy_cost(curves) -> tuple[float, int]:
    """Mean CPU seconds of one in-process `policy.observe()` on the points the clients post."""
    n, t0 = 0, time.process_time()
    for curve in curves:
        policy = make_policy("paper")
        for epoch, acc in curve:
            n += 1
            if policy.observe(epoch, acc).stop:
                break
    return (time.process_time() - t0) / n, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200, help="concurrent sessions")
    parser.add_argument("--connections", type=int, default=0,
                        help="keep-alive connections the sessions share, i.e. requests in flight at most "
                             "(default: one per session)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per mode")
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument("--modes", default="cached,replay,no-fit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="offer this many observations/s in all (open loop); 0 = as fast as answered")
    parser.add_argument("--full-curves", action="store_true",
                        help="post all 40 points of every curve, ignoring stop (long sessions: replay's worst case)")
    args = parser.parse_args()

    curves = curve_pool(500, args.seed)
    per_obs, n = policy_cost(curves[:200])
    print(f"in-process policy.observe(): {per_obs * 1e3:.3f} ms CPU per point (mean over {n} points) "
          f"-> at most {1 / per_obs:,.0f} obs/s per core for the decision alone")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} before the run")
    envs = {"cached": {}, "replay": {"PENG4NN_CURVE_CACHE_SIZE": "0"}, "no-fit": {}}
    results = {}
    for mode in args.modes.split(","):
        port = free_port()
        proc = start_server(port, args.api_workers, envs[mode])
        try:
            asyncio.run(warm_up(port, curves))
            cpu0, client0 = tree_cpu_s(proc.pid), time.process_time()
            stats = asyncio.run(drive(port, args.sessions, args.duration, curves, no_fit=mode == "no-fit",
                                      full=args.full_curves, rate=args.rate, connections=args.connections))
            cpu1, client1 = tree_cpu_s(proc.pid), time.process_time()
        finally:
            stop_server(proc)
        lat = np.array(stats["latency"]) * 1e3
        rate = len(lat) / stats["elapsed"]
        results[mode] = rate
        print(f"{mode:>7}: {len(lat):7d} posts in {stats['elapsed']:.1f} s = {rate:8,.0f}/s; "
              f"latency p50 {np.percentile(lat, 50):6.1f} ms, p99 {np.percentile(lat, 99):6.1f} ms, "
              f"max {lat.max():6.1f} ms; {stats['sessions']} sessions, {stats['errors']} errors "
              f"({args.sessions} concurrent over {args.connections or args.sessions} connections, "
              f"{args.api_workers} API process(es))")
        # CPU per post does not depend on how busy the shared machine is; wall-clock rates do.
        posts = len(lat) + stats["sessions"]
        per = {k: (cpu1.get(k, 0) - cpu0.get(k, 0)) / posts * 1e3 for k in ("api", "redis")}
        client_ms = (client1 - client0) / posts * 1e3
        total = per["api"] + per["redis"] + client_ms
        print(f"{'':>9}CPU per request (session opens included): API {per['api']:.3f} ms, Redis {per['redis']:.3f} ms,"
              f" load generator {client_ms:.3f} ms -> the API alone allows {1000 / per['api']:,.0f}/s per core; "
              f"2 cores of our own would serve {2000 / total:,.0f}/s")
    if "cached" in results and "replay" in results:
        print(f"cached / replay throughput: {results['cached'] / results['replay']:.1f}x")


if __name__ == "__main__":
    main()
