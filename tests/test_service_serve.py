"""`peng4nn serve` end to end: embedded Redis + API + a worker from one command, and a clean Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from peng4nn.client import Client
from tests.conftest import ROOT, TEST_ENV, TINY_CNN, wait_for
from worker.embedded import free_port


def test_serve_runs_a_job_and_stops_cleanly_on_ctrl_c():
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PENG4NN_REDIS_URL")}
    env.update(TEST_ENV, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from peng4nn.cli import main; sys.exit(main())",
         "serve", "--port", str(port), "--workers", "1"],
        env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )
    try:
        banner = proc.stderr.readline()
        assert "embedded Redis at redis://127.0.0.1:" in banner, banner
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
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


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
