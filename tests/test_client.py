"""The client SDK against the real service: typed results, server messages in exceptions, resume across an API restart."""

from __future__ import annotations

import asyncio

import pytest
from redis import Redis

from peng4nn.backoff import Backoff
from peng4nn.client import (
    AsyncClient,
    AuthError,
    Client,
    ConflictError,
    ConnectionFailed,
    NotFoundError,
    ValidationError,
)
from peng4nn.jobs import IterationPublic, JobStatus, ResultEventData, StatusEventData
from peng4nn_store.embedded import free_port
from peng4nn_store.job_store import JobStore
from tests.conftest import TINY_CNN


def test_client_round_trip_and_typed_errors(api):
    server = api()
    with Client(server.url) as client:
        accepted = client.submit(TINY_CNN, "digits", estimator={"e_max": 1.0}, label="a", seed=3)
        assert accepted.status is JobStatus.QUEUED and accepted.params > 0
        job = client.get(accepted.id)
        assert job.label == "a" and job.seed == 3 and job.status is JobStatus.QUEUED
        batch = client.submit_batch([{"architecture": TINY_CNN, "dataset": "digits"}] * 2)
        assert len(batch) == 2 and client.list(status="queued").count == 3
        assert client.cancel(accepted.id).status is JobStatus.CANCELLED
        assert client.result(accepted.id).status is JobStatus.CANCELLED
        assert "digits" in [d.name for d in client.datasets().data]

        with pytest.raises(ConflictError) as conflict:
            client.cancel(accepted.id)
        assert "already cancelled" in conflict.value.detail and conflict.value.status_code == 409
        with pytest.raises(NotFoundError, match="does not exist"):
            client.get("f" * 32)
        with pytest.raises(ValidationError) as invalid:
            client.submit_batch([{"architecture": TINY_CNN, "dataset": "nope"}])
        assert invalid.value.errors[0]["loc"] == ["body", "jobs", 0, "dataset"]
        assert "unknown dataset 'nope'" in str(invalid.value)
    with pytest.raises(ConnectionFailed, match="cannot reach"):  # no retries (test_client_retries: with them)
        Client(f"http://127.0.0.1:{free_port()}", backoff=Backoff(deadline_s=0)).get("abc")


def test_client_sends_its_token(api):
    server = api(api_tokens="secret")
    with pytest.raises(AuthError, match="missing bearer token"):
        Client(server.url).list()
    with Client(server.url, token="secret") as client:
        assert client.list().count == 0


def test_stream_resumes_across_an_api_restart_without_loss_or_repeats(api, worker_factory, redis_url, redis_conn):
    port = free_port()
    first = api(port=port)
    worker_factory()
    client = Client(first.url)
    job_id = client.submit(TINY_CNN, "digits", estimator={"e_max": 3.0}, policy="fixed",
                           policy_params={"k": 3.0}).id
    seen = []
    restarted = None
    for event in client.stream(job_id):
        seen.append(event)
        if len(seen) == 4 and restarted is None:
            first.stop()  # drops the open stream; the client reconnects with Last-Event-ID
            restarted = api(port=port)
    stored = JobStore(Redis.from_url(redis_url, decode_responses=True), 60).events(job_id)
    assert [e.id for e in seen] == [eid for eid, _, _ in stored]
    assert isinstance(seen[0].typed, StatusEventData) and isinstance(seen[3].typed, IterationPublic)
    final = seen[-1].typed
    assert isinstance(final, ResultEventData) and final.status is JobStatus.COMPLETED
    job = client.get(job_id)  # the record survived the restart
    assert job.status is JobStatus.COMPLETED and job.iterations == 6
    assert client.wait(job_id, timeout=5).result.epochs_trained == 3.0
    client.close()


def test_async_client_submits_streams_and_waits(api, worker_factory):
    server = api()
    worker_factory()

    async def scenario():
        async with AsyncClient(server.url) as client:
            jobs = await client.submit_batch([{"architecture": TINY_CNN, "dataset": "digits",
                                               "estimator": {"e_max": 1.0}}] * 2)
            events = [e async for e in client.stream(jobs[0].id)]
            done = await client.wait(jobs[1].id, timeout=60, poll_s=0.1)
            with pytest.raises(NotFoundError):
                await client.get("0" * 32)
            return events, done

    events, done = asyncio.run(scenario())
    assert [e.event for e in events][:2] == ["status", "status"] and events[-1].event == "result"
    assert sum(e.event == "iteration" for e in events) == 2
    assert done.status in (JobStatus.COMPLETED, JobStatus.CONVERGED) and done.iterations == 2
