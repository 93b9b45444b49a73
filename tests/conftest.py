"""Real-Redis fixtures: the product's embedded Redis (or $REDIS_URL), a live API, real worker processes.

- ``redis_url`` (session): our own `peng4nn_store.embedded.EmbeddedRedis`, or ``REDIS_URL`` when set.
- ``redis_conn`` (function): flushes the database before and after each test.
- ``api`` (function): factory starting the real app under uvicorn on a free port (real HTTP).
- ``worker_factory`` (function): factory starting ``python -P -m peng4nn_worker`` processes; killed at teardown.
No fakeredis, no mocked queues.

The service stack (redis, httpx, uvicorn) is imported inside the fixtures, so the engine's tests
(tests/engine/) run with the core install alone.
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

import pytest

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
    from peng4nn_store.embedded import EmbeddedRedis

    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
def redis_conn(redis_url):
    from redis import Redis

    conn = Redis.from_url(redis_url, decode_responses=True)
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


def make_settings(default_redis_url: str, **overrides):
    from peng4nn_store.settings import Settings

    values = {k.removeprefix("PENG4NN_").lower(): v for k, v in TEST_ENV.items() if k.startswith("PENG4NN_")}
    values.update({"redis_url": default_redis_url, **overrides})
    return Settings(**values)


@dataclass
class ApiServer:
    url: str
    server: object
    thread: threading.Thread
    app: object

    def client(self, token: str | None = None, **kwargs):
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def start_api(settings, port: int | None = None) -> ApiServer:
    import uvicorn

    from peng4nn_service.app import create_app
    from peng4nn_store.embedded import free_port

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
    """``worker_factory(url=None, **env) -> Popen`` of a worker process that has sent its first heartbeat.

    ``url``: another Redis than the session's (the outage tests run their own). Killed at teardown.
    """
    procs: list[subprocess.Popen] = []

    def factory(wait: bool = True, url: str | None = None, **env) -> subprocess.Popen:
        from redis import Redis

        from peng4nn_store.liveness import live_workers

        target = url or redis_url
        lease = int(TEST_ENV["PENG4NN_WORKER_LEASE_S"])
        conn = Redis.from_url(target)
        before = live_workers(conn, "peng4nn", lease)
        proc_env = {**os.environ, **TEST_ENV, "REDIS_URL": target, **env}
        proc = subprocess.Popen([sys.executable, "-P", "-m", "peng4nn_worker"], env=proc_env, cwd=ROOT)
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
    import keras

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


PENG4NN_COMMAND = Path(sys.executable).with_name("peng4nn")
"""The installed console script: what a user runs (``python -m``/``-c`` would put the current directory first)."""

IMPOSTORS = {
    "worker.py": "worker",
    "service.py": "service",
    "store.py": "store",
    "peng4nn_worker.py": "peng4nn_worker",
    "peng4nn/__init__.py": "peng4nn",
}
"""Modules a user may well have in the directory they run PEng4NN from (issue 14: a user's worker.py ran)."""


@dataclass
class ImpostorDir:
    path: Path
    markers: Path

    def ran(self) -> list[str]:
        """The impostors that were imported (each leaves a marker)."""
        return sorted(p.name for p in self.markers.iterdir())


@pytest.fixture
def impostor_dir(tmp_path) -> ImpostorDir:
    """A directory holding worker.py, service.py, store.py, peng4nn_worker.py and a package peng4nn, each of
    which leaves a marker file and exits when imported."""
    markers = tmp_path / "ran"
    markers.mkdir()
    cwd = tmp_path / "cwd"
    for relative, name in IMPOSTORS.items():
        path = cwd / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"import pathlib\npathlib.Path({str(markers / name)!r}).touch()\n"
                        f"raise SystemExit('the user\\'s own {relative} ran')\n")
    assert PENG4NN_COMMAND.is_file(), f"the console script is not installed at {PENG4NN_COMMAND}"
    return ImpostorDir(cwd, markers)
