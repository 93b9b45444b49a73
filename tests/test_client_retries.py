"""Retries that are safe: the SDK's backoff against real HTTP servers that misbehave on purpose, and the
API's Idempotency-Key on POST /v1/jobs."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from peng4nn.backoff import Backoff, parse_retry_after
from peng4nn.client import IDEMPOTENCY_HEADER, Client, ConnectionFailed, ServiceUnavailableError, SseParser
from peng4nn_store.embedded import free_port
from tests.conftest import TINY_CNN, tiny_job

pytestmark = pytest.mark.timeout(60)


class Misbehaving(BaseHTTPRequestHandler):
    """Answers each request with the next planned reply: ("503", retry_after) / ("drop",) / ("forward",)."""

    plan: list[tuple] = []
    upstream: str | None = None
    seen: list[tuple[str, str, dict]] = []

    def log_message(self, *args):  # keep test output clean
        pass

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        type(self).seen.append((self.command, self.path, dict(self.headers)))
        step = type(self).plan.pop(0) if type(self).plan else ("forward",)
        if step[0] == "503":
            self.send_response(503)
            if step[1] is not None:
                self.send_header("Retry-After", step[1])
            self.send_header("Content-Type", "application/json")
            payload = b'{"detail": "down for a moment", "code": "redis_unavailable"}'
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        forwarded = httpx.request(self.command, type(self).upstream + self.path, content=body,
                                  headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
        if step[0] == "drop":  # the upstream did the work; the answer is lost on the way back
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.send_response(forwarded.status_code)
        for k, v in forwarded.headers.items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(forwarded.content)))
        self.end_headers()
        self.wfile.write(forwarded.content)

    do_GET = do_POST = do_DELETE = _handle


@pytest.fixture
def proxy():
    """``proxy(upstream, plan) -> url`` of a real HTTP server in front of ``upstream``."""
    servers = []

    def start(upstream: str | None, plan: list[tuple]) -> str:
        handler = type("Handler", (Misbehaving,), {"plan": list(plan), "upstream": upstream, "seen": []})
        server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        start.handler = handler
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# -- the backoff rule ------------------------------------------------------------------------------

def test_delays_grow_jittered_up_to_the_cap_and_stop_at_the_deadline():
    attempts = Backoff(initial_s=0.5, factor=2, max_s=4, deadline_s=None).attempts()
    delays = [attempts.next_delay() for _ in range(200)]
    assert 0.25 <= delays[0] <= 0.5  # the first retry waits at least half the initial delay
    assert all(0 <= d <= 4 for d in delays) and max(delays[5:]) > 2  # capped, and it did grow
    assert len({round(d, 6) for d in delays}) > 150  # jittered: clients do not come back in lock-step
    assert Backoff(deadline_s=0).attempts().next_delay() is None
    last = Backoff(initial_s=5, deadline_s=1).attempts()
    assert last.next_delay() <= 1.0  # the last wait is cut to end at the deadline


def test_retry_after_is_a_floor_and_the_stream_retry_field_the_starting_point():
    attempts = Backoff(initial_s=0.1, deadline_s=None).attempts()
    assert all(attempts.next_delay(retry_after=3.0) >= 3.0 for _ in range(20))
    first = Backoff(initial_s=0.1, deadline_s=None).attempts().next_delay(reconnect_s=2.0)
    assert 1.0 <= first <= 2.0
    assert parse_retry_after("7") == 7.0 and parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert 8 <= parse_retry_after(formatdate(time.time() + 10, usegmt=True)) <= 10
    parser = SseParser()
    parser.feed("retry: 2500")
    assert parser.retry_s == 2.5


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"initial_s": 0}, "Backoff.initial_s must be positive but got 0"),
    ({"factor": 0.5}, "Backoff.factor must be at least 1 but got 0.5"),
    ({"deadline_s": -1}, "Backoff.deadline_s cannot be negative but got -1"),
])
def test_bad_backoff_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)


def test_an_unreachable_service_is_retried_until_the_deadline():
    url = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(ConnectionFailed, match="cannot reach"):
        Client(url, backoff=Backoff(initial_s=0.2, deadline_s=1.0)).get("abc")
    assert 1.0 <= time.monotonic() - t0 < 5  # tried until the deadline, then gave up
    t0 = time.monotonic()
    with pytest.raises(ConnectionFailed):
        Client(url, backoff=Backoff(deadline_s=0)).get("abc")
    assert time.monotonic() - t0 < 0.5  # deadline 0: no retry


def test_a_503_with_retry_after_is_waited_out(api, proxy):
    server = api()
    url = proxy(server.url, [("503", "1"), ("503", None)])
    t0 = time.monotonic()
    with Client(url, backoff=Backoff(initial_s=0.1, deadline_s=10)) as client:
        assert client.health()["redis"] is True
    assert time.monotonic() - t0 >= 1.0  # it waited at least Retry-After
    assert len(proxy.handler.seen) == 3


def test_a_503_past_the_deadline_is_the_answer(api, proxy):
    url = proxy(api().url, [("503", "30")])
    t0 = time.monotonic()
    with pytest.raises(ServiceUnavailableError, match="down for a moment"):
        Client(url, backoff=Backoff(deadline_s=5)).health()
    assert time.monotonic() - t0 < 2  # a 30 s Retry-After does not fit a 5 s deadline: answer at once


def test_a_non_idempotent_request_is_not_repeated_after_a_lost_answer(api, proxy):
    url = proxy(api().url, [("drop",)])
    with Client(url, backoff=Backoff(initial_s=0.1, deadline_s=5)) as client:
        with pytest.raises(ConnectionFailed):
            client.submit_batch([tiny_job()])  # no Idempotency-Key on batches: a repeat could queue twice
    assert len(proxy.handler.seen) == 1


# -- Idempotency-Key ------------------------------------------------------------------------------

def test_a_submission_whose_answer_was_lost_is_retried_without_a_second_job(api, proxy):
    server = api()
    url = proxy(server.url, [("drop",)])
    with Client(url, backoff=Backoff(initial_s=0.1, deadline_s=5)) as client:
        accepted = client.submit(TINY_CNN, "digits", label="once")
    keys = [h.get(IDEMPOTENCY_HEADER) for _, _, h in proxy.handler.seen]
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0]  # the retry carried the same key
    with Client(server.url) as direct:
        jobs = direct.list()
    assert jobs.count == 1 and jobs.data[0].id == accepted.id


def test_same_key_same_body_is_the_same_job_and_another_body_is_409(api, redis_conn):
    server = api()
    with server.client() as http:
        headers = {"Idempotency-Key": "order-17"}
        first = http.post("/v1/jobs", json=tiny_job(), headers=headers)
        again = http.post("/v1/jobs", json=tiny_job(), headers=headers)
        assert first.status_code == again.status_code == 202
        assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
        assert "Idempotent-Replayed" not in first.headers
        other = http.post("/v1/jobs", json=tiny_job(label="different"), headers=headers)
        assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
        assert http.get("/v1/jobs").json()["count"] == 1
        fresh = http.post("/v1/jobs", json=tiny_job(), headers={"Idempotency-Key": "order-18"})
        assert fresh.status_code == 202 and fresh.json()["id"] != first.json()["id"]
    claims = list(redis_conn.scan_iter("peng4nn:idempotency:*"))
    assert len(claims) == 2 and all(0 < redis_conn.ttl(k) <= 24 * 3600 for k in claims)  # they expire


def test_an_invalid_submission_claims_no_key(api):
    with api().client() as http:
        headers = {"Idempotency-Key": "k1"}
        bad = http.post("/v1/jobs", json=tiny_job() | {"dataset": "nope"}, headers=headers)
        assert bad.status_code == 422
        good = http.post("/v1/jobs", json=tiny_job(), headers=headers)
        assert good.status_code == 202 and "Idempotent-Replayed" not in good.headers


@pytest.mark.parametrize("value", ["has space", "x" * 256, "tab\there"])
def test_a_malformed_key_is_a_422_naming_the_header(api, value):
    with api().client() as http:
        response = http.post("/v1/jobs", json=tiny_job(), headers={"Idempotency-Key": value})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]


def test_keys_belong_to_their_token(api):
    server = api(api_tokens="alice,bob")
    with server.client("alice") as alice, server.client("bob") as bob:
        a = alice.post("/v1/jobs", json=tiny_job(), headers={"Idempotency-Key": "same"})
        b = bob.post("/v1/jobs", json=tiny_job(), headers={"Idempotency-Key": "same"})
    assert a.status_code == b.status_code == 202 and a.json()["id"] != b.json()["id"]


def test_racing_submissions_with_one_key_create_one_job(api):
    server = api()

    def submit(_):
        with server.client() as http:
            return http.post("/v1/jobs", json=tiny_job(), headers={"Idempotency-Key": "race"})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(submit, range(8)))
    assert all(r.status_code == 202 for r in answers)
    assert len({r.json()["id"] for r in answers}) == 1
    with server.client() as http:
        assert http.get("/v1/jobs").json()["count"] == 1
