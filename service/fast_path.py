"""A lean path for the hottest request, ``POST /v1/curves/{id}/observations``, in front of FastAPI.

Profiling `peng4nn serve` under observe load showed about half of the API's CPU per post
in the framework around the handler (routing over every route, dependency solving, the
exception and telemetry wrappers), more than the fit and Redis together. This ASGI
middleware answers a well-formed post itself: the same bearer check, the same body model
(`ObservationsCreate`), the same `observe_points` the route calls and the same error
handler for what that raises. Anything else — another route, a missing or wrong token,
a body that does not validate, no Content-Length — goes to FastAPI untouched (with the
body it read replayed), so every error response, the OpenAPI document and the route
itself stay exactly as they are; the route is still what the tests and docs describe.
"""

from __future__ import annotations

import hmac
import re

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.curve_schemas import ObservationsCreate
from service.deps import PUBLIC_OWNER, owner_id
from service.errors import ServiceError, handle_error

OBSERVATIONS_PATH = re.compile(r"^/v1/curves/([0-9a-f]{24})/observations$")
"""The route's path with its id pattern (`service.curve_sessions.CURVE_ID_PATTERN`)."""

MAX_FAST_BODY = 64 * 1024
"""Larger posts (many points at once) take the ordinary route; the framework's share is small there."""


class ObservationFastPath:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        match = OBSERVATIONS_PATH.match(scope["path"])
        if match is None:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"")
        if (not length.isdigit() or int(length) > MAX_FAST_BODY
                or headers.get(b"content-type", b"").split(b";")[0].strip() != b"application/json"):
            return await self.app(scope, receive, send)
        owner = _owner(scope, headers.get(b"authorization"))
        if owner is None:
            return await self.app(scope, receive, send)
        body, messages = await _read_body(receive)
        try:
            points = ObservationsCreate.model_validate_json(body).points
        except ValidationError:  # the route answers with its 422 and field paths
            return await self.app(scope, _replay(messages, receive), send)
        from service.routes.curves import get_curve_sessions, observe_points

        request = Request(scope)
        try:
            sessions = await get_curve_sessions(request)
            result = await observe_points(request, sessions, match.group(1), owner, points)
        except (ServiceError, RedisConnectionError, RedisTimeoutError) as exc:
            response = await handle_error(request, exc)  # the same handler the route's errors reach
        else:
            response = JSONResponse(result)
        await response(scope, receive, send)


def _owner(scope: Scope, authorization: bytes | None) -> str | None:
    """The caller as `service.deps.get_owner` sees them, or None to let that dependency answer (401)."""
    tokens = scope["app"].state.settings.api_tokens
    if not tokens:
        return PUBLIC_OWNER
    if authorization is None:
        return None
    scheme, _, credentials = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not credentials:
        return None
    if not any(hmac.compare_digest(credentials.encode(), token.encode()) for token in tokens):
        return None
    return owner_id(credentials)


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
