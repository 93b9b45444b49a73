"""Observe mode over real HTTP: the app under uvicorn on the embedded Redis (fixtures in conftest.py)."""

from __future__ import annotations

import asyncio
import csv
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from peng4nn.client import AsyncClient, Client, ConflictError, NotFoundError, ValidationError
from peng4nn.policies import make_policy
from peng4nn_store.keys import points_key, session_key

CURVES_CSV = Path(__file__).resolve().parents[1] / "examples" / "data" / "penguin-cifar100-sample.csv"
"""Three real CIFAR-100 curves (half-epoch points, both losses), shipped with the examples."""


@pytest.fixture(scope="module")
def curves() -> list[list[dict]]:
    """Three real CIFAR-100 curves, points every half epoch with both losses."""
    by_model: dict[str, list[dict]] = defaultdict(list)
    with CURVES_CSV.open() as f:
        for row in csv.DictReader(f):
            by_model[row["model_id"]].append(
                {k: float(row[k]) for k in ("epoch", "val_acc", "val_loss", "train_loss")}
            )
    return list(by_model.values())


def library_decisions(points, **kwargs) -> list[dict]:
    """What the library's policy says after each point, in the API's JSON form."""
    policy = make_policy("paper", **kwargs)
    return [policy.observe(**p).to_dict() for p in points]


def open_curve(http, **body) -> str:
    response = http.post("/v1/curves", json=body)
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == f"/v1/curves/{response.json()['id']}"
    return response.json()["id"]


def post(http, curve_id, *points):
    return http.post(f"/v1/curves/{curve_id}/observations", json={"points": list(points)})


def decision_of(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k != "n_points"}


def test_session_lifecycle(api, curves):
    server = api()
    with server.client() as http:
        curve_id = open_curve(http, num_classes=100, label="resnet-7", estimator={"N": 3, "t": 0.5})
        first = curves[0][:6]
        for i, point in enumerate(first, 1):
            response = post(http, curve_id, point)
            assert response.status_code == 200, response.text
            assert response.json()["n_points"] == i

        body = http.get(f"/v1/curves/{curve_id}").json()
        assert body["label"] == "resnet-7" and body["num_classes"] == 100
        assert body["estimator"]["N"] == 3 and body["estimator"]["e_max"] == 20
        assert body["n_points"] == 6 and [p["epoch"] for p in body["points"]] == [p["epoch"] for p in first]
        assert body["points"][0]["val_loss"] == first[0]["val_loss"]
        assert body["latest"] == body["points"][-1]["decision"]
        assert 0 < body["expires_in_s"] <= 24 * 3600

        assert http.delete(f"/v1/curves/{curve_id}").status_code == 204
        for response in (http.get(f"/v1/curves/{curve_id}"), post(http, curve_id, curves[0][6]),
                         http.delete(f"/v1/curves/{curve_id}")):
            assert response.status_code == 404
            assert response.json()["code"] == "curve_not_found"
        assert http.post("/v1/curves").status_code == 201  # every field optional, no body at all


def test_the_default_policy_is_adaptive_in_a_search_and_paper_alone(api):
    server = api()
    with server.client() as http:
        ids = [open_curve(http, search="s-default"), open_curve(http), open_curve(http, search="s-default",
                                                                                policy="paper")]
        policies = [http.get(f"/v1/curves/{curve_id}").json()["policy"] for curve_id in ids]
    assert policies == ["adaptive", "paper", "paper"]


def test_decisions_equal_the_library_policy(api, curves):
    server = api()
    with server.client() as http:
        for points in curves:
            expected = library_decisions(points, num_classes=100)
            one_by_one = open_curve(http, num_classes=100)
            answers = [decision_of(post(http, one_by_one, p).json()) for p in points]
            assert answers == expected

            batched = open_curve(http, num_classes=100)
            assert decision_of(post(http, batched, *points[:7]).json()) == expected[6]
            assert decision_of(post(http, batched, *points[7:]).json()) == expected[-1]
            stored = http.get(f"/v1/curves/{batched}").json()
            assert [p["decision"] for p in stored["points"]] == expected
            first_stop = next((d for d in expected if d["stop"]), None)
            assert stored["final"] == first_stop
        assert any(d["converged"] for d in expected), "the recorded curves converge"


def test_estimator_settings_and_loss_check_reach_the_policy(api, curves):
    settings = {"N": 5, "t": 0.2, "loss_check": True, "L": 3, "e_max": 15}
    server = api()
    with server.client() as http:
        curve_id = open_curve(http, estimator=settings, num_classes=100)
        answers = [decision_of(post(http, curve_id, p).json()) for p in curves[1]]
        assert answers == library_decisions(curves[1], estimator=settings, num_classes=100)


def test_duplicate_or_earlier_epoch_is_409_and_changes_nothing(api, curves):
    points = curves[0]
    server = api()
    with server.client() as http:
        curve_id = open_curve(http, num_classes=100)
        post(http, curve_id, *points[:5])
        for bad in ([points[4]], [points[2]], [points[5], points[5]], [points[6], points[5]]):
            response = post(http, curve_id, *bad)
            assert response.status_code == 409, response.text
            assert response.json()["code"] == "epoch_not_increasing"
            assert "must be greater than" in response.json()["detail"]
            assert "Nothing was recorded" in response.json()["detail"]
        assert http.get(f"/v1/curves/{curve_id}").json()["n_points"] == 5
        answer = post(http, curve_id, *points[5:]).json()
        assert decision_of(answer) == library_decisions(points, num_classes=100)[-1]
        assert answer["n_points"] == len(points)


@pytest.mark.parametrize(
    ("raw", "loc", "says"),
    [
        ('{"points": [{"epoch": 1.0, "val_acc": NaN}]}', ["body", "points", 0, "val_acc"], "finite"),
        ('{"points": [{"epoch": 1.0, "val_acc": 50}, {"epoch": 2.0, "val_acc": Infinity}]}',
         ["body", "points", 1, "val_acc"], "finite"),
        ('{"points": [{"epoch": 1.0, "val_acc": 100.5}]}', ["body", "points", 0, "val_acc"], "less than or equal"),
        ('{"points": [{"epoch": 1.0, "val_acc": -0.1}]}', ["body", "points", 0, "val_acc"], "greater than or equal"),
        ('{"points": [{"epoch": 0, "val_acc": 10}]}', ["body", "points", 0, "epoch"], "greater than or equal to 0.000001"),
        ('{"points": [{"epoch": 1, "val_acc": 10, "val_loss": NaN}]}', ["body", "points", 0, "val_loss"], "finite"),
        ('{"points": [{"epoch": 1}]}', ["body", "points", 0, "val_acc"], "required"),
        ('{"points": [{"epoch": 1, "val_acc": 5, "acc": 5}]}', ["body", "points", 0, "acc"], "unknown field"),
        ('{"points": []}', ["body", "points"], "at least 1"),
    ],
)
def test_invalid_points_are_422_with_the_field_path(api, raw, loc, says):
    server = api()
    with server.client() as http:
        curve_id = open_curve(http)
        response = http.post(f"/v1/curves/{curve_id}/observations", content=raw,
                             headers={"Content-Type": "application/json"})
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["code"] == "validation_error"
        assert body["errors"][0]["loc"] == loc
        assert says in body["errors"][0]["msg"]
        assert http.get(f"/v1/curves/{curve_id}").json()["n_points"] == 0


def test_policy_refusal_is_422_and_records_nothing(api, curves):
    server = api()
    with server.client() as http:
        curve_id = open_curve(http, estimator={"loss_check": True})
        post(http, curve_id, *curves[0][:3])
        no_loss = {"epoch": 9.0, "val_acc": 20.0}
        response = post(http, curve_id, curves[0][3], no_loss)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["loc"] == ["body", "points", 1, "val_loss"]
        assert "val_loss must be a finite number when loss_check is on" in response.json()["detail"]
        assert http.get(f"/v1/curves/{curve_id}").json()["n_points"] == 3
        answer = post(http, curve_id, *curves[0][3:]).json()  # the dropped policy was rebuilt from Redis
        expected = library_decisions(curves[0], estimator={"loss_check": True})
        assert decision_of(answer) == expected[-1]


def test_ids_that_are_not_session_ids_never_reach_redis(api):
    server = api()
    with server.client() as http:
        curve_id = open_curve(http)
        for path in (f"/v1/curves/{curve_id}:points", f"/v1/curves/{curve_id}:points/observations"):
            response = http.get(path) if not path.endswith("observations") else http.post(
                path, json={"points": [{"epoch": 1, "val_acc": 1}]})
            assert response.status_code == 422, response.text
            assert response.json()["errors"][0]["loc"] == ["path", "curve_id"]


def test_bad_session_settings_are_422(api):
    server = api()
    with server.client() as http:
        response = http.post("/v1/curves", json={"estimator": {"E": 1, "e_max": 0.5}})
        assert response.status_code == 422 and "e_max must be at least E" in response.text
        response = http.post("/v1/curves", json={"num_classes": 1})
        assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["body", "num_classes"]
        response = http.post("/v1/curves", json={"policy": "adaptive"})  # adaptive ranks against a search
        assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["body", "search"]
        assert "give search" in response.json()["detail"]


def test_concurrent_posts_to_one_session_never_lose_or_reorder_points(api, curves):
    """Eight threads race on one session through real HTTP, each claiming the next epoch of one curve.

    Requests may arrive out of claim order; those then get 409. Every 200 must be stored,
    every 409 must not be, the stored epochs must increase, and each stored decision must be
    the library's on exactly the stored prefix.
    """
    points = [{"epoch": 0.5 * (i + 1), "val_acc": min(99.0, 80 - 70 * 0.9 ** i)} for i in range(160)]
    server = api()
    curve_id = open_curve(server.client())
    claim = iter(points)
    claim_lock = threading.Lock()
    accepted, refused, errors = [], [], []

    def racer():
        with server.client() as http:
            while True:
                with claim_lock:
                    point = next(claim, None)
                if point is None:
                    return
                response = post(http, curve_id, point)
                if response.status_code == 200:
                    accepted.append(point["epoch"])
                elif response.status_code == 409:
                    refused.append(point["epoch"])
                else:
                    errors.append(response.text)

    threads = [threading.Thread(target=racer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    stored = server.client().get(f"/v1/curves/{curve_id}").json()["points"]
    epochs = [p["epoch"] for p in stored]
    assert sorted(accepted) == epochs and all(a < b for a, b in zip(epochs, epochs[1:]))
    assert not set(refused) & set(epochs)
    assert len(accepted) + len(refused) == len(points)
    print(f"{len(accepted)} accepted, {len(refused)} refused")
    kept = [{"epoch": p["epoch"], "val_acc": p["val_acc"]} for p in stored]
    assert [p["decision"] for p in stored] == library_decisions(kept)


def test_two_api_processes_on_one_session_agree(api, curves):
    """Posts alternate between two apps (own policy caches) and one that never caches: same decisions."""
    caching_a, caching_b, replaying = api(), api(), api(curve_cache_size=0)
    clients = [s.client() for s in (caching_a, caching_b, replaying)]
    curve_id = open_curve(clients[0], num_classes=100)
    points = curves[2][:21]
    answers = [decision_of(post(clients[i % 3], curve_id, p).json()) for i, p in enumerate(points)]
    assert answers == library_decisions(points, num_classes=100)
    replays = [s.app.state.curve_sessions.replays for s in (caching_a, caching_b, replaying)]
    assert replays == [6, 7, 7]  # each app found its policy stale (or absent) on every post but the first


def test_sessions_expire_after_the_ttl_and_posts_refresh_it(api, redis_conn, curves):
    # Margins wide enough for a loaded 2-core CI box: posts 0.5 s apart keep alive a 1.5 s session
    # (4 posts, 2 s in all: longer than the TTL, so only the refresh keeps it), then 2 s of silence end it.
    server = api(curve_ttl_s=1.5)
    with server.client() as http:
        curve_id = open_curve(http)
        assert http.post("/v1/curves").json()["expires_in_s"] == 1.5
        for point in curves[0][:4]:
            time.sleep(0.5)  # each post extends the life by the TTL
            assert post(http, curve_id, point).status_code == 200
        assert 0 < redis_conn.pttl(points_key(curve_id)) <= 1500
        time.sleep(2.0)
        assert not redis_conn.exists(session_key(curve_id), points_key(curve_id))
        assert http.get(f"/v1/curves/{curve_id}").status_code == 404
        assert post(http, curve_id, curves[0][4]).status_code == 404  # a cached policy does not revive it


def test_tokens_guard_sessions(api, curves):
    server = api(api_tokens=frozenset({"alice-token", "bob-token"}))
    with server.client() as anonymous, server.client("alice-token") as alice, server.client("bob-token") as bob:
        assert anonymous.post("/v1/curves").status_code == 401
        assert server.client("mallory").post("/v1/curves").status_code == 401
        curve_id = open_curve(alice)
        assert post(alice, curve_id, curves[0][0]).status_code == 200
        assert post(anonymous, curve_id, curves[0][1]).status_code == 401
        for response in (bob.get(f"/v1/curves/{curve_id}"), post(bob, curve_id, curves[0][1]),
                         bob.delete(f"/v1/curves/{curve_id}")):
            assert response.status_code == 404  # another token's session does not exist for you
        assert alice.get(f"/v1/curves/{curve_id}").json()["n_points"] == 1


def test_client_observe_returns_library_decisions(api, curves):
    server = api(api_tokens=frozenset({"t0k"}))
    points = curves[0]
    expected = library_decisions(points, num_classes=100)
    with Client(server.url, token="t0k") as client:
        curve = client.observe(num_classes=100, label="sdk")
        decisions = [curve.observe(**p) for p in points[:10]]
        assert [d.to_dict() for d in decisions] == expected[:10]
        assert curve.observe_many(points[10:]).to_dict() == expected[-1]
        assert curve.n_points == len(points)
        with pytest.raises(ConflictError, match="must be greater than"):
            curve.observe(1.0, 50.0)
        with pytest.raises(ValidationError) as err:
            curve.observe(99.0, 150.0)
        assert err.value.errors[0]["loc"] == ["body", "points", 0, "val_acc"]
        assert curve.get()["final"] == next(d for d in expected if d["stop"])
        curve.delete()
        with pytest.raises(NotFoundError):
            curve.get()

    async def run_async():
        async with AsyncClient(server.url, token="t0k") as client:
            curve = await client.observe({"N": 3}, num_classes=100)
            return [(await curve.observe(**p)).to_dict() for p in points]

    assert asyncio.run(run_async()) == expected


def test_openapi_documents_the_curve_routes(api):
    server = api()
    paths = server.client().get("/openapi.json").json()["paths"]
    assert set(paths["/v1/curves"]) == {"post"}
    assert set(paths["/v1/curves/{curve_id}"]) == {"get", "delete"}
    observe = paths["/v1/curves/{curve_id}/observations"]["post"]
    assert {"200", "404", "409", "422"} <= set(observe["responses"])


def test_a_full_session_refuses_more_points(api, curves):
    server = api(curve_max_points=5)
    with server.client() as http:
        curve_id = open_curve(http)
        assert post(http, curve_id, *curves[0][:4]).status_code == 200
        response = post(http, curve_id, *curves[0][4:6])
        assert response.status_code == 409
        assert response.json()["detail"] == "a curve session holds at most 5 points; it has 4 and 2 were posted"
        assert post(http, curve_id, curves[0][4]).json()["n_points"] == 5


def test_redis_down_is_503_not_404(api):
    from peng4nn_store.embedded import free_port

    server = api(redis_url=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    with server.client() as http:
        for response in (http.post("/v1/curves"), http.get("/v1/curves/" + "0" * 24),
                         post(http, "0" * 24, {"epoch": 1, "val_acc": 1})):
            assert response.status_code == 503, response.text
            assert response.json()["code"] == "redis_unavailable"


def test_a_failed_commit_leaves_no_trace_in_the_cached_policy(api, redis_conn, curves):
    """Redis refuses the write after the policy saw the point: the retry must be accepted, not 409."""
    points = curves[0][:8]
    server = api()
    with server.client() as http:
        curve_id = open_curve(http, num_classes=100)
        post(http, curve_id, *points[:6])
        stored = redis_conn.lrange(points_key(curve_id), 0, -1)
        redis_conn.delete(points_key(curve_id))
        redis_conn.set(points_key(curve_id), "not a list")  # the commit's LLEN now fails (WRONGTYPE)
        try:  # an unexpected Redis error: a 500, or uvicorn drops the connection
            assert post(http, curve_id, points[6]).status_code == 500
        except httpx.TransportError:
            pass
    redis_conn.delete(points_key(curve_id))
    redis_conn.rpush(points_key(curve_id), *stored)
    with server.client() as http:  # a new connection: the old one may have been closed by the server
        answers = [post(http, curve_id, p) for p in points[6:]]
    assert [a.status_code for a in answers] == [200, 200]
    assert decision_of(answers[-1].json()) == library_decisions(points, num_classes=100)[-1]


def test_many_sessions_at_once_each_get_their_own_decisions(api, curves):
    """20 sessions posted concurrently (asyncio client): every answer is its own curve's library decision."""
    server = api(curve_cache_size=8)  # most posts miss the cache: replays too
    shifted = [[{**p, "val_acc": max(0.0, p["val_acc"] - k)} for p in curves[k % 3][:8]] for k in range(20)]

    async def run_all():
        async with AsyncClient(server.url) as client:
            async def one(points):
                curve = await client.observe(num_classes=100)
                return [(await curve.observe(**p)).to_dict() for p in points]
            return await asyncio.gather(*(one(points) for points in shifted))

    answers = asyncio.run(run_all())
    for points, got in zip(shifted, answers):
        assert got == library_decisions(points, num_classes=100)
    assert server.app.state.curve_sessions.replays > 0
