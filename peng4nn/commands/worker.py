"""``peng4nn worker``: one RQ worker process (run one per GPU) serving the job queue."""

from __future__ import annotations

import argparse

from peng4nn.cli import CliError


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
    from worker.runner import DEVICE_PATTERN

    if args.device is not None and not DEVICE_PATTERN.match(args.device):
        raise CliError(f"--device must be cpu, cuda, cuda:N or mps; got {args.device!r}")
    from redis.exceptions import ConnectionError as RedisConnectionError

    from service.config import get_settings
    from worker.runner import run_worker

    settings = get_settings()
    if args.redis_url:
        settings = settings.model_copy(update={"redis_url": args.redis_url})
    try:
        return run_worker(settings, device=args.device, burst=args.burst, name=args.name)
    except RedisConnectionError as exc:
        raise CliError(f"cannot reach Redis at {settings.redis_url}: {exc}") from None
