"""Bad numbers, odd requests and Redis trouble get 4xx or a truthful 503 over real HTTP, never a 500.

Each case is one of the inputs that produced a 500, a misleading answer or a value that failed
later in a worker (issue 13), plus the locks: Redis passwords, the token requirement, retention.
"""

from __future__ import annotations

import json

import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ResponseError
from redis.retry import Retry

from peng4nn_store.embedded import EmbeddedRedis, free_port
from tests.conftest import TINY_CNN, make_settings, tiny_job

JSON = {"content-type": "application/json"}


def _error(response) -> tuple[int, list, str]:
    body = response.json()
    return response.status_code, (body.get("errors") or [{}])[0].get("loc"), body["detail"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path, raw, loc", [
    ("/v1/jobs", '{"architecture": %s, "dataset": "digits", "estimator": {"e_max": Infinity}}',
     ["body", "estimator", "e_max"]),
    ("/v1/jobs", '{"architecture": %s, "dataset": "digits", "estimator": {"t": NaN}}', ["body", "estimator", "t"]),
    ("/v1/jobs", '{"architecture": %s, "dataset": "digits", "policy": "patience", '
                 '"policy_params": {"patience": 1e999}}', ["body", "policy_params", "patience"]),
    ("/v1/curves", '{"estimator": {"e_max": Infinity}}', ["body", "estimator", "e_max"]),
])
def test_non_finite_numbers_are_422_at_their_field(api, path, raw, loc):
    with api().client() as http:
        response = http.post(path, content=raw.replace("%s", json.dumps(TINY_CNN)), headers=JSON)
    status, got_loc, detail = _error(response)
    assert (status, got_loc) == (422, loc), response.text
    assert "must be a finite number" in detail


@pytest.mark.timeout(60)
@pytest.mark.parametrize("estimator, loc, words", [
    ({"e_max": 1e9}, ["body", "estimator", "e_max"], "less than or equal to 10000"),
    ({"N": 1e9}, ["body", "estimator", "N"], "less than or equal to 1000"),
    ({"E": 1e-9}, ["body", "estimator", "E"], "greater than or equal to 0.001"),
    ({"t": 1e300}, ["body", "estimator", "t"], "less than or equal to 100"),
])
def test_settings_no_search_needs_are_422_not_a_six_hour_job(api, estimator, loc, words):
    with api().client() as http:
        for path, body in (("/v1/jobs", tiny_job() | {"estimator": estimator}),
                           ("/v1/curves", {"estimator": estimator})):
            status, got_loc, detail = _error(http.post(path, json=body))
            assert (status, got_loc) == (422, loc) and words in detail, (path, detail)
        status, got_loc, detail = _error(http.post("/v1/jobs", json=tiny_job(policy="patience",
                                                                             policy_params={"patience": 1e300})))
        assert status == 422 and got_loc == ["body", "policy_params"] and "patience" in detail


@pytest.mark.timeout(60)
@pytest.mark.parametrize("body, words", [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"points": [{"epoch": 1, "val_acc": 5}], "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b'{"points": [{"epoch": 1' + b"0" * 5000 + b', "val_acc": 5}]}', "integer string conversion"),
])
def test_unparseable_bodies_are_422_on_the_fast_path_and_the_route(api, body, words):
    with api().client() as http:
        curve_id = http.post("/v1/curves").json()["id"]
        for path in (f"/v1/curves/{curve_id}/observations", "/v1/jobs", "/v1/jobs/batch"):
            response = http.post(path, content=body, headers=JSON)
            assert response.status_code == 422, (path, response.text[:200])
            assert words in response.json()["detail"] and response.json()["code"] == "validation_error"


@pytest.mark.timeout(60)
def test_query_header_and_point_values_out_of_range_are_422(api):
    with api().client() as http:
        status, loc, _ = _error(http.get("/v1/jobs", params={"offset": "99999999999999999999"}))
        assert (status, loc) == (422, ["query", "offset"])
        job_id = http.post("/v1/jobs", json=tiny_job()).json()["id"]
        status, loc, detail = _error(http.get(f"/v1/jobs/{job_id}/events",
                                              headers={"Last-Event-ID": "99999999999999999999-0"}))
        assert (status, loc) == (422, ["header", "Last-Event-ID"]) and "at most 18446744073709551615" in detail
        curve_id = http.post("/v1/curves").json()["id"]
        for point, field in (({"epoch": 1, "val_acc": 5, "train_loss": False}, "train_loss"),
                             ({"epoch": 1, "val_acc": True}, "val_acc"),
                             ({"epoch": 1e308, "val_acc": 60}, "epoch"),
                             ({"epoch": 5e-324, "val_acc": 60}, "epoch")):
            status, loc, _ = _error(http.post(f"/v1/curves/{curve_id}/observations", json={"points": [point]}))
            assert (status, loc) == (422, ["body", "points", 0, field]), point
        assert http.get(f"/v1/curves/{curve_id}").json()["n_points"] == 0


@pytest.mark.timeout(60)
def test_authentication_comes_before_the_body(api):
    server = api(api_tokens="secret")
    with server.client() as anon:
        curve_path = "/v1/curves/" + "0" * 24 + "/observations"
        for path, body in (("/v1/jobs", b'{"dataset": '), ("/v1/jobs", b"[" * 50_000), (curve_path, b"{}"),
                           ("/v1/jobs/batch", b"\xff")):
            response = anon.post(path, content=body, headers=JSON)
            assert response.status_code == 401 and response.json()["code"] == "unauthorized", path
        assert anon.post("/v1/jobs", content=b"x" * (2 << 20), headers=JSON).status_code == 401


@pytest.mark.timeout(60)
def test_405_names_every_allowed_method(api):
    with api().client() as http:
        for path, allowed in (("/v1/jobs/abc", "GET, DELETE"), ("/v1/jobs", "GET, POST"), ("/healthz", "GET"),
                              ("/v1/curves/" + "0" * 24, "GET, DELETE")):
            response = http.put(path)
            assert response.status_code == 405 and response.headers["allow"] == allowed, path
            assert response.json()["code"] == "method_not_allowed" and allowed in response.json()["detail"]


@pytest.mark.timeout(60)
def test_a_wrong_redis_password_is_503_saying_so(api, redis_url):
    wrong = redis_url.replace("redis://:", "redis://:not-", 1)
    assert wrong != redis_url, "the session Redis has a password"
    with api(redis_url=wrong).client() as http:
        for response in (http.get("/v1/jobs"), http.post("/v1/jobs", json=tiny_job()), http.get("/healthz")):
            assert response.status_code == 503 and response.json()["code"] == "redis_auth", response.text
            assert "password" in response.json()["detail"]


@pytest.mark.timeout(60)
def test_a_full_store_refuses_writes_with_503_and_writes_nothing(api, tmp_path):
    with EmbeddedRedis() as tiny:
        Redis.from_url(tiny.url).config_set("maxmemory", "1")  # over the cap from now on: every write is refused
        with api(redis_url=tiny.url).client() as http:
            response = http.post("/v1/jobs", json=tiny_job())
            assert response.status_code == 503 and response.json()["code"] == "store_full"
            assert int(response.headers["Retry-After"]) > 0
            assert http.post("/v1/curves").json()["code"] == "store_full"
            assert http.get("/v1/jobs").json()["count"] == 0  # reads still answer


@pytest.mark.timeout(30)
def test_embedded_redis_needs_its_password():
    with EmbeddedRedis() as server:
        assert server.password and server.password not in server.public_url
        with pytest.raises((AuthenticationError, ResponseError)):
            Redis(port=server.port, retry=Retry(NoBackoff(), 0)).set("k", "v")
        assert Redis.from_url(server.url).ping()


@pytest.mark.timeout(30)
def test_tokens_can_be_required():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="PENG4NN_REQUIRE_TOKENS is on but PENG4NN_API_TOKENS is empty"):
        make_settings("redis://127.0.0.1:1/0", require_tokens=True)
    assert make_settings("redis://127.0.0.1:1/0", require_tokens=True, api_tokens="t").api_tokens == {"t"}


@pytest.mark.timeout(30)
def test_serve_on_a_public_interface_needs_tokens(capsys, monkeypatch):
    from peng4nn.cli import main

    monkeypatch.delenv("PENG4NN_API_TOKENS", raising=False)
    monkeypatch.delenv("PENG4NN_REQUIRE_TOKENS", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", str(free_port())]) == 2
    assert "PENG4NN_API_TOKENS is empty" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_retention_deletes_the_oldest_ended_jobs(api, redis_conn, redis_url):
    from peng4nn_store.maintenance import trim_ended_jobs
    from peng4nn_store.queue import make_queue

    queue = make_queue("peng4nn", Redis.from_url(redis_url))
    with api().client() as http:
        ids = [http.post("/v1/jobs", json=tiny_job()).json()["id"] for _ in range(5)]
        for job_id in ids[:4]:
            http.delete(f"/v1/jobs/{job_id}")  # four ended (cancelled), one still queued
        assert redis_conn.exists(f"rq:job:{ids[0]}")
        assert trim_ended_jobs(queue, keep=2) == 2
        assert [http.get(f"/v1/jobs/{i}").status_code for i in ids] == [404, 404, 200, 200, 200]
        listed = http.get("/v1/jobs").json()
        assert listed["count"] == 3 and {j["id"] for j in listed["data"]} == set(ids[2:])
        assert not any(redis_conn.exists(k) for k in (f"peng4nn:job:{ids[0]}:events", f"rq:job:{ids[0]}"))
        assert redis_conn.exists(f"rq:job:{ids[4]}")
        assert trim_ended_jobs(queue, keep=2) == 0


def test_the_policy_cache_is_bounded_by_points_not_only_entries():
    """A kept policy costs ~350 B per point: 4,096 long sessions would be 1.4 GB, so points are capped too."""
    from peng4nn.policies import make_policy
    from peng4nn_service.curve_sessions import PolicyCache, _Entry

    cache = PolicyCache(size=10, max_points=100)
    for i in range(3):
        cache.put(f"s{i}", _Entry(make_policy("paper"), 40, "o"))
    assert cache.get("s0") is None and cache.get("s1") and cache.get("s2") and cache.points == 80
    entry = cache.get("s1")
    entry.n_points = 70
    cache.put("s1", entry)  # grew past the budget: the least recently used goes
    assert cache.get("s2") is None and cache.points == 70 and len(cache) == 1
    cache.drop("s1")
    assert cache.points == 0 and len(cache) == 0
