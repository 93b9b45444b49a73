"""A lean path, in front of FastAPI, for the requests that come by the thousand per second.

``POST /v1/curves/{id}/observations`` and ``POST /v1/curves`` (observe mode; a session is
opened every few posts) and ``POST /v1/jobs`` (one network, with or without an Idempotency-Key).
Profiling `peng4nn serve` under load showed about half of the API's CPU per request in the framework around the
handler (routing over every route, dependency solving, the exception and telemetry
wrappers, anyio's thread-pool hop), more than the fit or the Redis transaction.

This ASGI middleware answers a well-formed request itself: the caller as `peng4nn_service.access`
authenticated it, the same body model validated the way the routes validate it
(`peng4nn_service.json_body.loads`, then the model), the same function the route calls
(`observe_points`, `open_session`, `submit_jobs`) and the same error handler for what that
raises. Anything else (another route, a body that does not parse or validate, no
Content-Length, a non-JSON content type) goes to FastAPI untouched, with the body it read
replayed and before anything was written, so every error response, the OpenAPI document
and the routes themselves stay as they are.
"""

from __future__ import annotations

import asyncio
import re
from functools import partial
from typing import Awaitable, Callable

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from peng4nn.jobs import JobCreate
from peng4nn_service.curve_schemas import CurveCreate, ObservationsCreate
from peng4nn_service.errors import HANDLED_REDIS_ERRORS, BodyRejected, ServiceError, handle_error
from peng4nn_service.json_body import loads
from peng4nn_service.responses import model_response

OBSERVATIONS_PATH = re.compile(r"^/v1/curves/([0-9a-f]{24})/observations$")
"""The route's path with its id pattern (`peng4nn_service.curve_sessions.CURVE_ID_PATTERN`)."""

JOBS_PATH = "/v1/jobs"
CURVES_PATH = "/v1/curves"

MAX_FAST_BODY = 64 * 1024
"""Larger bodies take the ordinary route; the framework's share of their cost is small."""

HANDLED_ERRORS = (ServiceError, *HANDLED_REDIS_ERRORS)
"""What the routes' own code raises and `peng4nn_service.errors.handle_error` answers."""


class FastPaths:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path == JOBS_PATH:
            if not _idempotency_key_ok(scope):  # the route answers 422 naming the header
                return await self.app(scope, receive, send)
            handler, arg = _submit_job, None
        elif path == CURVES_PATH:
            handler, arg = _open_curve, None
        else:
            match = OBSERVATIONS_PATH.match(path)
            if match is None:
                return await self.app(scope, receive, send)
            handler, arg = _observe, match.group(1)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"")
        if (not length.isdigit() or int(length) > MAX_FAST_BODY
                or headers.get(b"content-type", b"").split(b";")[0].strip() != b"application/json"):
            return await self.app(scope, receive, send)
        owner = scope.get("state", {}).get("owner")
        if owner is None:  # not authenticated by peng4nn_service.access (an app without it): the route decides
            return await self.app(scope, receive, send)
        body, messages = await _read_body(receive)
        try:
            data = loads(body)
            prepared = handler(data, arg)
        except (ValueError, ValidationError, BodyRejected):  # the route answers with its 422 and field paths
            return await self.app(scope, _replay(messages, receive), send)
        request = Request(scope)
        try:
            response = await prepared(request, owner)
        except HANDLED_ERRORS as exc:
            response = await handle_error(request, exc)  # the same handler the route's errors reach
        await response(scope, receive, send)


Prepared = Callable[[Request, str], Awaitable[Response]]


def _observe(data, curve_id: str) -> Prepared:
    points = ObservationsCreate.model_validate(data).points

    async def answer(request: Request, owner: str) -> Response:
        from peng4nn_service.routes.curves import get_curve_sessions, observe_points

        sessions = await get_curve_sessions(request)
        return JSONResponse(await observe_points(request, sessions, curve_id, owner, points))

    return answer


def _open_curve(data, _) -> Prepared:
    if data is None:  # the route's ``CurveCreate | None``: let it decide
        raise ValueError("null body")
    create = CurveCreate.model_validate(data)

    async def answer(request: Request, owner: str) -> Response:
        from peng4nn_service.routes.curves import get_curve_sessions, open_session

        created = await open_session(await get_curve_sessions(request), owner, create)
        return JSONResponse(created.model_dump(mode="json"), 201, {"Location": f"{CURVES_PATH}/{created.id}"})

    return answer


def _submit_job(data, _) -> Prepared:
    create = JobCreate.model_validate(data)

    async def answer(request: Request, owner: str) -> Response:
        from peng4nn_service import idempotency, jobs

        key = request.headers.get(idempotency.HEADER)  # well-formed: `_idempotency_key_ok` let it through
        state = request.app.state
        # Sync Redis and RQ in a worker thread, as the route (a plain ``def``) runs them; asyncio's own
        # executor hop costs a fraction of anyio's (capacity limiter, cancel scopes) on this path.
        accepted, replayed = await asyncio.get_running_loop().run_in_executor(
            None, partial(jobs.submit_job, state.store, state.queue, state.settings, owner, create,
                          state.active_jobs, key))
        return model_response(accepted, 202, idempotency.response_headers(accepted, replayed))

    return answer


def _idempotency_key_ok(scope: Scope) -> bool:
    from peng4nn_service.idempotency import valid_key

    values = [v for k, v in scope["headers"] if k == b"idempotency-key"]
    if not values:
        return True
    return len(values) == 1 and valid_key(values[0].decode("latin-1"))


async def _read_body(receive: Receive) -> tuple[bytes, list[Message]]:
    chunks, messages = [], []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks), messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay
