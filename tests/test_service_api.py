"""The REST API over real HTTP and a real Redis, without workers: submission, reads, every 4xx path, 503."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
from rq import Queue

from peng4nn_store.embedded import free_port
from tests.conftest import ROOT, TINY_CNN, tiny_job


def test_submit_answers_202_with_id_links_and_cost(api, redis_conn):
    server = api()
    with server.client() as http:
        resp = http.post("/v1/jobs", json=tiny_job(label="first", search="s1", seed=7))
        assert resp.status_code == 202, resp.text
        body = resp.json()
        assert body["status"] == "queued"
        assert body["params"] == 8 * 9 + 8 + 128 * 10 + 10
        assert resp.headers["location"] == body["links"]["self"] == f"/v1/jobs/{body['id']}"
        assert body["links"]["events"] == f"/v1/jobs/{body['id']}/events"

        job = http.get(body["links"]["self"]).json()
        assert (job["status"], job["label"], job["search"], job["seed"]) == ("queued", "first", "s1", 7)
        assert job["search_id"] == "s1"  # the deprecated old name, kept in answers for old clients
        assert job["iterations"] == 0 and job["latest"] is None and job["last_event_id"]
    assert Queue("peng4nn", connection=redis_conn).count == 1  # really enqueued on RQ


def test_the_default_policy_is_adaptive_in_a_search_and_paper_alone(api):
    server = api()
    with server.client() as http:
        in_search = http.post("/v1/jobs", json=tiny_job(search="s-default")).json()
        alone = http.post("/v1/jobs", json=tiny_job()).json()
        named = http.post("/v1/jobs", json=tiny_job(search_id="s-default", policy="paper")).json()  # old name
        policies = [http.get(f"/v1/jobs/{job['id']}").json()["policy"] for job in (in_search, alone, named)]
    assert policies == ["adaptive", "paper", "paper"]


def test_batch_keeps_order_and_is_all_or_nothing(api, redis_conn):
    server = api()
    with server.client() as http:
        resp = http.post("/v1/jobs/batch", json={"jobs": [tiny_job(label=f"n{i}") for i in range(3)]})
        assert resp.status_code == 202
        ids = [j["id"] for j in resp.json()["data"]]
        assert [http.get(f"/v1/jobs/{i}").json()["label"] for i in ids] == ["n0", "n1", "n2"]

        bad = tiny_job()
        bad["architecture"] = copy.deepcopy(TINY_CNN)
        bad["architecture"]["layers"][0]["kernel"] = 30
        resp = http.post("/v1/jobs/batch", json={"jobs": [tiny_job(), bad, tiny_job(dataset="nope")]})
        assert resp.status_code == 422
        locs = [e["loc"] for e in resp.json()["errors"]]
        assert ["body", "jobs", 1, "architecture", "layers", 0, "kernel"] in locs
        assert ["body", "jobs", 2, "dataset"] in locs
        assert http.get("/v1/jobs").json()["count"] == 3  # nothing of the bad batch was created


def test_list_filters_by_status_and_paginates(api):
    server = api()
    with server.client() as http:
        ids = [http.post("/v1/jobs", json=tiny_job()).json()["id"] for _ in range(5)]
        http.delete(f"/v1/jobs/{ids[0]}")
        page = http.get("/v1/jobs", params={"limit": 2, "offset": 1}).json()
        assert page["count"] == 5 and [j["id"] for j in page["data"]] == ids[::-1][1:3]
        cancelled = http.get("/v1/jobs", params={"status": "cancelled"}).json()
        assert cancelled["count"] == 1 and cancelled["data"][0]["id"] == ids[0]
        assert http.get("/v1/jobs", params={"status": "queued"}).json()["count"] == 4


@pytest.mark.parametrize("mutate, loc, words", [
    (lambda b: b.update(dataset="imagenet"), ["body", "dataset"], "unknown dataset 'imagenet'"),
    (lambda b: b["architecture"]["layers"][0].update(filters=0), ["body", "architecture", "layers", 0, "filters"], "greater than or equal to 1"),
    (lambda b: b["architecture"]["layers"][1].update(type="softplus"), ["body", "architecture", "layers", 1], "softplus"),
    (lambda b: b.update(colour="red"), ["body", "colour"], "unknown field"),
    (lambda b: b.update(policy="oracle"), ["body", "policy"], "oracle"),
    (lambda b: b.update(policy="adaptive"), ["body", "search"], "give search"),
    (lambda b: b.update(policy="patience", policy_params={"patience": -1}), ["body", "policy_params"], "patience"),
    (lambda b: b.update(estimator={"E": 1.0, "e_max": 0.5}), ["body", "estimator"], "e_max must be at least E"),
    (lambda b: b["architecture"]["layers"].pop(), ["body", "architecture", "layers"], "must end with shape (10,)"),
])
def test_invalid_submission_is_422_naming_the_field(api, mutate, loc, words):
    body = tiny_job()
    body["architecture"] = copy.deepcopy(TINY_CNN)
    mutate(body)
    with api().client() as http:
        resp = http.post("/v1/jobs", json=body)
    assert resp.status_code == 422, resp.text
    err = resp.json()
    assert err["code"] == "validation_error"
    assert any(e["loc"][: len(loc)] == loc for e in err["errors"]), err
    assert words in err["detail"], err["detail"]


def test_malformed_json_and_bad_query_and_header_are_422(api):
    server = api()
    with server.client() as http:
        resp = http.post("/v1/jobs", content=b'{"dataset": ', headers={"content-type": "application/json"})
        assert resp.status_code == 422 and "invalid JSON" in resp.json()["detail"]
        resp = http.get("/v1/jobs", params={"limit": 0})
        assert resp.status_code == 422 and resp.json()["errors"][0]["loc"] == ["query", "limit"]
        job_id = http.post("/v1/jobs", json=tiny_job()).json()["id"]
        resp = http.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "yesterday"})
        assert resp.status_code == 422 and resp.json()["errors"][0]["loc"] == ["header", "Last-Event-ID"]


def test_batch_over_the_limit_is_422(api):
    with api(max_batch=2).client() as http:
        resp = http.post("/v1/jobs/batch", json={"jobs": [tiny_job()] * 3})
    assert resp.status_code == 422 and resp.json()["errors"][0]["loc"] == ["body", "jobs"]
    assert "at most 2" in resp.json()["detail"]


def test_body_over_the_limit_is_413(api):
    with api(max_body_bytes=2048).client() as http:
        resp = http.post("/v1/jobs", json=tiny_job(label="x" * 3000))
        assert resp.status_code == 413
        assert resp.json()["code"] == "body_too_large"
        # also without Content-Length (chunked upload)
        resp = http.post("/v1/jobs", content=iter([json.dumps(tiny_job(label="x" * 3000)).encode()]),
                         headers={"content-type": "application/json"})
        assert resp.status_code == 413


def test_missing_job_is_404_everywhere(api):
    with api().client() as http:
        for method, path in [("GET", "/v1/jobs/abc123"), ("DELETE", "/v1/jobs/abc123"),
                             ("GET", "/v1/jobs/abc123/events"), ("GET", "/v1/jobs/abc123/result"),
                             ("GET", "/v1/jobs/not-an-id!")]:
            resp = http.request(method, path)
            assert resp.status_code == 404, (method, path)
            assert resp.json()["code"] == "job_not_found"
        assert http.get("/v1/nothing").json() == {"detail": "Not Found", "code": "not_found"}


def test_cancelling_an_ended_job_is_409_and_queued_job_result_is_409(api, redis_conn):
    with api().client() as http:
        job_id = http.post("/v1/jobs", json=tiny_job()).json()["id"]
        assert http.get(f"/v1/jobs/{job_id}/result").status_code == 409
        resp = http.delete(f"/v1/jobs/{job_id}")
        assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
        assert Queue("peng4nn", connection=redis_conn).count == 0  # removed from RQ: it never runs
        again = http.delete(f"/v1/jobs/{job_id}")
        assert again.status_code == 409 and again.json()["code"] == "state_conflict"
        assert "already cancelled" in again.json()["detail"]
        result = http.get(f"/v1/jobs/{job_id}/result").json()
        assert result == {"status": "cancelled", "result": None, "error": "cancelled before it started"}


def test_tokens_guard_every_v1_route_and_isolate_owners(api):
    server = api(api_tokens="alice-token,bob-token")
    with server.client() as anon, server.client("alice-token") as alice, server.client("bob-token") as bob:
        assert anon.get("/v1/jobs").status_code == 401
        assert anon.get("/v1/datasets").status_code == 401
        resp = anon.post("/v1/jobs", json=tiny_job())
        assert resp.status_code == 401 and resp.headers["www-authenticate"].startswith("Bearer")
        with server.client("mallory") as mallory:
            assert mallory.get("/v1/jobs").json()["code"] == "unauthorized"
        assert anon.get("/healthz").json()["status"] == "no_workers"  # probes need no token (503: no worker)

        job_id = alice.post("/v1/jobs", json=tiny_job()).json()["id"]
        assert alice.get(f"/v1/jobs/{job_id}").status_code == 200
        for method, path in [("GET", f"/v1/jobs/{job_id}"), ("DELETE", f"/v1/jobs/{job_id}"),
                             ("GET", f"/v1/jobs/{job_id}/events"), ("GET", f"/v1/jobs/{job_id}/result")]:
            assert bob.request(method, path).status_code == 404
        assert bob.get("/v1/jobs").json()["count"] == 0
        assert alice.get("/v1/jobs").json()["count"] == 1


def test_redis_down_is_503_not_404(api):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with api(redis_url=dead).client() as http:
        for method, path, body in [("GET", "/v1/jobs/abc", None), ("POST", "/v1/jobs", tiny_job()),
                                   ("GET", "/healthz", None), ("GET", "/v1/jobs", None)]:
            resp = http.request(method, path, json=body)
            assert resp.status_code == 503, (path, resp.text)
            assert resp.json()["code"] == "redis_unavailable"
        live = http.get("/livez")  # the process itself is fine: its container must not be restarted for Redis
        assert live.status_code == 200 and live.json()["status"] == "ok"


def test_stream_of_an_ended_job_replays_in_order_and_resumes(api):
    server = api()
    with server.client() as http:
        job_id = http.post("/v1/jobs", json=tiny_job()).json()["id"]
        http.delete(f"/v1/jobs/{job_id}")
        events = _read_sse(http, f"/v1/jobs/{job_id}/events")
        assert [(e["event"], json.loads(e["data"]).get("status")) for e in events] == [
            ("status", "queued"), ("status", "cancelled"), ("result", "cancelled")]
        assert events[-1]["id"] == http.get(f"/v1/jobs/{job_id}").json()["last_event_id"]
        rest = _read_sse(http, f"/v1/jobs/{job_id}/events", last_event_id=events[0]["id"])
        assert rest == events[1:]
        done = http.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": events[-1]["id"]})
        assert done.status_code == 204  # SSE clients stop reconnecting


def test_live_stream_keeps_alive_and_delivers_later_events(api):
    server = api(sse_keepalive_s=0.2)
    with server.client() as http, server.client() as other:
        job_id = http.post("/v1/jobs", json=tiny_job()).json()["id"]
        with http.stream("GET", f"/v1/jobs/{job_id}/events") as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            seen = []
            for line in resp.iter_lines():
                seen.append(line)
                if line.startswith(": keep-alive") and not any("cancelled" in s for s in seen):
                    other.delete(f"/v1/jobs/{job_id}")  # a change while the stream is open
                if line.startswith("event: result"):
                    break
            assert seen[0] == "event: status" and any(line.startswith(": keep-alive") for line in seen)
            assert sum(line == "event: status" for line in seen) == 2


def test_health_metrics_and_datasets(api):
    server = api()
    with server.client() as http:
        http.post("/v1/jobs", json=tiny_job())
        resp = http.get("/healthz")
        health = resp.json()
        assert resp.status_code == 503  # no live worker: a load balancer must not count this as healthy
        assert health["redis"] is True and health["workers"] == 0 and health["status"] == "no_workers"
        metrics = http.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert 'peng4nn_jobs{state="queued"} 1' in metrics.text
        assert "peng4nn_queue_depth 1" in metrics.text and "peng4nn_workers 0" in metrics.text
        datasets = http.get("/v1/datasets").json()
        digits = next(d for d in datasets["data"] if d["name"] == "digits")
        assert digits["input_shape"] == [1, 8, 8] and digits["num_classes"] == 10


def test_the_api_never_imports_torch():
    code = ("import sys; from peng4nn_service.app import create_app; create_app(); "
            "import peng4nn_worker.tasks, peng4nn_store.maintenance; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _read_sse(http, path: str, last_event_id: str | None = None) -> list[dict]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events, current = [], {}
    with http.stream("GET", path, headers=headers) as resp:
        assert resp.status_code == 200, resp.read()
        for line in resp.iter_lines():
            if not line:
                if current:
                    events.append(current)
                    if current.get("event") == "result":
                        break
                current = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(": ")
                current[field] = value
    return events


def test_search_is_one_name_on_jobs_and_sessions_and_the_old_one_still_works(api):
    """Jobs named it search_id, sessions search: both say search now; search_id is read as it (deprecated)."""
    import warnings

    from peng4nn.client import Client

    server = api()
    with server.client() as http:
        old = http.post("/v1/jobs", json=tiny_job(search_id="nas-9")).json()
        assert http.get(f"/v1/jobs/{old['id']}").json()["search"] == "nas-9"
        both = http.post("/v1/jobs", json=tiny_job(search_id="nas-9", search="other"))
        assert both.status_code == 422 and "not both" in both.json()["detail"]
        assert http.post("/v1/curves", json={"search": "nas-9"}).status_code == 201
    with Client(server.url) as client, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        job = client.submit(TINY_CNN, "digits", search_id="nas-9", estimator={"e_max": 1.0})
        assert client.get(job.id).search == "nas-9"
    assert any(issubclass(w.category, DeprecationWarning) and "search_id" in str(w.message) for w in caught)
    with server.client() as http:  # documented as deprecated, not silently gone
        schema = http.get("/openapi.json").json()["components"]["schemas"]
    assert schema["JobCreate"]["properties"]["search_id"]["deprecated"] is True
    assert schema["JobPublic"]["properties"]["search_id"]["deprecated"] is True
