"""`peng4nn demo`, the README's main job: embedded service up, a generation streamed, service down."""

import subprocess
import sys


def test_demo_streams_a_generation_and_stops_the_service():
    proc = subprocess.run(
        [sys.executable, "-m", "peng4nn", "demo", "--population", "2", "--top-k", "2", "--e-max", "2",
         "--workers", "1"],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "submitted 2 networks" in out
    assert out.count("epoch ") >= 2 * 4  # 4 half-epoch iterations per network
    assert "top 2 of 2 by predicted accuracy" in out
    assert "Traceback" not in proc.stderr


def test_demo_rejects_zero_workers():
    proc = subprocess.run([sys.executable, "-m", "peng4nn", "demo", "--workers", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--workers must be at least 1; got 0" in proc.stderr
