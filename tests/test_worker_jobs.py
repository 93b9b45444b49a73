"""Real worker processes training a tiny CNN on digits: event order, resume, cancel, SIGKILL, shutdown."""

from __future__ import annotations

import json
import os
import signal

from redis import Redis

from peng4nn_store.job_store import JobStore
from tests.conftest import tiny_job, wait_for
from tests.test_service_api import _read_sse


def _status(http, job_id):
    return http.get(f"/v1/jobs/{job_id}").json()


def _stream_ids(redis_url, job_id):
    store = JobStore(Redis.from_url(redis_url, decode_responses=True), 3600)
    return store.events(job_id)


def test_job_streams_every_event_in_order_and_status_agrees(api, worker_factory, redis_url):
    server = api()
    worker_factory()
    with server.client() as http:
        job_id = http.post("/v1/jobs", json=tiny_job(e_max=2.0)).json()["id"]
        # read a few events, drop the connection, resume with Last-Event-ID
        head = []
        with http.stream("GET", f"/v1/jobs/{job_id}/events") as resp:
            current = {}
            for line in resp.iter_lines():
                if not line and current:
                    head.append(current)
                    current = {}
                    if len(head) == 3:
                        break
                elif line and not line.startswith(":"):
                    field, _, value = line.partition(": ")
                    current[field] = value
        tail = _read_sse(http, f"/v1/jobs/{job_id}/events", last_event_id=head[-1]["id"])
        events = head + tail
        job = _status(http, job_id)

    recorded = _stream_ids(redis_url, job_id)
    assert [e["id"] for e in events] == [r[0] for r in recorded]  # nothing lost, nothing repeated
    kinds = [e["event"] for e in events]
    statuses = [json.loads(e["data"])["status"] for e in events if e["event"] == "status"]
    iterations = [json.loads(e["data"]) for e in events if e["event"] == "iteration"]
    assert kinds[:2] == ["status", "status"] and kinds[-2:] == ["status", "result"]
    assert statuses[:2] == ["queued", "running"] and statuses[-1] in ("converged", "completed")
    assert [it["iteration"] for it in iterations] == list(range(1, len(iterations) + 1))
    assert [it["epoch"] for it in iterations] == [0.5 * (i + 1) for i in range(len(iterations))]
    assert len(iterations) == 4  # e_max 2 / E 0.5
    # polling and streaming agree
    assert job["status"] == statuses[-1] and job["iterations"] == len(iterations)
    assert job["latest"]["epoch"] == iterations[-1]["epoch"] and job["last_event_id"] == events[-1]["id"]
    result = json.loads(events[-1]["data"])
    assert result["result"]["epochs_trained"] == 2.0 and result["result"]["final_val_acc"] == iterations[-1]["val_acc"]
    assert job["result"]["epochs_trained"] == 2.0 and job["attempts"] == 1 and job["ended_at"]


def test_cancel_running_stops_at_next_iteration_and_queued_never_runs(api, worker_factory):
    server = api()
    worker_factory()
    with server.client() as http:
        long_id = http.post("/v1/jobs", json=tiny_job(e_max=200.0, policy="fixed", policy_params={"k": 200})).json()["id"]
        queued_id = http.post("/v1/jobs", json=tiny_job()).json()["id"]
        wait_for(lambda: _status(http, long_id)["iterations"] >= 1, what="first iteration")
        resp = http.delete(f"/v1/jobs/{queued_id}")
        assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
        resp = http.delete(f"/v1/jobs/{long_id}")
        assert resp.status_code == 202 and resp.json()["cancel_requested"] is True
        job = wait_for(lambda: (j := _status(http, long_id))["status"] == "cancelled" and j, what="cancel")
        assert job["result"]["epochs_trained"] < 200 and "cancelled by request" in job["error"]
        assert _read_sse(http, f"/v1/jobs/{long_id}/events")[-1]["event"] == "result"
        # the worker is free again, and the cancelled queued job was never started
        after = http.post("/v1/jobs", json=tiny_job(e_max=0.5)).json()["id"]
        wait_for(lambda: _status(http, after)["status"] in ("completed", "converged"), what="next job")
        assert _status(http, queued_id)["attempts"] == 0


def test_sigkilled_worker_leaves_the_job_failed_with_a_reason(api, worker_factory):
    server = api(requeue_on_worker_loss=0)
    proc = worker_factory()
    with server.client() as http:
        job_id = http.post("/v1/jobs", json=tiny_job(e_max=200.0, policy="fixed", policy_params={"k": 200})).json()["id"]
        wait_for(lambda: _status(http, job_id)["iterations"] >= 1, what="first iteration")
        os.kill(proc.pid, signal.SIGKILL)
        job = wait_for(lambda: (j := _status(http, job_id))["status"] == "failed" and j, timeout=20,
                       what="abandoned job to fail")
        assert "stopped sending heartbeats" in job["error"]
        events = _read_sse(http, f"/v1/jobs/{job_id}/events")
        assert [e["event"] for e in events[-2:]] == ["status", "result"]
        assert json.loads(events[-1]["data"])["status"] == "failed"


def test_sigkilled_worker_job_is_requeued_once_and_finishes_elsewhere(api, worker_factory):
    server = api(requeue_on_worker_loss=1)
    env = {"PENG4NN_REQUEUE_ON_WORKER_LOSS": "1"}
    proc = worker_factory(**env)
    with server.client() as http:
        job_id = http.post("/v1/jobs", json=tiny_job(e_max=3.0, policy="fixed", policy_params={"k": 3})).json()["id"]
        wait_for(lambda: _status(http, job_id)["iterations"] >= 1, what="first iteration")
        os.kill(proc.pid, signal.SIGKILL)
        job = wait_for(lambda: (j := _status(http, job_id))["status"] == "queued" and j, timeout=20, what="re-queue")
        assert "stopped sending heartbeats" in job["error"] and "re-queued" in job["error"]
        worker_factory(**env)
        job = wait_for(lambda: (j := _status(http, job_id))["status"] in ("completed", "converged") and j,
                       timeout=60, what="second attempt")
        assert job["attempts"] == 2 and job["iterations"] == 6 and job["error"] is None
        statuses = [json.loads(e["data"])["status"] for e in _read_sse(http, f"/v1/jobs/{job_id}/events")
                    if e["event"] == "status"]
        assert statuses == ["queued", "running", "queued", "running", job["status"]]


def test_warm_shutdown_requeues_the_running_job(api, worker_factory):
    server = api(requeue_on_worker_loss=1)
    proc = worker_factory(PENG4NN_REQUEUE_ON_WORKER_LOSS="1")
    with server.client() as http:
        job_id = http.post("/v1/jobs", json=tiny_job(e_max=200.0, policy="fixed", policy_params={"k": 200})).json()["id"]
        wait_for(lambda: _status(http, job_id)["iterations"] >= 1, what="first iteration")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        statuses = [json.loads(e["data"]) for e in _events_now(http, job_id) if e["event"] == "status"]
        assert [s["status"] for s in statuses] == ["queued", "running", "queued"]
        assert "worker shut down" in statuses[-1]["reason"]


def test_missing_dataset_files_fail_the_job_with_the_reason(api, worker_factory, tmp_path):
    server = api()
    worker_factory(PENG4NN_DATA_ROOT=str(tmp_path))
    with server.client() as http:
        job_id = http.post("/v1/jobs", json=tiny_job() | {
            "dataset": "mnist",
            "architecture": {"layers": [{"type": "flatten"}, {"type": "linear", "units": "num_classes"}]},
        }).json()["id"]
        job = wait_for(lambda: (j := _status(http, job_id))["status"] == "failed" and j, what="failure")
        assert "DatasetFilesMissingError" in job["error"] and "mnist" in job["error"]


def _events_now(http, job_id):
    """Every event so far (reads the stream until it goes idle)."""
    events, current = [], {}
    with http.stream("GET", f"/v1/jobs/{job_id}/events") as resp:
        for line in resp.iter_lines():
            if line.startswith(": keep-alive"):
                break
            if not line:
                if current:
                    events.append(current)
                current = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(": ")
                current[field] = value
    return events



def test_a_job_over_its_timeout_fails_with_the_reason(api, worker_factory):
    server = api(job_timeout_s=2)  # the API sets RQ's job_timeout when it enqueues
    worker_factory()
    with server.client() as http:
        job_id = http.post("/v1/jobs", json=tiny_job(e_max=500.0, policy="fixed", policy_params={"k": 500})).json()["id"]
        job = wait_for(lambda: (j := _status(http, job_id))["status"] == "failed" and j, timeout=60, what="timeout")
        assert job["error"] == "timed out after 2 s (PENG4NN_JOB_TIMEOUT_S)"
        assert _read_sse(http, f"/v1/jobs/{job_id}/events")[-1]["event"] == "result"


def test_a_workers_health_check_is_its_own_heartbeat(worker_factory, tmp_path):
    """The container health check (python -m peng4nn_worker.health) passes while this worker beats and fails
    once it is dead, whatever Redis says."""
    import subprocess
    import sys
    import time

    beat = tmp_path / "beat"
    env = {**os.environ, "PENG4NN_WORKER_HEARTBEAT_FILE": str(beat), "PENG4NN_WORKER_LEASE_S": "3"}
    health = [sys.executable, "-P", "-m", "peng4nn_worker.health"]
    assert subprocess.run(health, env=env, capture_output=True, timeout=30).returncode == 1  # no worker yet
    proc = worker_factory(PENG4NN_WORKER_HEARTBEAT_FILE=str(beat))
    wait_for(beat.exists, timeout=30, what="the first heartbeat file")
    assert subprocess.run(health, env=env, capture_output=True, timeout=30).returncode == 0
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    os.utime(beat, (time.time() - 7, time.time() - 7))  # the lease of 3 s gives a TTL of 6 s
    done = subprocess.run(health, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "last heartbeat" in done.stderr
