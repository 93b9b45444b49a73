"""The observation fast path (peng4nn_service.fast_path) answers exactly what the FastAPI route answers."""

from __future__ import annotations

import json

import pytest

from peng4nn_service import fast_path


def chunked(payload: dict):
    """A body without Content-Length: the fast path leaves it to the route."""
    yield json.dumps(payload).encode()


@pytest.fixture
def fast_answers(monkeypatch):
    """Counts the successful answers the fast path itself writes."""
    count = {"n": 0}
    real = fast_path.JSONResponse

    def counting(*args, **kwargs):
        count["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(fast_path, "JSONResponse", counting)
    return count


@pytest.mark.parametrize("tokens", [None, ["secret-token"]])
def test_fast_path_and_route_give_the_same_answers(api, fast_answers, tokens):
    server = api(api_tokens=tokens) if tokens else api()
    token = tokens[0] if tokens else None
    points = [{"epoch": 0.5 * (i + 1), "val_acc": 20 + 40 * (1 - 0.85 ** i)} for i in range(12)]
    with server.client(token) as http:
        ids = [http.post("/v1/curves", json={}).json()["id"] for _ in range(2)]
        fast_path_answers = 2  # the two session opens
        for point in points:
            via_fast = http.post(f"/v1/curves/{ids[0]}/observations", json={"points": [point]})
            via_route = http.post(f"/v1/curves/{ids[1]}/observations", content=chunked({"points": [point]}),
                                  headers={"Content-Type": "application/json"})
            assert via_fast.status_code == via_route.status_code == 200
            assert via_fast.content == via_route.content  # byte for byte, fit parameters included
            assert via_fast.headers["content-type"] == via_route.headers["content-type"]
            fast_path_answers += 1
        assert fast_answers["n"] == fast_path_answers  # the chunked posts never took the fast path
        # Errors: the fast path's (409 from the session, 404) and the route's (422, 401) are the same bodies.
        cases = [
            (ids[0], {"points": [points[0]]}, 409),                       # stale epoch
            ("0" * 24, {"points": [points[0]]}, 404),                     # no such session
            (ids[0], {"points": [{"epoch": 99.0, "val_acc": 101.0}]}, 422),  # out of range: the route's 422
            (ids[0], {"points": []}, 422),
        ]
        for curve_id, body, status in cases:
            a = http.post(f"/v1/curves/{curve_id}/observations", json=body)
            b = http.post(f"/v1/curves/{curve_id}/observations", content=chunked(body),
                          headers={"Content-Type": "application/json"})
            assert a.status_code == b.status_code == status, (a.text, b.text)
            assert a.json() == b.json()
        assert fast_answers["n"] == fast_path_answers
        assert len(http.get(f"/v1/curves/{ids[0]}").json()["points"]) == len(points)  # errors changed nothing
    if tokens:
        with server.client("wrong-token") as http:
            response = http.post(f"/v1/curves/{ids[0]}/observations", json={"points": [{"epoch": 50.0, "val_acc": 1}]})
            assert response.status_code == 401 and response.json()["code"] == "unauthorized"
        with server.client() as http:
            assert http.post(f"/v1/curves/{ids[0]}/observations",
                             json={"points": [{"epoch": 50.0, "val_acc": 1}]}).status_code == 401


def test_job_submission_fast_path_matches_the_route(api, monkeypatch):
    from tests.conftest import tiny_job

    written = {"n": 0}
    real = fast_path.model_response

    def counting(*args, **kwargs):
        written["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(fast_path, "model_response", counting)
    server = api()
    with server.client() as http:
        via_fast = http.post("/v1/jobs", json=tiny_job())
        via_route = http.post("/v1/jobs", content=chunked(tiny_job()), headers={"Content-Type": "application/json"})
        assert via_fast.status_code == via_route.status_code == 202
        assert written["n"] == 1
        a, b = via_fast.json(), via_route.json()
        assert a.keys() == b.keys() and a["id"] != b["id"]
        assert {k: a[k] for k in ("status", "params", "flops")} == {k: b[k] for k in ("status", "params", "flops")}
        assert via_fast.headers["location"] == a["links"]["self"]
        for job_id in (a["id"], b["id"]):  # both really queued, with their records
            assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
        bad_dataset = tiny_job(dataset="no-such-dataset")  # refused by our validation after the model
        not_a_job = {"architecture": "nope"}  # refused by the model: the route answers
        for body in (bad_dataset, not_a_job):
            x = http.post("/v1/jobs", json=body)
            y = http.post("/v1/jobs", content=chunked(body), headers={"Content-Type": "application/json"})
            assert x.status_code == y.status_code == 422 and x.json() == y.json()
        bad_json = http.post("/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"})
        assert bad_json.status_code == 422 and bad_json.json()["code"] == "validation_error"
        assert written["n"] == 1


def test_session_opening_fast_path_matches_the_route(api, fast_answers):
    server = api()
    with server.client() as http:
        for body in ({}, {"estimator": {"N": 4, "e_max": 10.0}, "num_classes": 100, "label": "x"}):
            a = http.post("/v1/curves", json=body)
            b = http.post("/v1/curves", content=chunked(body), headers={"Content-Type": "application/json"})
            assert a.status_code == b.status_code == 201
            assert a.json().keys() == b.json().keys() and a.json()["expires_in_s"] == b.json()["expires_in_s"]
            assert a.headers["location"] == f"/v1/curves/{a.json()['id']}"
            assert http.get(a.headers["location"]).json()["estimator"] == http.get(b.headers["location"]).json()["estimator"]
        assert fast_answers["n"] == 2
        for body in ({"estimator": {"N": 0}}, {"bogus": 1}):  # the model refuses: the route's 422 either way
            a = http.post("/v1/curves", json=body)
            b = http.post("/v1/curves", content=chunked(body), headers={"Content-Type": "application/json"})
            assert a.status_code == b.status_code == 422 and a.json() == b.json()
        assert http.post("/v1/curves").status_code == 201  # no body at all: the route's default
        assert fast_answers["n"] == 2
