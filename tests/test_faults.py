"""Fault injection against the real stack: embedded Redis, the API under uvicorn, real worker processes.

Each test is one of the attacks that broke the service (issue 13) and asserts the service now holds:
one tenant's poisoned numbers fail only its own request; Redis killed under a running job leaves
the job ended with a reason, the worker alive and health truthful; a killed worker stops being
counted; quotas answer 429 to the tenant over them and nobody else; a flood of event streams
cannot stop submissions; a function enqueued by someone with Redis access is refused and never runs.
How to run them alone: ``python -m pytest -q tests/test_faults.py`` (docs/SECURITY.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import httpx
import pytest
from redis import Redis
from rq import Callback, Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from peng4nn.policies import make_policy
from peng4nn_store.embedded import EmbeddedRedis, free_port
from peng4nn_store.keys import reservations_key
from tests.conftest import tiny_job, wait_for

A, B, C = "token-a", "token-b", "token-c"
TOKENS = f"{A},{B},{C}"

# The exact poisoning payloads of issue 13: a huge epoch, or a first epoch of 5e-324 and then 165.
HUGE_EPOCH = {"points": [{"epoch": 1e308, "val_acc": 60}]}
TINY_FIRST = {"points": [{"epoch": 5e-324, "val_acc": 10}]}
THEN_LARGE = {"points": [{"epoch": 165, "val_acc": 60}]}

VICTIM_CURVE = [(0.5, 20.0), (1.0, 35.0), (1.5, 44.0), (2.0, 50.0)]
"""Token B's curves: the first three points are posted first, so the fourth post is fitted in a batch."""


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _job_status(http, job_id):
    return http.get(f"/v1/jobs/{job_id}").json()


# ---------------------------------------------------------------------------------------------- tenants


@pytest.mark.timeout(60)
def test_one_tenants_poisoned_numbers_fail_only_its_own_posts(api):
    """Token A's poison is interleaved with token B's 30 simultaneous posts (so it lands in the same
    event-loop turns and fit batches, which made 26-29 of B's posts fail): B gets 30 right answers."""
    server = api(api_tokens=TOKENS)
    expected = make_policy("paper")
    for epoch, acc in VICTIM_CURVE:
        want = expected.observe(epoch, acc).to_dict()
    first_three = {"points": [{"epoch": e, "val_acc": a} for e, a in VICTIM_CURVE[:3]]}
    last = {"points": [{"epoch": VICTIM_CURVE[3][0], "val_acc": VICTIM_CURVE[3][1]}]}

    async def trial() -> tuple[list[httpx.Response], list[httpx.Response]]:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as http:
            async def session(token: str, body: dict | None = first_three) -> str:
                curve_id = (await http.post("/v1/curves", headers=_h(token))).json()["id"]
                if body is not None:
                    assert (await http.post(f"/v1/curves/{curve_id}/observations", json=body,
                                            headers=_h(token))).status_code == 200
                return curve_id

            victims = [await session(B) for _ in range(30)]
            huge = [await session(A) for _ in range(3)]
            tiny = [await session(A, None) for _ in range(3)]
            for curve_id in tiny:  # the first half of the second payload is refused at once
                refused = await http.post(f"/v1/curves/{curve_id}/observations", json=TINY_FIRST, headers=_h(A))
                assert refused.status_code == 422 and refused.json()["errors"][0]["loc"] == ["body", "points", 0,
                                                                                           "epoch"]
            posts = [http.post(f"/v1/curves/{c}/observations", json=last, headers=_h(B)) for c in victims]
            attacks = [http.post(f"/v1/curves/{c}/observations", json=HUGE_EPOCH, headers=_h(A)) for c in huge]
            attacks += [http.post(f"/v1/curves/{c}/observations", json=THEN_LARGE, headers=_h(A)) for c in tiny]
            for i, attack in enumerate(attacks):  # spread through B's posts, as concurrent clients would be
                posts.insert(5 * i + 2, attack)
            answers = await asyncio.gather(*posts)
            positions = [5 * i + 2 for i in range(len(attacks))]
            return ([answers[i] for i in positions], [a for i, a in enumerate(answers) if i not in positions])

    for _ in range(3):  # the failure was 3 of 3 trials
        attacks, victims = asyncio.run(trial())
        assert [r.status_code for r in victims] == [200] * 30
        assert all({k: v for k, v in r.json().items() if k != "n_points"} == want for r in victims)
        for response in attacks[:3]:
            assert response.status_code == 422, response.text
            assert response.json()["errors"][0]["loc"] == ["body", "points", 0, "epoch"]
            assert "less than or equal to 1000000" in response.json()["detail"]
        assert [r.status_code for r in attacks[3:]] == [200] * 3  # 165 as a first point is a plain point


# ---------------------------------------------------------------------------------------------- outages


@pytest.mark.timeout(120)
def test_redis_killed_under_a_running_job(api, worker_factory, tmp_path):
    """SIGKILL Redis mid-job and restart it from its append-only file: the job rides out the outage and
    completes with every iteration streamed once, the worker lives on and serves the next job, and
    health says what is true at each step. (An outage longer than the lease ends the job by the
    lease rule instead, as a killed worker does: tests/test_worker_jobs.py.)"""
    port, password, lease = free_port(), "outage-test-password", "30"
    redis = EmbeddedRedis(port=port, password=password, data_dir=str(tmp_path)).start()
    try:
        server = api(redis_url=redis.url, worker_lease_s=int(lease))
        worker = worker_factory(url=redis.url, PENG4NN_WORKER_LEASE_S=lease)
        with server.client() as http:
            job_id = http.post("/v1/jobs", json=tiny_job(e_max=6.0, policy="fixed",
                                                         policy_params={"k": 6})).json()["id"]
            wait_for(lambda: _job_status(http, job_id)["iterations"] >= 1, what="first iteration")
            os.kill(redis.process.pid, signal.SIGKILL)
            redis.process.wait()
            down = http.get("/healthz")
            assert down.status_code == 503 and down.json()["code"] == "redis_unavailable"
            time.sleep(1.5)  # iterations keep trying to publish meanwhile
            assert worker.poll() is None, "the worker died with Redis"
            redis = EmbeddedRedis(port=port, password=password, data_dir=str(tmp_path)).start()

            job = wait_for(lambda: (j := _status_or_none(http, job_id)) and j["status"] in
                           ("completed", "converged", "failed") and j, timeout=60, what="the job to end")
            assert job["status"] == "completed" and job["iterations"] == 12, job
            iterations = [e for e in _read_events(http, job_id) if e[0] == "iteration"]
            assert [json.loads(data)["iteration"] for _, data in iterations] == list(range(1, 13))
            assert worker.poll() is None
            health = wait_for(lambda: (r := http.get("/healthz")).status_code == 200 and r.json(), timeout=30,
                              what="health with the worker back")
            assert health["workers"] == 1
            after = http.post("/v1/jobs", json=tiny_job(e_max=1.0)).json()["id"]  # the same worker serves on
            done = wait_for(lambda: (j := _job_status(http, after))["status"] in ("completed", "converged") and j,
                            timeout=60, what="the next job")
            assert done["iterations"] == 2
    finally:
        redis.stop()


def _status_or_none(http, job_id):
    response = http.get(f"/v1/jobs/{job_id}")
    return response.json() if response.status_code == 200 else None


def _read_events(http, job_id) -> list[tuple[str, str]]:
    """Every event of an ended job as (type, data)."""
    events, kind = [], None
    with http.stream("GET", f"/v1/jobs/{job_id}/events") as resp:
        for line in resp.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, line.removeprefix("data: ")))
                if kind == "result":
                    break
    return events


@pytest.mark.timeout(60)
def test_a_killed_worker_stops_being_counted(api, worker_factory):
    server = api()
    proc = worker_factory()
    with server.client() as http:
        assert http.get("/healthz").json()["workers"] == 1
        os.kill(proc.pid, signal.SIGKILL)
        health = wait_for(lambda: (r := http.get("/healthz")).status_code == 503 and r.json(), timeout=20,
                          what="health to notice the dead worker")
        assert health["status"] == "no_workers" and health["workers"] == 0 and health["redis"] is True
        assert "peng4nn_workers 0" in http.get("/metrics").text


# ---------------------------------------------------------------------------------------------- quotas


@pytest.mark.timeout(60)
def test_quota_exhaustion_is_429_for_that_token_only(api):
    server = api(api_tokens=TOKENS, quota_active_jobs=3, quota_sessions=2)
    with server.client(A) as a, server.client(B) as b:
        ids = [a.post("/v1/jobs", json=tiny_job()).json()["id"] for _ in range(3)]
        over = a.post("/v1/jobs", json=tiny_job())
        assert over.status_code == 429 and over.json()["code"] == "too_many_jobs"
        assert int(over.headers["Retry-After"]) >= 1 and "at most 3" in over.json()["detail"]
        assert a.post("/v1/jobs/batch", json={"jobs": [tiny_job()] * 2}).status_code == 429
        assert b.post("/v1/jobs", json=tiny_job()).status_code == 202  # the other tenant is unaffected
        a.delete(f"/v1/jobs/{ids[0]}")  # a cancelled job frees its place
        assert a.post("/v1/jobs", json=tiny_job()).status_code == 202
        assert a.get("/v1/jobs").json()["count"] == 4  # nothing half-written by the refused ones

        sessions = [a.post("/v1/curves").json()["id"] for _ in range(2)]
        over = a.post("/v1/curves")
        assert over.status_code == 429 and over.json()["code"] == "too_many_sessions" and over.headers["Retry-After"]
        assert b.post("/v1/curves").status_code == 201
        assert a.delete(f"/v1/curves/{sessions[0]}").status_code == 204
        assert a.post("/v1/curves").status_code == 201


@pytest.mark.timeout(60)
def test_concurrent_submissions_never_overshoot_the_quota(api):
    """40 submissions at once (the fast path and the route, singles and batches) against a quota of 7."""
    server = api(api_tokens=TOKENS, quota_active_jobs=7)

    async def burst():
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30, headers=_h(A)) as http:
            singles = [http.post("/v1/jobs", json=tiny_job()) for _ in range(30)]
            batches = [http.post("/v1/jobs/batch", json={"jobs": [tiny_job()] * 2}) for _ in range(10)]
            answers = await asyncio.gather(*singles, *batches)
            listed = (await http.get("/v1/jobs", params={"limit": 100})).json()
            return answers, listed

    answers, listed = asyncio.run(burst())
    accepted = sum(len(r.json()["data"]) if "data" in r.json() else 1 for r in answers if r.status_code == 202)
    assert {r.status_code for r in answers} == {202, 429}
    assert accepted == listed["count"] == 7


def _chunked(body: dict):
    """A body without Content-Length: the fast path leaves it to the route."""
    yield json.dumps(body).encode()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", ["fast", "route"])
def test_an_idempotent_replay_takes_no_place_in_the_quota(api, redis_conn, path):
    """At its quota a token's retry with an earlier key is that job (not 429), and reserves nothing."""
    server = api(api_tokens=TOKENS, quota_active_jobs=2)

    def post(http, key, body=None):
        body = body or tiny_job()
        if path == "fast":
            return http.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
        return http.post("/v1/jobs", content=_chunked(body),
                         headers={"Idempotency-Key": key, "Content-Type": "application/json"})

    with server.client(A) as a:
        first, second = post(a, "k1"), post(a, "k2")
        assert first.status_code == second.status_code == 202
        again = post(a, "k1")
        assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
        assert again.headers["Idempotent-Replayed"] == "true"
        assert post(a, "k1", tiny_job(label="other")).status_code == 409  # reused key: 409, not 429
        assert post(a, "k3").status_code == 429  # a new job still does not fit
        assert redis_conn.zcard(reservations_key(_owner(A))) == 0  # nothing left reserved
        a.delete(f"/v1/jobs/{first.json()['id']}")
        assert post(a, "k3").status_code == 202  # the place freed by the cancel is free, none leaked
        assert a.get("/v1/jobs").json()["count"] == 3


@pytest.mark.timeout(60)
def test_racing_twins_of_one_key_release_their_reservations(api, redis_conn):
    """8 racing requests with one key (the losers' claims fail after reserving): one job, no reservation
    left behind, and the rest of the quota still usable."""
    server = api(api_tokens=TOKENS, quota_active_jobs=4)

    async def race():
        async with httpx.AsyncClient(base_url=server.url, timeout=30, headers=_h(A)) as http:
            return await asyncio.gather(*[http.post("/v1/jobs", json=tiny_job(), headers={"Idempotency-Key": "twin"})
                                          for _ in range(8)])

    answers = asyncio.run(race())
    assert {r.status_code for r in answers} == {202}
    assert len({r.json()["id"] for r in answers}) == 1
    assert redis_conn.zcard(reservations_key(_owner(A))) == 0
    with server.client(A) as a:
        assert [a.post("/v1/jobs", json=tiny_job()).status_code for _ in range(4)] == [202, 202, 202, 429]


def _owner(token: str) -> str:
    from peng4nn_service.access import owner_id

    return owner_id(token)


@pytest.mark.timeout(60)
def test_request_rate_quota_is_per_token(api):
    server = api(api_tokens=TOKENS, quota_requests_per_s=1, quota_request_burst=5)
    with server.client(A) as a, server.client(B) as b:
        assert [a.get("/v1/datasets").status_code for _ in range(5)] == [200] * 5
        over = a.get("/v1/datasets")
        assert over.status_code == 429 and over.json()["code"] == "rate_limited"
        assert 1 <= int(over.headers["Retry-After"]) <= 2
        assert a.post("/v1/jobs", json=tiny_job()).status_code == 429  # before any work or parsing
        assert b.get("/v1/datasets").status_code == 200
        assert a.get("/healthz").status_code in (200, 503)  # probes are not rate-limited


@pytest.mark.timeout(60)
def test_size_quotas_are_422_naming_the_field(api):
    server = api(api_tokens=TOKENS, quota_points_per_post=10, quota_epochs_per_job=50)
    with server.client(A) as a:
        curve_id = a.post("/v1/curves").json()["id"]
        points = [{"epoch": 0.5 * (i + 1), "val_acc": 10.0 + i} for i in range(11)]
        too_many = a.post(f"/v1/curves/{curve_id}/observations", json={"points": points})
        assert too_many.status_code == 422 and too_many.json()["errors"][0]["loc"] == ["body", "points"]
        assert "PENG4NN_QUOTA_POINTS_PER_POST" in too_many.json()["detail"]
        assert a.post(f"/v1/curves/{curve_id}/observations", json={"points": points[:10]}).status_code == 200

        long_job = a.post("/v1/jobs", json=tiny_job(e_max=60.0))
        assert long_job.status_code == 422
        assert long_job.json()["errors"][0]["loc"] == ["body", "estimator", "e_max"]
        sneaky = a.post("/v1/jobs", json=tiny_job(policy="patience", policy_params={"e_max": 60.0}))
        assert sneaky.status_code == 422
        assert sneaky.json()["errors"][0]["loc"] == ["body", "policy_params", "e_max"]
        assert a.post("/v1/jobs", json=tiny_job(e_max=50.0)).status_code == 202


@pytest.mark.timeout(60)
def test_a_stream_flood_cannot_stop_submissions(api):
    """Token A holds its quota of streams, token B fills the process's stream pool; C still submits."""
    server = api(api_tokens=TOKENS, stream_pool_size=12, quota_open_streams=8, sse_keepalive_s=0.5)
    with server.client(A) as a:
        job_a = a.post("/v1/jobs", json=tiny_job()).json()["id"]
    with server.client(B) as b:
        job_b = b.post("/v1/jobs", json=tiny_job()).json()["id"]

    async def flood():
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as http:
            async def open_stream(token, job_id):
                request = http.build_request("GET", f"/v1/jobs/{job_id}/events", headers=_h(token))
                return await http.send(request, stream=True)

            held = [await open_stream(A, job_a) for _ in range(8)]
            assert [r.status_code for r in held] == [200] * 8
            over = await open_stream(A, job_a)
            assert over.status_code == 429 and (await over.aread()) and over.headers["Retry-After"]
            assert over.json()["code"] == "too_many_streams"
            held += [await open_stream(B, job_b) for _ in range(4)]
            assert [r.status_code for r in held[8:]] == [200] * 4
            full = await open_stream(B, job_b)
            await full.aread()
            assert full.status_code == 503 and full.json()["code"] == "streams_full"  # not "unreachable"

            submitted = await asyncio.gather(*(http.post("/v1/jobs", json=tiny_job(), headers=_h(C))
                                               for _ in range(20)))
            assert [r.status_code for r in submitted] == [202] * 20
            assert (await http.get("/v1/jobs", headers=_h(C))).json()["count"] == 20
            assert (await http.get("/healthz")).json()["redis"] is True

            for response in held[:8]:
                await response.aclose()
            again = await wait_async(lambda: open_stream(B, job_b))
            assert again.status_code == 200
            await again.aclose()
            for response in held[8:]:
                await response.aclose()

    asyncio.run(flood())


async def wait_async(opener, timeout: float = 10.0):
    """Retry ``opener()`` until it answers 200 (a closed stream's slot is given back when its handler ends)."""
    deadline = time.monotonic() + timeout
    while True:
        response = await opener()
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        await response.aclose()
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------------------------------------- code execution


@pytest.mark.timeout(90)
def test_a_foreign_function_on_the_queue_is_refused_and_never_runs(api, worker_factory, redis_url, tmp_path):
    """What anyone with Redis access could do before: enqueue os.system. It must fail without running."""
    conn = Redis.from_url(redis_url)
    markers = [tmp_path / name for name in ("pickled", "json", "callback")]
    foreign = [
        Queue("peng4nn", connection=conn).enqueue("os.system", f"touch {markers[0]}"),  # RQ's default: pickle
        Queue("peng4nn", connection=conn, serializer=JSONSerializer).enqueue("os.system", f"touch {markers[1]}"),
        Queue("peng4nn", connection=conn, serializer=JSONSerializer).enqueue(
            "peng4nn_worker.tasks.run_job", "no-such-job", on_success=Callback("os.system")),
    ]
    server = api()
    worker = worker_factory()

    def ended(job: Job) -> bool:
        return Job.fetch(job.id, connection=conn, serializer=JSONSerializer).get_status() in ("failed", "finished")

    wait_for(lambda: all(ended(job) for job in foreign), timeout=30, what="the foreign jobs to be settled")
    statuses = [Job.fetch(job.id, connection=conn, serializer=JSONSerializer).get_status() for job in foreign]
    assert statuses == ["failed"] * 3
    assert not any(marker.exists() for marker in markers)
    failure = Job.fetch(foreign[1].id, connection=conn, serializer=JSONSerializer).latest_result()
    assert "not a PEng4NN task" in failure.exc_string
    assert worker.poll() is None
    with server.client() as http:  # and the worker still does its real work
        job_id = http.post("/v1/jobs", json=tiny_job(e_max=1.0)).json()["id"]
        wait_for(lambda: _job_status(http, job_id)["status"] in ("completed", "converged"), timeout=60,
                 what="a real job after the foreign ones")
