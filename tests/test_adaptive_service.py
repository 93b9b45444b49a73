"""`"policy": "adaptive"` across the service: a search's population lives in Redis and every process
(API processes, workers) decides as `peng4nn replay --policy adaptive` does for the same networks in
the same order. Real Redis, real HTTP, recorded curves; no training (the worker test feeds the
worker's own policy builder, and one real worker job checks the wiring end to end)."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pytest
from redis import Redis

from peng4nn.cli import main
from peng4nn.jobs import JobCreate
from peng4nn.replay import policy_factory, read_curves, replay
from peng4nn.synthetic_curves import POPULATIONS, generate_population, write_csv
from peng4nn_service.deps import PUBLIC_OWNER, owner_id
from peng4nn_store import searches
from peng4nn_store.encoding import clean_json
from peng4nn_worker.tasks import _finish_in_search, _policy
from tests.conftest import TINY_CNN, tiny_job, wait_for


def listed(search: str, owner: str = PUBLIC_OWNER) -> str:
    """The Redis list of a search's finished networks (searches are per owner)."""
    return searches.networks_key(searches.scoped(owner, search))


N_MODELS = 16
"""10 warm-up networks, then 6 ranked against them: enough for stops that only a population gives."""


@pytest.fixture(scope="module")
def search_curves(tmp_path_factory):
    """A small generated NAS-like search written as a replay CSV; replay's answers for it."""
    path = tmp_path_factory.mktemp("search") / "curves.csv"
    write_csv(generate_population(replace(POPULATIONS["nas-like"], n_models=N_MODELS), seed=4), path)
    curves = read_curves(path)
    outcomes = replay(curves, policy_factory("adaptive", estimator={"E": 0.5}, num_classes=10))
    return path, curves, outcomes


def replay_cli(capsys, path) -> list[dict]:
    assert main(["replay", str(path), "--policy", "adaptive", "--num-classes", "10", "--json"]) == 0
    return json.loads(capsys.readouterr().out)["models"]


def test_the_search_needs_its_population(search_curves):
    """Not vacuous: after the warm-up some networks stop early for reasons only a search gives."""
    _, _, outcomes = search_curves
    ranked = outcomes[10:]
    assert any(o.stop_epoch < 20 and o.reason.value in ("out_of_contention", "converged") for o in ranked)
    assert all(o.stop_epoch == 20 for o in outcomes[:10])  # the warm-up trains to e_max


def test_observe_sessions_of_one_search_decide_as_replay(api, redis_conn, search_curves, capsys):
    """Networks observed one after another in one search, alternating between two API processes (the
    second keeps no policies, so every post rebuilds from Redis), get replay's decisions point for point."""
    path, curves, outcomes = search_curves
    cli_models = replay_cli(capsys, path)
    first, second = api(), api(curve_cache_size=0)
    search = f"search-{uuid.uuid4().hex[:8]}"
    with first.client() as a, second.client() as b:
        for i, (curve, outcome, model) in enumerate(zip(curves, outcomes, cli_models)):
            http, chunk = (a, 1) if i % 2 == 0 else (b, 7)
            created = http.post("/v1/curves", json={"policy": "adaptive", "num_classes": 10, "search": search,
                                                    "label": curve.model_id})
            assert created.status_code == 201, created.text
            curve_id = created.json()["id"]
            points = [{"epoch": float(e), "val_acc": float(v)} for e, v in zip(curve.epochs, curve.val_acc)]
            stopped = False
            for start in range(0, len(points), chunk):
                answer = http.post(f"/v1/curves/{curve_id}/observations", json={"points": points[start:start + chunk]})
                assert answer.status_code == 200, answer.text
                if answer.json()["stop"]:
                    stopped = True
                    break
            body = http.get(f"/v1/curves/{curve_id}").json()
            assert body["policy"] == "adaptive" and body["search"] == search and body["label"] == curve.model_id
            seen = [p["decision"] for p in body["points"]][: len(outcome.decisions)]
            assert seen == [clean_json(d.to_dict()) for d in outcome.decisions], curve.model_id
            if stopped:
                final = body["final"]
                assert (final["epoch"], final["estimate"], final["converged"], final["interval"]) == (
                    model["stop_epoch"], model["estimate"], model["converged"], model["interval"]), curve.model_id
            else:  # the curve ended first: deleting the session is this network's finish()
                assert model["stop_epoch"] == points[-1]["epoch"]
                assert http.delete(f"/v1/curves/{curve_id}").status_code == 204
    assert redis_conn.llen(listed(search)) == len(curves)


def test_a_finished_session_joins_its_search_once(api, redis_conn, search_curves):
    """The final decision adds the network; more points after it and the DELETE add nothing."""
    _, curves, _ = search_curves
    server = api()
    search = "once"
    with server.client() as http:
        curve_id = http.post("/v1/curves", json={"policy": "adaptive", "search": search}).json()["id"]
        points = [{"epoch": float(e), "val_acc": float(v)} for e, v in zip(curves[0].epochs, curves[0].val_acc)]
        assert http.post(f"/v1/curves/{curve_id}/observations", json={"points": points}).json()["stop"]
        assert redis_conn.llen(listed(search)) == 1
        assert http.delete(f"/v1/curves/{curve_id}").status_code == 204
    assert redis_conn.llen(listed(search)) == 1
    stored = json.loads(redis_conn.lindex(listed(search), 0))
    assert stored["epochs"] == [p["epoch"] for p in points] and stored["full"] is True
    assert 0 < redis_conn.pttl(listed(search)) <= 24 * 3600 * 1000


def test_curve_policy_errors_name_the_field(api):
    server = api()
    with server.client() as http:
        bad = http.post("/v1/curves", json={"policy": "nope", "search": "s"})
        assert bad.status_code == 422 and "policy" in bad.text
        bad = http.post("/v1/curves", json={"policy": "adaptive", "search": "s", "policy_params": {"top": 0}})
        assert bad.status_code == 422 and "top" in bad.json()["detail"]
        assert http.post("/v1/curves", json={"search": ""}).status_code == 422


def test_worker_policies_of_one_search_decide_as_replay(redis_url, redis_conn, search_curves):
    """The worker's policy builder with a search, each job finishing before the next, gives replay's
    decisions; a second worker process would read the same list (each job gets a fresh Redis client)."""
    _, curves, outcomes = search_curves
    search = searches.scoped(PUBLIC_OWNER, f"jobs-{uuid.uuid4().hex[:8]}")
    request = JobCreate.model_validate({"architecture": TINY_CNN, "dataset": "digits", "policy": "adaptive",
                                        "search": search})
    for curve, outcome in zip(curves, outcomes):
        redis = Redis.from_url(redis_url)
        policy = _policy(request, 10, redis, search)
        decisions = []
        for i in range(len(curve)):
            decisions.append(policy.observe(*curve.point(i)))
            if decisions[-1].stop:
                break
        _finish_in_search(policy, search, redis, 60.0)
        assert decisions == list(outcome.decisions), curve.model_id
        redis.close()
    assert redis_conn.llen(searches.networks_key(search)) == len(curves)


def test_a_worker_job_in_a_search_adds_its_curve(api, worker_factory, redis_conn):
    """End to end: a real job with policy adaptive and a search trains, then its curve joins the search."""
    server = api()
    worker_factory()
    with server.client() as http:
        job = http.post("/v1/jobs", json=tiny_job(e_max=1.5, policy="adaptive", search="nas-1")).json()
        wait_for(lambda: http.get(f"/v1/jobs/{job['id']}").json()["status"] in ("completed", "converged", "failed"),
                 timeout=60, what="job end")
        public = http.get(f"/v1/jobs/{job['id']}").json()
    assert public["status"] != "failed", public
    result = public["result"]  # the warm-up trains to e_max: the estimate is the best seen, a point interval
    assert result["reason"] == "max_epochs" and result["interval"] == [result["estimate"], result["estimate"]]
    wait_for(lambda: redis_conn.llen(listed("nas-1")) == 1, timeout=10, what="search list")
    stored = json.loads(redis_conn.lindex(listed("nas-1"), 0))
    assert stored["epochs"] == [0.5, 1.0, 1.5]
    assert stored["epochs_used"] == 1.5 and stored["full"] is True


def test_a_rebuilt_session_decides_its_old_points_with_the_search_as_it_was(api, redis_conn, search_curves):
    """A session that began during the warm-up and continues after the search became ready, rebuilt
    from Redis by a process that keeps no policies, answers exactly what one kept policy answers."""
    _, curves, outcomes = search_curves
    late = min(range(10, len(curves)), key=lambda i: outcomes[i].estimate)  # a network the ranking cuts
    library = policy_factory("adaptive", estimator={"E": 0.5}, num_classes=10)

    def full_run(curve):
        policy = library(curve)
        for i in range(len(curve)):
            policy.observe(*curve.point(i))
        policy.finish()

    first, second = api(), api(curve_cache_size=0)
    points = {i: [{"epoch": float(e), "val_acc": float(v)} for e, v in zip(c.epochs, c.val_acc)]
              for i, c in enumerate(curves)}
    with first.client() as a, second.client() as b:
        def session(http):
            return http.post("/v1/curves", json={"policy": "adaptive", "num_classes": 10, "search": "mid"}).json()["id"]

        for i in range(9):  # one network short of the warm-up
            assert a.post(f"/v1/curves/{session(a)}/observations", json={"points": points[i]}).json()["stop"]
            full_run(curves[i])
        session(a), library()  # the 10th network to start: the last of the warm-up's references
        watched = session(a)  # the 11th: ranked, but its search is not ready yet
        expected = library(curves[late])
        head = points[late][:6]
        for p in head:
            assert b.post(f"/v1/curves/{watched}/observations", json={"points": [p]}).status_code == 200
        want = [expected.observe(p["epoch"], p["val_acc"]).to_dict() for p in head]
        assert all(d["reason"] in ("warming_up", "too_few_points") for d in want)
        assert a.post(f"/v1/curves/{session(a)}/observations", json={"points": points[9]}).json()["stop"]
        full_run(curves[9])  # the search is ready now
        rest = points[late][6:]
        assert b.post(f"/v1/curves/{watched}/observations", json={"points": rest}).status_code == 200
        want += [expected.observe(p["epoch"], p["val_acc"]).to_dict() for p in rest]
        got = [p["decision"] for p in b.get(f"/v1/curves/{watched}").json()["points"]]
    assert got == [clean_json(d) for d in want]
    assert any(d["stop"] and d["reason"] == "out_of_contention" for d in got)


def test_the_client_opens_adaptive_sessions_in_a_search(api, redis_conn, search_curves):
    from peng4nn.client import Client

    _, curves, outcomes = search_curves
    server = api()
    with Client(server.url) as client:
        session = client.observe(num_classes=10, policy="adaptive", policy_params={"top": 20}, search="sdk")
        decision = session.observe_many([(float(e), float(v)) for e, v in zip(curves[0].epochs, curves[0].val_acc)])
        body = session.get()
    assert (body["policy"], body["policy_params"], body["search"]) == ("adaptive", {"top": 20}, "sdk")
    assert decision.stop and decision.estimate == outcomes[0].estimate and decision.interval is not None
    assert redis_conn.llen(listed("sdk")) == 1


def test_a_search_whose_list_expired_starts_over(api, redis_conn, search_curves):
    """A process that built a population for a search name forgets it when the Redis list is gone."""
    _, curves, _ = search_curves
    server = api()
    with server.client() as http:
        def run(curve):
            curve_id = http.post("/v1/curves", json={"policy": "adaptive", "search": "again"}).json()["id"]
            points = [{"epoch": float(e), "val_acc": float(v)} for e, v in zip(curve.epochs, curve.val_acc)]
            http.post(f"/v1/curves/{curve_id}/observations", json={"points": points})
            return [p["decision"] for p in http.get(f"/v1/curves/{curve_id}").json()["points"]]

        for curve in curves[:11]:
            run(curve)
        ranked = run(curves[11])
        redis_conn.delete(listed("again"))  # as if it had expired
        alone = run(curves[11])
    assert not any(d["reason"] in ("warming_up", "reference") for d in ranked)  # 11 before it: the search was ready
    assert alone[-1]["reason"] == "max_epochs"  # a new search: its first network is a reference again
    assert any(d["reason"] == "reference" for d in alone)
    assert redis_conn.llen(listed("again")) == 1


def test_two_tokens_searches_of_one_name_never_meet(api, redis_conn, search_curves):
    _, curves, _ = search_curves
    server = api(api_tokens=frozenset({"alice-token", "bob-token"}))
    points = [{"epoch": float(e), "val_acc": float(v)} for e, v in zip(curves[0].epochs, curves[0].val_acc)]
    for token in ("alice-token", "bob-token", "alice-token"):
        with server.client(token) as http:
            curve_id = http.post("/v1/curves", json={"policy": "adaptive", "search": "shared-name"}).json()["id"]
            assert http.post(f"/v1/curves/{curve_id}/observations", json={"points": points}).json()["stop"]
    assert redis_conn.llen(listed("shared-name", owner_id("alice-token"))) == 2
    assert redis_conn.llen(listed("shared-name", owner_id("bob-token"))) == 1


def test_concurrent_syncs_of_one_population_add_each_network_once(redis_url, redis_conn, search_curves):
    """Two sessions of one search posting at once in one API process share its population."""
    import asyncio

    from redis.asyncio import Redis as AsyncRedis

    from peng4nn.policies import make_policy_factory

    _, curves, outcomes = search_curves
    search = searches.scoped(PUBLIC_OWNER, "concurrent")
    library = make_policy_factory("adaptive", estimator={"E": 0.5}, num_classes=10)
    for curve in curves[:12]:
        policy = library(curve)
        for i in range(len(curve)):
            if policy.observe(*curve.point(i)).stop:
                break
        searches.append(redis_conn, search, policy.outcome(), 60.0)
        policy.finish()

    async def main():
        client = AsyncRedis.from_url(redis_url, decode_responses=True)
        population = make_policy_factory("adaptive", estimator={"E": 0.5}, num_classes=10)
        await asyncio.gather(*(searches.sync_async(client, search, population) for _ in range(3)))
        await client.aclose()
        return population

    population = asyncio.run(main())
    assert population.n_finished == library.n_finished == 12
    assert population.threshold() == library.threshold() and population.sigma0 == library.sigma0
