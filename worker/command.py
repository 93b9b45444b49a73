"""``peng4nn worker``: one RQ worker process (run one per GPU) serving the job queue."""

from __future__ import annotations

import argparse

from peng4nn.cli import CliError
from peng4nn.devices import check_device


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "worker", help="run a job worker (one per GPU) against a Redis server",
        description="Run an RQ worker that trains submitted networks and streams their predictions.",
    )
    parser.add_argument("--redis-url", default=None,
                        help="Redis server (default: $REDIS_URL, else redis://127.0.0.1:6379/0)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: cuda if available)")
    parser.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    parser.add_argument("--name", default=None, help="worker name (default: random)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        check_device(args.device)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    from redis.exceptions import ConnectionError as RedisConnectionError

    from peng4nn_store.settings import get_settings
    from peng4nn_worker.runner import run_worker

    settings = get_settings()
    if args.redis_url:
        settings = settings.model_copy(update={"redis_url": args.redis_url})
    try:
        return run_worker(settings, device=args.device, burst=args.burst, name=args.name)
    except RedisConnectionError as exc:
        raise CliError(f"cannot reach Redis at {settings.redis_url}: {exc}") from None
