"""The observation fast path (service.fast_path) answers exactly what the FastAPI route answers."""

from __future__ import annotations

import json

import pytest

from service import fast_path


def chunked(payload: dict):
    """A body without Content-Length: the fast path leaves it to the route."""
    yield json.dumps(payload).encode()


@pytest.fixture
def fast_answers(monkeypatch):
    """Counts the successful answers the fast path itself writes."""
    count = {"n": 0}
    real = fast_path.JSONResponse

    def counting(content):
        count["n"] += 1
        return real(content)

    monkeypatch.setattr(fast_path, "JSONResponse", counting)
    return count


@pytest.mark.parametrize("tokens", [None, ["secret-token"]])
def test_fast_path_and_route_give_the_same_answers(api, fast_answers, tokens):
    server = api(api_tokens=tokens) if tokens else api()
    token = tokens[0] if tokens else None
    points = [{"epoch": 0.5 * (i + 1), "val_acc": 20 + 40 * (1 - 0.85 ** i)} for i in range(12)]
    with server.client(token) as http:
        ids = [http.post("/v1/curves", json={}).json()["id"] for _ in range(2)]
        fast_path_answers = 0
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
