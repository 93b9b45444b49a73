"""Real-Redis fixtures: the product's embedded Redis (or $REDIS_URL), a live API, real worker processes.

- ``redis_url`` (session): our own `worker.embedded.EmbeddedRedis`, or ``REDIS_URL`` when set.
- ``redis_conn`` (function): flushes the database before and after each test.
- ``api`` (function): factory starting the real app under uvicorn on a free port (real HTTP).
- ``worker_factory`` (function): factory starting ``python -m worker`` processes; killed at teardown.
No fakeredis, no mocked queues.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from redis import Redis

ROOT = Path(__file__).resolve().parents[1]

#: Settings every test process shares: short leases and keep-alives so failures show in seconds.
TEST_ENV = {
    "PENG4NN_WORKER_LEASE_S": "3",
    "PENG4NN_MAINTENANCE_INTERVAL_S": "0.5",
    "PENG4NN_SSE_KEEPALIVE_S": "0.5",
    "PENG4NN_REQUEUE_ON_WORKER_LOSS": "0",
    "OMP_NUM_THREADS": "1",
}

TINY_CNN = {
    "schema": "peng4nn.arch/v1",
    "layers": [
        {"type": "conv2d", "filters": 8, "kernel": 3, "padding": 1},
        {"type": "relu"},
        {"type": "maxpool2d", "kernel": 2},
        {"type": "flatten"},
        {"type": "linear", "units": "num_classes"},
    ],
    "training": {"optimizer": "adam", "lr": 0.01, "batch_size": 64},
}
"""A 1,370-parameter CNN for the 8x8 digits: half an epoch takes well under a second on CPU."""


def tiny_job(e_max: float = 2.0, **extra) -> dict:
    return {"architecture": TINY_CNN, "dataset": "digits", "estimator": {"e_max": e_max}, **extra}


@pytest.fixture(scope="session")
def redis_url():
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    from worker.embedded import EmbeddedRedis

    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
def redis_conn(redis_url):
    conn = Redis.from_url(redis_url, decode_responses=True)
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


def make_settings(default_redis_url: str, **overrides):
    from service.config import Settings

    values = {k.removeprefix("PENG4NN_").lower(): v for k, v in TEST_ENV.items() if k.startswith("PENG4NN_")}
    values.update({"redis_url": default_redis_url, **overrides})
    return Settings(**values)


@dataclass
class ApiServer:
    url: str
    server: object
    thread: threading.Thread
    app: object

    def client(self, token: str | None = None, **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def start_api(settings, port: int | None = None) -> ApiServer:
    import uvicorn

    from service.app import create_app
    from worker.embedded import free_port

    port = port or free_port()
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True, name=f"api-{port}")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("API server did not start")
        time.sleep(0.02)
    return ApiServer(f"http://127.0.0.1:{port}", server, thread, app)


@pytest.fixture
def api(redis_conn, redis_url):
    """``api(**settings_overrides) -> ApiServer``; every server started is stopped at teardown."""
    servers: list[ApiServer] = []

    def factory(port: int | None = None, **overrides) -> ApiServer:
        server = start_api(make_settings(redis_url, **overrides), port=port)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def worker_factory(redis_conn, redis_url):
    """``worker_factory(url=None, **env) -> Popen`` of ``python -m worker`` that has sent its first heartbeat.

    ``url``: another Redis than the session's (the outage tests run their own). Killed at teardown.
    """
    procs: list[subprocess.Popen] = []

    def factory(wait: bool = True, url: str | None = None, **env) -> subprocess.Popen:
        from worker.liveness import live_workers

        target = url or redis_url
        lease = int(TEST_ENV["PENG4NN_WORKER_LEASE_S"])
        conn = Redis.from_url(target)
        before = live_workers(conn, "peng4nn", lease)
        proc_env = {**os.environ, **TEST_ENV, "REDIS_URL": target, "PYTHONPATH": str(ROOT), **env}
        proc = subprocess.Popen([sys.executable, "-m", "worker"], env=proc_env, cwd=ROOT)
        procs.append(proc)
        if wait:
            deadline = time.monotonic() + 60
            while live_workers(conn, "peng4nn", lease) <= before:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not start (exit code {proc.poll()})")
                time.sleep(0.1)
        conn.close()
        return proc

    yield factory
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def import_keras():
    """Keras 3 on the torch back-end, its absl log handler pointed at the real stderr.

    absl (which keras imports) builds a logging handler on ``sys.stderr`` as it is at import time: under
    pytest, a capture file. uvicorn's logging set-up (every ``api()`` server) closes every handler ever
    made, and that one would close the capture file: every later test then fails with "I/O operation on
    closed file" and pytest itself dies at exit. absl never closes the real stderr.
    """
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    absl_logging = sys.modules.get("absl.logging")
    if absl_logging is not None:
        absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__
    return keras


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate()`` until it returns something truthy; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
