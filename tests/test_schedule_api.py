"""Issue 12's inputs over HTTP: a session's learning-rate schedule and network metadata, a point's rate,
and a job's schedule checked at submission. Real HTTP through the app on the embedded Redis.

What reaches the policy is read back from what the policy gives its search when the network
finishes (`AdaptivePolicy.outcome`: the rate of each point and the network's features), so a
schedule or rate that is dropped on the way, on creation or on a rebuild from Redis, fails here.
"""

from __future__ import annotations

import json
import math

import pytest

from peng4nn.client import Client, ValidationError
from peng4nn.integrations import open_curve
from peng4nn.network_info import NetworkInfo
from peng4nn.schedule import LRSchedule
from tests.conftest import tiny_job

pytestmark = pytest.mark.timeout(60)

STEP = {"kind": "step", "milestones": [1.0], "gamma": 0.1}
NETWORK = {"num_params": 12_000, "depth": 4, "initial_lr": 0.05}
POINTS = [(0.5, 20.0), (1.0, 31.0), (1.5, 38.0), (2.0, 41.0)]
JSON = {"Content-Type": "application/json"}


def _finished(redis_conn, search: str) -> list[dict]:
    """The networks a search has learned (owner ``public``: tokens are off)."""
    return [json.loads(raw) for raw in redis_conn.lrange(f"peng4nn:search:public:{search}:networks", 0, -1)]


@pytest.mark.parametrize("cache_size", [4096, 0], ids=["cached", "rebuilt-every-post"])
def test_schedule_and_network_reach_the_policy(api, redis_conn, cache_size):
    server = api(curve_cache_size=cache_size)
    with server.client() as http:
        opened = http.post("/v1/curves", json={"search": "s1", "estimator": {"e_max": 4}, "schedule": STEP,
                                               "network": NETWORK})
        assert opened.status_code == 201, opened.text
        curve = opened.json()["id"]
        for epoch, acc in POINTS:
            assert http.post(f"/v1/curves/{curve}/observations",
                             json={"points": [{"epoch": epoch, "val_acc": acc}]}).status_code == 200
        shown = http.get(f"/v1/curves/{curve}").json()
        assert shown["schedule"]["milestones"] == [1.0] and shown["network"]["depth"] == 4
        assert http.delete(f"/v1/curves/{curve}").status_code == 204  # joins its search
    [network] = _finished(redis_conn, "s1")
    bound = LRSchedule(**STEP).bound(4.0)
    assert network["rates"] == [bound.rate_at(e) for e, _ in POINTS] == [1.0, 1.0, 0.1, 0.1]
    assert network["info"] == list(NetworkInfo(**NETWORK).features())


@pytest.mark.parametrize("cache_size", [4096, 0], ids=["cached", "rebuilt-every-post"])
def test_a_points_rate_is_stored_shown_and_observed(api, redis_conn, cache_size):
    server = api(curve_cache_size=cache_size)
    rates = [0.1, 0.1, 0.01, 0.01]
    with server.client() as http:
        curve = http.post("/v1/curves", json={"search": "s2", "estimator": {"e_max": 4}}).json()["id"]
        for (epoch, acc), lr in zip(POINTS, rates):
            answer = http.post(f"/v1/curves/{curve}/observations",
                               json={"points": [{"epoch": epoch, "val_acc": acc, "lr": lr}]})
            assert answer.status_code == 200, answer.text
        assert [p["lr"] for p in http.get(f"/v1/curves/{curve}").json()["points"]] == rates
        http.delete(f"/v1/curves/{curve}")
    [network] = _finished(redis_conn, "s2")
    assert network["rates"] == rates  # the reported rates, not a schedule's


@pytest.mark.parametrize("schedule, e_max, field", [
    ({"kind": "step", "milestones": [2.0, 4.0]}, 4, "milestones"),  # at e_max
    ({"kind": "step", "milestones": [25.0]}, None, "milestones"),  # beyond the default e_max (20)
    ({"kind": "cosine", "warmup_epochs": 5}, 5, "warmup_epochs"),
])
def test_a_schedule_past_the_run_is_422_naming_its_field(api, schedule, e_max, field):
    body = {"schedule": schedule} | ({"estimator": {"e_max": e_max}} if e_max else {})
    with api().client() as http:
        for response in (http.post("/v1/curves", json=body),  # the fast path
                         http.post("/v1/curves", content=_chunked(body), headers=JSON)):  # the route
            assert response.status_code == 422, response.text
            error = response.json()
            assert error["errors"][0]["loc"] == ["body", "schedule", field]
            assert f"body.schedule.{field}" in error["detail"] and "e_max" in error["detail"]
        assert http.get("/v1/jobs").status_code == 200


@pytest.mark.parametrize("raw, words", [
    (b'{"points": [{"epoch": 1, "val_acc": 5, "lr": -0.1}]}', "greater than or equal to 0"),
    (b'{"points": [{"epoch": 1, "val_acc": 5, "lr": NaN}]}', "finite"),
    (b'{"points": [{"epoch": 1, "val_acc": 5, "lr": Infinity}]}', "finite"),
    (b'{"points": [{"epoch": 1, "val_acc": 5}, {"epoch": 2, "val_acc": 6, "lr": "fast"}]}', "number"),
])
def test_a_bad_rate_is_422_at_its_point_and_records_nothing(api, raw, words):
    with api().client() as http:
        curve = http.post("/v1/curves").json()["id"]
        for response in (http.post(f"/v1/curves/{curve}/observations", content=raw, headers=JSON),
                         http.post(f"/v1/curves/{curve}/observations", content=_chunked_raw(raw), headers=JSON)):
            assert response.status_code == 422, response.text
            [error] = response.json()["errors"][:1]
            index = 1 if b'"fast"' in raw else 0
            assert error["loc"] == ["body", "points", index, "lr"]
            assert words in error["msg"]
        assert http.get(f"/v1/curves/{curve}").json()["n_points"] == 0


def test_a_jobs_schedule_past_its_e_max_is_422_at_submission(api):
    job = tiny_job(e_max=2.0)
    job["architecture"] = {**job["architecture"],
                           "training": {**job["architecture"].get("training", {}),
                                        "schedule": {"kind": "step", "milestones": [1.0, 2.0]}}}
    with api().client() as http:
        single = http.post("/v1/jobs", json=job)
        batch = http.post("/v1/jobs/batch", json={"jobs": [tiny_job(), job]})
        for response, loc in ((single, ["body"]), (batch, ["body", "jobs", 1])):
            assert response.status_code == 422, response.text
            assert response.json()["errors"][0]["loc"] == [*loc, "architecture", "training", "schedule", "milestones"]
            assert "not before e_max" in response.json()["errors"][0]["msg"]
        fits = {**job, "estimator": {"e_max": 3.0}}  # the same schedule fits a longer run
        assert http.post("/v1/jobs", json=fits).status_code == 202
        assert http.get("/v1/jobs").json()["count"] == 1  # nothing of the refused ones was queued


def test_sdk_and_remote_plugin_curve_send_schedule_network_and_rates(api, redis_conn):
    server = api()
    with Client(server.url) as client:
        session = client.observe(estimator={"e_max": 4}, search="s3", schedule=LRSchedule(**STEP),
                                 network=NetworkInfo(**NETWORK))
        for (epoch, acc), lr in zip(POINTS, [0.05, 0.05, 0.005, 0.005]):
            session.observe(epoch, acc, lr=lr)
        shown = session.get()
        assert shown["schedule"]["kind"] == "step" and shown["network"]["num_params"] == 12_000
        assert [p["lr"] for p in shown["points"]] == [0.05, 0.05, 0.005, 0.005]
        with pytest.raises(ValidationError) as refused:
            client.observe(estimator={"e_max": 1}, schedule={"kind": "step", "milestones": [1.0]})
        assert refused.value.errors[0]["loc"] == ["body", "schedule", "milestones"]

        # A plug-in's remote curve: the bound schedule goes as its LRSchedule, each rate with its point.
        curve = open_curve(client, policy="adaptive", search="s4", estimator={"e_max": 4},
                           schedule=LRSchedule(**STEP).bound(4.0))
        curve.observe(0.5, 20.0, lr=0.3)
        seen = curve.get()
        assert seen["schedule"]["milestones"] == [1.0] and seen["points"][0]["lr"] == 0.3
        curve.finish()
    [network] = _finished(redis_conn, "s4")
    assert network["rates"] == [0.3]


def _chunked(body: dict):
    """A body without Content-Length: the fast path leaves it to the route."""
    yield json.dumps(body).encode()


def _chunked_raw(raw: bytes):
    yield raw


def test_rates_are_finite_in_the_engine_too():
    """The engine's own check, which the service's 422 mirrors (a NaN rate never reaches a fit)."""
    from peng4nn.policies import make_policy

    with pytest.raises(ValueError, match="lr"):
        make_policy("paper").observe(1.0, 10.0, lr=math.nan)
