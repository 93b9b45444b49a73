"""`peng4nn demo`, the README's main job: embedded service up, a generation streamed, service down.

Run as a user runs it (the installed command) from a directory full of impostors (a worker.py, a
service.py, a folder peng4nn...): none of them may run (issue 14: a user's worker.py was executed).
"""

import subprocess

import pytest

from tests.conftest import PENG4NN_COMMAND


@pytest.mark.timeout(200)
def test_demo_streams_a_generation_and_stops_the_service(impostor_dir):
    proc = subprocess.run(
        [str(PENG4NN_COMMAND), "demo", "--population", "2", "--top-k", "2", "--e-max", "2", "--workers", "1"],
        capture_output=True, text=True, timeout=180, cwd=impostor_dir.path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "submitted 2 networks" in out
    assert out.count("epoch ") >= 2 * 4  # 4 half-epoch iterations per network
    assert "top 2 of 2 by predicted accuracy" in out
    assert "Traceback" not in proc.stderr
    assert impostor_dir.ran() == []


def test_demo_rejects_zero_workers():
    proc = subprocess.run([str(PENG4NN_COMMAND), "demo", "--workers", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--workers must be at least 1; got 0" in proc.stderr
