"""``peng4nn demo``: the whole product in one command.

Starts ``peng4nn serve`` (embedded Redis, the API, local workers) on a free
port, runs the random-search NAS of peng4nn/random_search.py against it so
predictions stream in for a generation of networks, then stops the service.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

from peng4nn import defaults
from peng4nn.cli import CliError

SERVICE_START_TIMEOUT_S = 60.0
"""How long the embedded service may take to answer /healthz (torch-free API: seconds)."""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="start an embedded service and stream predictions for a generation of random CNNs",
        description="Start peng4nn serve on a free port (embedded Redis, API, workers), submit a generation of "
                    "random CNNs on digits, stream their predictions, print the predicted top-k next to what "
                    "each network reached, and stop the service.",
    )
    parser.add_argument("--population", type=int, default=8, help="networks in the generation (default: 8)")
    parser.add_argument("--top-k", type=int, default=3, help="how many to report (default: 3)")
    parser.add_argument("--e-max", type=float, default=10.0, help="epochs each network may train (default: 10)")
    parser.add_argument("--dataset", default="digits", help="dataset name (default: digits)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the architecture draws (default: 0)")
    parser.add_argument("--policy", default=defaults.LONE_POLICY,
                        help=f"stopping policy: paper, menndl, patience, fixed, adaptive (default {defaults.LONE_POLICY})")
    parser.add_argument("--workers", type=int, default=2, help="local worker processes (default: 2)")
    parser.set_defaults(run=run)


DEMO_NEEDS = ("httpx", "fastapi", "uvicorn", "redis", "rq", "torch")
"""What the demo runs: the client, the service and the workers' training (the service and train extras)."""


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise CliError(f"--workers must be at least 1; got {args.workers}")
    import importlib.util

    missing = [name for name in DEMO_NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        raise CliError(f"the demo runs the service and trains networks: pip install 'peng4nn[service,train]' "
                       f"(missing: {', '.join(missing)})")
    from peng4nn.policies import POLICY_NAMES

    if args.policy not in POLICY_NAMES:
        raise CliError(f"--policy must be one of {', '.join(POLICY_NAMES)}; got {args.policy!r}")
    from peng4nn.random_search import main as random_search

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PENG4NN_REDIS_URL")}
    print(f"peng4nn demo: starting the service on {url} with {args.workers} worker(s)...", file=sys.stderr, flush=True)
    service = subprocess.Popen(
        [sys.executable, "-P", "-m", "peng4nn", "serve", "--port", str(port), "--workers", str(args.workers)],
        env=env, start_new_session=True,
    )
    try:
        _wait_healthy(url, service)
        return random_search([
            "--url", url, "--population", str(args.population), "--top-k", str(args.top_k),
            "--e-max", str(args.e_max), "--dataset", args.dataset, "--seed", str(args.seed), "--policy", args.policy,
        ])
    finally:
        if service.poll() is None:
            service.send_signal(signal.SIGINT)  # serve's clean shutdown: workers, then Redis
            try:
                service.wait(30)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, service: subprocess.Popen) -> None:
    import httpx

    deadline = time.monotonic() + SERVICE_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise CliError(f"the service exited with code {service.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise CliError(f"the service did not answer {url}/healthz within {SERVICE_START_TIMEOUT_S:.0f} s")
