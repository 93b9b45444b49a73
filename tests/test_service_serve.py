"""`peng4nn serve` end to end: embedded Redis + API + a worker from one command, and a clean Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from peng4nn.client import Client
from peng4nn_store.embedded import free_port
from tests.conftest import PENG4NN_COMMAND, TEST_ENV, TINY_CNN, wait_for


@pytest.mark.timeout(120)
def test_serve_runs_a_job_and_stops_cleanly_on_ctrl_c(impostor_dir):
    """From a directory with a worker.py, service.py and a folder peng4nn (the user's own): none of them runs."""
    port = free_port()
    proc = _serve(port, impostor_dir.path)
    try:
        banner = proc.stderr.readline()
        assert "embedded Redis at redis://127.0.0.1:" in banner and "password protected" in banner, banner
        redis_port = int(banner.rsplit(":", 1)[1].split("/")[0])
        with Client(f"http://127.0.0.1:{port}") as client:
            wait_for(lambda: _health(client).get("workers") == 1, timeout=60, what="worker registration")
            job = client.submit(TINY_CNN, "digits", estimator={"e_max": 1.0})
            done = client.wait(job.id, timeout=60, poll_s=0.1)
            assert done.status.value in ("completed", "converged") and done.iterations == 2
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert not _listening(redis_port), "the embedded Redis outlived serve"
        assert not _listening(port)
        assert impostor_dir.ran() == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _serve(port: int, cwd) -> subprocess.Popen:
    """`peng4nn serve` with one worker, as a user starts it (the installed command), on an embedded Redis."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PENG4NN_REDIS_URL", "PYTHONPATH")}
    env.update(TEST_ENV)
    return subprocess.Popen([str(PENG4NN_COMMAND), "serve", "--port", str(port), "--workers", "1"],
                            env=env, cwd=cwd, stderr=subprocess.PIPE, text=True)


def _health(client):
    try:
        return client.health()
    except Exception:
        return {}


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_cli_rejects_bad_options_with_exit_code_2(capsys):
    from peng4nn.cli import main

    assert main(["worker", "--device", "gpu7"]) == 2
    assert "--device must be cpu, cuda, cuda:N or mps; got 'gpu7'" in capsys.readouterr().err
    assert main(["serve", "--port", "70000"]) == 2
    assert "--port must be in 1..65535" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["serve", "--port", str(busy.getsockname()[1])]) == 2
        assert "cannot listen on 127.0.0.1:" in capsys.readouterr().err
    assert main(["worker", "--redis-url", f"redis://127.0.0.1:{free_port()}/0"]) == 2
    assert "cannot reach Redis at redis://127.0.0.1:" in capsys.readouterr().err


def _children(pid: int) -> dict[int, str]:
    """The live child processes of ``pid`` and their command lines (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry.name)] = cmdline
    return found


def _one(children: dict[int, str], marker: str) -> int:
    [pid] = [pid for pid, cmd in children.items() if marker in cmd]
    return pid


@pytest.mark.timeout(120)
def test_serve_restarts_a_dead_worker_and_stops_when_its_redis_dies(tmp_path):
    port = free_port()
    proc = _serve(port, tmp_path)
    try:
        assert "password protected" in proc.stderr.readline()
        with Client(f"http://127.0.0.1:{port}") as client:
            wait_for(lambda: _health(client).get("workers") == 1, timeout=60, what="worker registration")
            first = _one(_children(proc.pid), "-m peng4nn_worker")
            os.kill(first, signal.SIGKILL)
            wait_for(lambda: any("-m peng4nn_worker" in cmd and pid != first for pid, cmd in _children(proc.pid).items()),
                     timeout=20, what="the supervisor to start a new worker")
            job = client.submit(TINY_CNN, "digits", estimator={"e_max": 0.5})
            assert client.wait(job.id, timeout=60, poll_s=0.1).status.value in ("completed", "converged")

            redis = _one(_children(proc.pid), "redis-server")
            os.kill(redis, signal.SIGKILL)
            assert proc.wait(30) == 1  # a service whose store is gone stops, and says so
        assert "the embedded Redis exited" in proc.stderr.read()
        assert not _listening(port)
        assert not any("-m peng4nn_worker" in cmd for cmd in _children(proc.pid).values())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(30)
def test_a_crash_looping_worker_is_given_up_on():
    """Real processes that exit at once: restarted with growing pauses, then reported as fatal."""
    from peng4nn_service.supervisor import Supervisor

    started, fatal = [], []

    def start(index: int, generation: int) -> subprocess.Popen:
        started.append(generation)
        return subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])

    supervisor = Supervisor(start, 1, None, fatal.append, max_restarts=3, window_s=30, first_pause_s=0.05).start()
    try:
        wait_for(lambda: fatal, timeout=20, what="the crash loop to be noticed")
    finally:
        supervisor.stop()
    assert started == [0, 1, 2, 3]
    assert "worker 0 exited 4 times within 30 s (last exit code 3); giving up" == fatal[0] == supervisor.fatal
