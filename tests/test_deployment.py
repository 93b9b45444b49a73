"""The deployment files, read (no Docker engine runs where this is built; `docker compose config` is not
available either): docker-compose.yml and the Dockerfile must keep the properties issue 14 asked for.

- The API image has no torch: its target installs the service extra only, and the API service uses it.
- One worker service per GPU, each reserving its own device by id (``count: 1`` with ``--scale`` would
  give every replica the same GPU), and a CPU worker that is optional.
- Every health check checks its own process: the API its /livez, each worker its heartbeat file,
  Redis its ping; none inherits another's.
- Processes start with ``python -P -m peng4nn_worker`` / the installed app, never by a bare ``worker``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def stages() -> dict[str, str]:
    """Dockerfile stage name -> its instructions (continuation lines joined)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        match = re.match(r"^FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.I)
        if match:
            current = match.group(1) or "unnamed"
            found[current] = []
        elif current and line.strip() and not line.lstrip().startswith("#"):
            found[current].append(line)
    return {name: "\n".join(lines) for name, lines in found.items()}


def workers(compose: dict) -> dict[str, dict]:
    return {name: svc for name, svc in compose["services"].items() if name.startswith("worker")}


def test_the_api_image_carries_no_torch(compose, stages):
    assert compose["services"]["api"]["build"]["target"] == "api"
    api = stages["api"]
    installs = re.findall(r"pip install[^\n]*", api)
    assert installs and all(re.findall(r"\.\[([a-z,]+)\]", line) == ["service"] for line in installs), installs
    assert not re.search(r"\btorch", api)
    assert "peng4nn_service.app:create_app" in api
    assert "torch" not in stages["base"]
    assert re.search(r"^FROM python:3\.11-slim AS base", (ROOT / "Dockerfile").read_text(), re.M)  # no CUDA base


def test_one_worker_service_per_gpu_each_with_its_own_device(compose):
    gpu = {name: svc for name, svc in workers(compose).items() if name != "worker-cpu"}
    assert len(gpu) >= 2
    devices = []
    for name, svc in gpu.items():
        [reservation] = svc["deploy"]["resources"]["reservations"]["devices"]
        assert "count" not in reservation, f"{name}: count would let replicas share one GPU"
        assert len(reservation["device_ids"]) == 1 and reservation["capabilities"] == ["gpu"]
        devices += reservation["device_ids"]
        assert svc["build"]["target"] == "worker" and "--device" in svc["command"]
    assert len(devices) == len(set(devices)), f"two worker services reserve the same GPU: {devices}"
    assert "profiles" in compose["services"]["worker-cpu"]
    assert "deploy" not in compose["services"]["worker-cpu"]


def test_every_health_check_checks_its_own_process(compose, stages):
    services = compose["services"]
    assert "/livez" in " ".join(services["api"]["healthcheck"]["test"])
    assert "/healthz" not in " ".join(services["api"]["healthcheck"]["test"])  # that one needs workers too
    for name, svc in workers(compose).items():
        test = " ".join(svc["healthcheck"]["test"])
        assert "peng4nn_worker.health" in test, name
        assert "ping" not in test and "redis" not in test.lower(), f"{name}: a Redis ping says nothing of the worker"
        assert svc["environment"]["PENG4NN_WORKER_HEARTBEAT_FILE"], name
    assert services["redis"]["healthcheck"]["test"][-1] == "ping"
    assert "/livez" in stages["api"] and "peng4nn_worker.health" in stages["worker"]
    assert "PENG4NN_WORKER_HEARTBEAT_FILE" in stages["worker"]


def test_processes_start_by_their_installed_names(compose, stages):
    for name, svc in workers(compose).items():
        assert svc["command"][:4] == ["python", "-P", "-m", "peng4nn_worker"], name
    assert '"-P", "-m", "peng4nn_worker"' in stages["worker"]
    text = (ROOT / "docker-compose.yml").read_text() + (ROOT / "Dockerfile").read_text()
    assert not re.search(r'"-m", "worker"|-m worker\b|[^_]service\.app:', text)


def test_the_health_command_reads_the_heartbeat_file(tmp_path):
    """The check the worker containers run, on a fresh, a stale and a missing heartbeat."""
    import os
    import time

    from peng4nn_worker.health import check

    beat = tmp_path / "beat"
    assert "not set" in check(None, 30)
    assert "does not exist" in check(str(beat), 30)
    beat.touch()
    assert check(str(beat), 30) is None
    os.utime(beat, (time.time() - 61, time.time() - 61))
    assert "61 s ago" in check(str(beat), 30)
