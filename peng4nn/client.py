"""HTTP client SDK for a PEng4NN service (``peng4nn serve`` or a deployment).

``Client`` (blocking) and ``AsyncClient`` (asyncio) share one request builder,
one response decoder and one server-sent-events parser; both return the typed
models of `peng4nn.jobs`. Every non-2xx answer raises an `ApiError` subclass
carrying the server's ``detail``, ``code`` and field ``errors``. ``stream()``
reconnects after a dropped connection with ``Last-Event-ID``, so no event is
lost or repeated.

Retries follow one rule (`peng4nn.backoff.Backoff`: exponential, jittered, bounded by a
deadline, honouring ``Retry-After`` and the stream's ``retry:``). Only what is safe to repeat
is repeated: reads, submissions (each carries an ``Idempotency-Key``, so the service creates
one job however often it arrives), and any request that never reached the server.

    from peng4nn.client import Client
    with Client() as client:                      # http://127.0.0.1:8000, or $PENG4NN_URL
        job = client.submit(arch, "digits")
        for event in client.stream(job.id):
            print(event.event, event.data)
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, Callable

import httpx

from peng4nn.analyzer import Decision
from peng4nn.backoff import Attempts, Backoff, parse_retry_after
from peng4nn.jobs import (
    EVENT_RESULT,
    TERMINAL_STATUSES,
    DatasetsPublic,
    JobAccepted,
    JobCreate,
    JobEvent,
    JobPublic,
    JobsAccepted,
    JobsPublic,
    JobStatus,
    ResultEventData,
)

DEFAULT_URL = "http://127.0.0.1:8000"
"""Where `peng4nn serve` listens by default; override with ``PENG4NN_URL``."""

URL_ENV, TOKEN_ENV = "PENG4NN_URL", "PENG4NN_API_TOKEN"

DEFAULT_TIMEOUT_S = 30.0

DEFAULT_BACKOFF = Backoff(deadline_s=30.0)
"""Retries of requests and stream reconnects: 0.5 s doubling to 10 s, jittered, for at most 30 s (the API
container's health check gives it 20 s to start)."""

IDEMPOTENCY_HEADER = "Idempotency-Key"
"""Sent with every submission; the service answers a repeat with the job the first one created."""

RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""Answers that mean "not now": retried when the request is safe to repeat (429 always: nothing was done)."""


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """The service answered with an error; ``detail`` is its message, ``code`` its machine-readable kind."""

    def __init__(self, status_code: int, detail: str, code: str = "", errors: list[dict] | None = None):
        super().__init__(f"{status_code} {code}: {detail}" if code else f"{status_code}: {detail}")
        self.status_code, self.detail, self.code, self.errors = status_code, detail, code, errors or []


class AuthError(ApiError):
    """401: missing or invalid bearer token."""


class NotFoundError(ApiError):
    """404: no such job (or it belongs to another token, or it expired)."""


class ConflictError(ApiError):
    """409: the job's state does not allow this (e.g. cancelling an ended job)."""


class PayloadTooLargeError(ApiError):
    """413: the request body is over the server's limit."""


class ValidationError(ApiError):
    """422: invalid input; ``errors`` lists ``{"loc": [...], "msg": ...}`` per field."""


class ServiceUnavailableError(ApiError):
    """503: the service's store (Redis) is down."""


class ConnectionFailed(ApiError):
    """The service could not be reached at all."""

    def __init__(self, url: str, exc: Exception):
        super().__init__(0, f"cannot reach the PEng4NN service at {url}: {exc}", "unreachable")


_ERRORS = {401: AuthError, 404: NotFoundError, 409: ConflictError, 413: PayloadTooLargeError,
           422: ValidationError, 503: ServiceUnavailableError}


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
        detail, code, errors = str(body.get("detail")), str(body.get("code", "")), body.get("errors")
    except (ValueError, AttributeError):
        detail, code, errors = response.text or response.reason_phrase, "", None
    raise _ERRORS.get(response.status_code, ApiError)(response.status_code, detail, code, errors)


# --------------------------------------------------------------------------- shared pieces


def _search(search: str | None, search_id: str | None) -> str | None:
    """``submit(search_id=...)``, the old name, still works and says it is deprecated."""
    if search_id is None:
        return search
    warnings.warn("submit(search_id=...) is deprecated: use search=...", DeprecationWarning, stacklevel=3)
    if search is not None and search != search_id:
        raise ValueError("give search (search_id is its deprecated old name), not both")
    return search_id


def _job_body(architecture: Any, dataset: str, **options: Any) -> dict[str, Any]:
    """A validated submission body (invalid input fails here, before any request)."""
    if hasattr(architecture, "to_dict"):
        architecture = architecture.to_dict()
    body = JobCreate.model_validate({"architecture": architecture, "dataset": dataset,
                                     **{k: v for k, v in options.items() if v is not None}})
    return body.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _as_body(job: JobCreate | dict) -> dict[str, Any]:
    if isinstance(job, JobCreate):
        return job.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return job


class SseParser:
    """Incremental ``text/event-stream`` parser: feed lines, get complete events (comments dropped)."""

    def __init__(self) -> None:
        self._event, self._data, self._id = "message", [], None
        #: The server's reconnection time (``retry:``, seconds), once it sent one.
        self.retry_s: float | None = None

    def feed(self, line: str) -> JobEvent | None:
        if line == "":
            if not self._data and self._id is None:
                self._event = "message"
                return None
            event = JobEvent(id=self._id or "", event=self._event, data=_decode("\n".join(self._data)))
            self._event, self._data, self._id = "message", [], None
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            self._id = value
        elif field == "retry" and value.isdigit():
            self.retry_s = int(value) / 1000.0
        return None


def _decode(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _retry_delay(attempts: Attempts, response: httpx.Response | None, exc: Exception | None,
                 safe: bool) -> float | None:
    """Seconds to wait before trying again, or None when this failure is final."""
    if exc is not None:  # never reached the server, or (safe requests) lost on the way
        retriable = safe or isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
        return attempts.next_delay() if retriable else None
    if response.status_code not in RETRY_STATUSES or not (safe or response.status_code == 429):
        return None
    return attempts.next_delay(retry_after=parse_retry_after(response.headers.get("Retry-After")))


def _submission_headers(idempotency_key: str | None) -> dict[str, str]:
    return {IDEMPOTENCY_HEADER: idempotency_key or uuid.uuid4().hex}


def _health_answer(response: httpx.Response) -> bool:
    """``/healthz``'s 200 and its 503 ``no_workers`` are answers (the API is up and says how it is)."""
    if response.status_code == 200:
        return True
    try:
        return response.status_code == 503 and response.json().get("status") == "no_workers"
    except (ValueError, AttributeError):
        return False


# --------------------------------------------------------------------------- blocking client


class Client:
    """Blocking client. ``base_url`` defaults to ``$PENG4NN_URL`` or http://127.0.0.1:8000."""

    def __init__(self, base_url: str | None = None, token: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT_S, transport: httpx.BaseTransport | None = None,
                 backoff: Backoff = DEFAULT_BACKOFF):
        """``backoff``: when to retry (its ``deadline_s`` bounds every request's and every reconnect's retries)."""
        self.base_url = (base_url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        self.backoff = backoff
        self._http = httpx.Client(base_url=self.base_url, headers=_headers(token or os.environ.get(TOKEN_ENV)),
                                  timeout=timeout, transport=transport)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, *, safe: bool | None = None,
                 is_answer: Callable[[httpx.Response], bool] | None = None, **kwargs: Any) -> httpx.Response:
        """One request, retried while `Backoff` allows when it is ``safe`` to repeat (default: GET)."""
        safe = method == "GET" if safe is None else safe
        attempts = self.backoff.attempts()
        while True:
            response = exc = None
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                exc = error
            if exc is None and is_answer is not None and is_answer(response):
                return response
            if exc is None and response.status_code not in RETRY_STATUSES:
                _raise_for(response)
                return response
            delay = _retry_delay(attempts, response, exc, safe)
            if delay is None:
                if exc is not None:
                    raise ConnectionFailed(self.base_url, exc) from None
                _raise_for(response)
                return response
            time.sleep(delay)

    def submit(self, architecture: Any, dataset: str, *, policy: str | None = None,
               policy_params: dict | None = None, estimator: Any = None, seed: int | None = None,
               shadow: bool | None = None, search: str | None = None, label: str | None = None,
               idempotency_key: str | None = None, search_id: str | None = None) -> JobAccepted:
        """Queue one network; returns its id and links. ``search``: the search it belongs to (``search_id`` is
        its deprecated old name).

        Safe to retry: the request carries ``idempotency_key`` (a fresh one per call by default), and the
        service answers a repeat with the job the first one created (409 if the body differs)."""
        body = _job_body(architecture, dataset, policy=policy, policy_params=policy_params, estimator=estimator,
                         seed=seed, shadow=shadow, search=_search(search, search_id), label=label)
        response = self._request("POST", "/v1/jobs", json=body, headers=_submission_headers(idempotency_key),
                                 safe=True)
        return JobAccepted.model_validate(response.json())

    def submit_batch(self, jobs: Iterable[JobCreate | dict]) -> list[JobAccepted]:
        """Queue a generation at once (all or nothing); ids come back in order."""
        body = {"jobs": [_as_body(job) for job in jobs]}
        return JobsAccepted.model_validate(self._request("POST", "/v1/jobs/batch", json=body).json()).data

    def get(self, job_id: str) -> JobPublic:
        return JobPublic.model_validate(self._request("GET", f"/v1/jobs/{job_id}").json())

    def list(self, status: JobStatus | str | None = None, offset: int = 0, limit: int = 50) -> JobsPublic:
        params = {"offset": offset, "limit": limit, **({"status": JobStatus(status).value} if status else {})}
        return JobsPublic.model_validate(self._request("GET", "/v1/jobs", params=params).json())

    def result(self, job_id: str) -> ResultEventData:
        return ResultEventData.model_validate(self._request("GET", f"/v1/jobs/{job_id}/result").json())

    def cancel(self, job_id: str) -> JobPublic:
        """Cancel; a running job reports ``cancel_requested`` until it stops at its next iteration."""
        return JobPublic.model_validate(self._request("DELETE", f"/v1/jobs/{job_id}").json())

    def datasets(self) -> DatasetsPublic:
        return DatasetsPublic.model_validate(self._request("GET", "/v1/datasets").json())

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/healthz", is_answer=_health_answer).json()

    def observe(self, estimator: Any = None, *, num_classes: int | None = None, label: str | None = None,
                policy: str | None = None, policy_params: dict | None = None,
                search: str | None = None, schedule: Any = None, network: Any = None) -> "CurveSession":
        """Open an observe-mode session for a network you train yourself (see `CurveSession`).

        ``policy="adaptive"`` with a ``search`` id ranks the network against that search's other networks.
        ``schedule``: its `peng4nn.schedule.LRSchedule` when known in advance; ``network``: its
        `peng4nn.network_info.NetworkInfo` (either may be a dict of the same fields)."""
        body = _curve_body(estimator, num_classes, label, policy, policy_params, search, schedule, network)
        return CurveSession(self, self._request("POST", "/v1/curves", json=body).json()["id"])

    def wait(self, job_id: str, timeout: float | None = None, poll_s: float = 0.5) -> JobPublic:
        """Block until the job has ended; returns its final state (TimeoutError after ``timeout`` s)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job.status in TERMINAL_STATUSES:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {job.status.value} after {timeout} s")
            time.sleep(poll_s if deadline is None else min(poll_s, max(0.0, deadline - time.monotonic())))

    def stream(self, job_id: str, last_event_id: str | None = None, *,
               max_reconnects: int | None = None) -> Iterator[JobEvent]:
        """Yield the job's events until its ``result``; reconnects with Last-Event-ID when dropped.

        Reconnects back off (`Backoff`, from the server's ``retry:`` when it sent one) until the client's
        deadline has passed since the last event (or after ``max_reconnects`` failures in a row)."""
        attempts = self.backoff.attempts()
        reconnect_s = None
        while True:
            headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
            parser = SseParser()
            retry_after = None
            try:
                with self._http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers,
                                       timeout=httpx.Timeout(self._http.timeout.connect, read=None)) as response:
                    if response.status_code == 204:
                        return  # the job has ended and we have every event
                    if response.status_code in RETRY_STATUSES:
                        retry_after = parse_retry_after(response.headers.get("Retry-After"))
                        raise httpx.ReadError(f"the service answered {response.status_code}")
                    if not response.is_success:
                        response.read()
                        _raise_for(response)
                    for line in response.iter_lines():
                        event = parser.feed(line)
                        reconnect_s = parser.retry_s if parser.retry_s is not None else reconnect_s
                        if event is None:
                            continue
                        attempts.reset()
                        last_event_id = event.id or last_event_id
                        yield event
                        if event.event == EVENT_RESULT:
                            return
                raise httpx.ReadError("the stream ended before the job's result")
            except (httpx.TransportError, httpx.StreamError) as exc:
                delay = attempts.next_delay(retry_after=retry_after, reconnect_s=reconnect_s)
                if delay is None or (max_reconnects is not None and attempts.failures > max_reconnects):
                    raise ConnectionFailed(self.base_url, exc) from None
                time.sleep(delay)


# --------------------------------------------------------------------------- asyncio client


class AsyncClient:
    """The asyncio twin of `Client` (same methods, awaited; ``stream`` is an async iterator)."""

    def __init__(self, base_url: str | None = None, token: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT_S, transport: httpx.AsyncBaseTransport | None = None,
                 limits: httpx.Limits | None = None, backoff: Backoff = DEFAULT_BACKOFF):
        self.base_url = (base_url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        self.backoff = backoff
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=_headers(token or os.environ.get(TOKEN_ENV)),
                                       timeout=timeout, transport=transport,
                                       limits=limits or httpx.Limits(max_connections=1000, max_keepalive_connections=1000))

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, *, safe: bool | None = None,
                       is_answer: Callable[[httpx.Response], bool] | None = None, **kwargs: Any) -> httpx.Response:
        safe = method == "GET" if safe is None else safe
        attempts = self.backoff.attempts()
        while True:
            response = exc = None
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                exc = error
            if exc is None and is_answer is not None and is_answer(response):
                return response
            if exc is None and response.status_code not in RETRY_STATUSES:
                _raise_for(response)
                return response
            delay = _retry_delay(attempts, response, exc, safe)
            if delay is None:
                if exc is not None:
                    raise ConnectionFailed(self.base_url, exc) from None
                _raise_for(response)
                return response
            await asyncio.sleep(delay)

    async def submit(self, architecture: Any, dataset: str, *, policy: str | None = None,
                     policy_params: dict | None = None, estimator: Any = None, seed: int | None = None,
                     shadow: bool | None = None, search: str | None = None,
                     label: str | None = None, idempotency_key: str | None = None,
                     search_id: str | None = None) -> JobAccepted:
        body = _job_body(architecture, dataset, policy=policy, policy_params=policy_params, estimator=estimator,
                         seed=seed, shadow=shadow, search=_search(search, search_id), label=label)
        response = await self._request("POST", "/v1/jobs", json=body, headers=_submission_headers(idempotency_key),
                                       safe=True)
        return JobAccepted.model_validate(response.json())

    async def submit_batch(self, jobs: Iterable[JobCreate | dict]) -> list[JobAccepted]:
        body = {"jobs": [_as_body(job) for job in jobs]}
        return JobsAccepted.model_validate((await self._request("POST", "/v1/jobs/batch", json=body)).json()).data

    async def get(self, job_id: str) -> JobPublic:
        return JobPublic.model_validate((await self._request("GET", f"/v1/jobs/{job_id}")).json())

    async def list(self, status: JobStatus | str | None = None, offset: int = 0, limit: int = 50) -> JobsPublic:
        params = {"offset": offset, "limit": limit, **({"status": JobStatus(status).value} if status else {})}
        return JobsPublic.model_validate((await self._request("GET", "/v1/jobs", params=params)).json())

    async def result(self, job_id: str) -> ResultEventData:
        return ResultEventData.model_validate((await self._request("GET", f"/v1/jobs/{job_id}/result")).json())

    async def cancel(self, job_id: str) -> JobPublic:
        return JobPublic.model_validate((await self._request("DELETE", f"/v1/jobs/{job_id}")).json())

    async def datasets(self) -> DatasetsPublic:
        return DatasetsPublic.model_validate((await self._request("GET", "/v1/datasets")).json())

    async def health(self) -> dict[str, Any]:
        return (await self._request("GET", "/healthz", is_answer=_health_answer)).json()

    async def observe(self, estimator: Any = None, *, num_classes: int | None = None, label: str | None = None,
                      policy: str | None = None, policy_params: dict | None = None,
                      search: str | None = None, schedule: Any = None, network: Any = None) -> "AsyncCurveSession":
        """Open an observe-mode session (see `AsyncCurveSession` and `Client.observe`)."""
        body = _curve_body(estimator, num_classes, label, policy, policy_params, search, schedule, network)
        response = await self._request("POST", "/v1/curves", json=body)
        return AsyncCurveSession(self, response.json()["id"])

    async def wait(self, job_id: str, timeout: float | None = None, poll_s: float = 0.5) -> JobPublic:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = await self.get(job_id)
            if job.status in TERMINAL_STATUSES:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {job.status.value} after {timeout} s")
            await asyncio.sleep(poll_s)

    async def stream(self, job_id: str, last_event_id: str | None = None, *,
                     max_reconnects: int | None = None) -> AsyncIterator[JobEvent]:
        attempts = self.backoff.attempts()
        reconnect_s = None
        while True:
            headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
            parser = SseParser()
            retry_after = None
            try:
                async with self._http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers,
                                             timeout=httpx.Timeout(self._http.timeout.connect, read=None)) as response:
                    if response.status_code == 204:
                        return
                    if response.status_code in RETRY_STATUSES:
                        retry_after = parse_retry_after(response.headers.get("Retry-After"))
                        raise httpx.ReadError(f"the service answered {response.status_code}")
                    if not response.is_success:
                        await response.aread()
                        _raise_for(response)
                    async for line in response.aiter_lines():
                        event = parser.feed(line)
                        reconnect_s = parser.retry_s if parser.retry_s is not None else reconnect_s
                        if event is None:
                            continue
                        attempts.reset()
                        last_event_id = event.id or last_event_id
                        yield event
                        if event.event == EVENT_RESULT:
                            return
                raise httpx.ReadError("the stream ended before the job's result")
            except (httpx.TransportError, httpx.StreamError) as exc:
                delay = attempts.next_delay(retry_after=retry_after, reconnect_s=reconnect_s)
                if delay is None or (max_reconnects is not None and attempts.failures > max_reconnects):
                    raise ConnectionFailed(self.base_url, exc) from None
                await asyncio.sleep(delay)


# --------------------------------------------------------------------------- observe mode (/v1/curves)
# Sessions for networks the caller trains itself. A session's `observe()` has the signature
# of the library's `StoppingPolicy.observe()` and returns the same `Decision`, so code written
# against an in-process policy runs unchanged against a service (the plug-ins rely on this).


def _curve_body(estimator: Any, num_classes: int | None, label: str | None, policy: str | None = None,
                policy_params: dict | None = None, search: str | None = None, schedule: Any = None,
                network: Any = None) -> dict[str, Any]:
    body = {"estimator": _model_json(estimator), "num_classes": num_classes, "label": label, "policy": policy,
            "policy_params": policy_params, "search": search, "schedule": _model_json(schedule),
            "network": _model_json(network)}
    return {k: v for k, v in body.items() if v is not None}


def _model_json(value: Any) -> Any:
    """A pydantic model as the fields it was given (so the service fills its own defaults); else as is."""
    return value.model_dump(mode="json", exclude_unset=True) if hasattr(value, "model_dump") else value


def _point(epoch: float, val_acc: float, val_loss: float | None = None,
           train_loss: float | None = None, lr: float | None = None) -> dict[str, Any]:
    point = {"epoch": epoch, "val_acc": val_acc, "val_loss": val_loss, "train_loss": train_loss, "lr": lr}
    return {k: v for k, v in point.items() if v is not None}


def _points_body(points: Iterable[dict | tuple]) -> dict[str, Any]:
    """``{"points": [...]}`` from dicts or ``(epoch, val_acc[, val_loss[, train_loss[, lr]]])`` tuples."""
    return {"points": [_point(**p) if isinstance(p, dict) else _point(*p) for p in points]}


class CurveSession:
    """One network's curve on the service: post points, get the engine's `Decision` after each."""

    def __init__(self, client: Client, curve_id: str):
        self.client, self.id = client, curve_id
        self.n_points = 0
        self.url = f"/v1/curves/{curve_id}"

    def observe(self, epoch: float, val_acc: float, val_loss: float | None = None,
                train_loss: float | None = None, lr: float | None = None) -> Decision:
        """Post one point (epoch increasing, accuracy in percent, ``lr`` the rate that trained towards it);
        ConflictError for a stale epoch."""
        return self.observe_many([(epoch, val_acc, val_loss, train_loss, lr)])

    def observe_many(self, points: Iterable[dict | tuple]) -> Decision:
        """Post several points at once (all or nothing); the decision after the last."""
        data = self.client._request("POST", f"{self.url}/observations", json=_points_body(points)).json()
        self.n_points = data["n_points"]
        return Decision.from_dict(data)

    def get(self) -> dict[str, Any]:
        """Every point with its decision, the latest and the first stopping decision."""
        return self.client._request("GET", self.url).json()

    def delete(self) -> None:
        self.client._request("DELETE", self.url)


class AsyncCurveSession:
    """The asyncio twin of `CurveSession`."""

    def __init__(self, client: AsyncClient, curve_id: str):
        self.client, self.id = client, curve_id
        self.n_points = 0
        self.url = f"/v1/curves/{curve_id}"

    async def observe(self, epoch: float, val_acc: float, val_loss: float | None = None,
                      train_loss: float | None = None, lr: float | None = None) -> Decision:
        return await self.observe_many([(epoch, val_acc, val_loss, train_loss, lr)])

    async def observe_many(self, points: Iterable[dict | tuple]) -> Decision:
        response = await self.client._request("POST", f"{self.url}/observations", json=_points_body(points))
        data = response.json()
        self.n_points = data["n_points"]
        return Decision.from_dict(data)

    async def get(self) -> dict[str, Any]:
        return (await self.client._request("GET", self.url)).json()

    async def delete(self) -> None:
        await self.client._request("DELETE", self.url)
