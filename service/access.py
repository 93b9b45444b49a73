"""Who is calling, and may they call now: the bearer-token check and the request-rate quota.

Runs as pure ASGI middleware in front of everything under ``/v1``, so a request without a
valid token is answered 401 before its body is read or parsed (the framework would parse
and validate the body first), and a token over its request rate gets 429 before any work is
done for it. The caller's owner id goes into ``scope["state"]["owner"]`` for the routes
(`peng4nn_service.deps.get_owner`) and the fast path. ``/healthz``, ``/livez``, ``/metrics`` and the docs stay open.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from peng4nn_service.errors import ServiceError, Unauthorized, handle_error
from peng4nn_service.quotas import RateLimiter

PUBLIC_OWNER = "public"
"""Owner of every job when access control is off."""

GUARDED_PREFIX = "/v1"
"""Paths under this prefix need a token (when tokens are configured) and count against the rate quota."""


def owner_id(token: str) -> str:
    """A stable, non-reversible id of a token (stored with each job instead of the token)."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def authenticate(tokens: frozenset[str], authorization: str | None) -> str:
    """The caller's owner id from an ``Authorization`` header value; `Unauthorized` when missing or wrong."""
    if not tokens:
        return PUBLIC_OWNER
    scheme, _, credentials = (authorization or "").partition(" ")
    credentials = credentials.strip()
    if authorization is None or scheme.lower() != "bearer" or not credentials:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'",
                           headers={"WWW-Authenticate": "Bearer"})
    given = credentials.encode()
    if not any(hmac.compare_digest(given, token.encode()) for token in tokens):
        raise Unauthorized("invalid bearer token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return owner_id(credentials)


class AccessGuard:
    """ASGI middleware: authenticate and rate-limit ``/v1`` requests before anything reads their body."""

    def __init__(self, app: ASGIApp, tokens: frozenset[str], limiter: RateLimiter):
        self.app, self.tokens, self.limiter = app, tokens, limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == GUARDED_PREFIX or path.startswith(GUARDED_PREFIX + "/")):
            return await self.app(scope, receive, send)
        authorization = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
        try:
            owner = authenticate(self.tokens, authorization)
            self.limiter.check(owner)
        except ServiceError as exc:
            response = await handle_error(Request(scope), exc)
            return await response(scope, receive, send)
        scope.setdefault("state", {})["owner"] = owner
        await self.app(scope, receive, send)
