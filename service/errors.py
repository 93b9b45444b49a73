"""Domain errors and the one handler that turns any of them into ``{"detail", "code"}``.

Routes raise `ServiceError` subclasses; Redis connection failures, request
validation errors and Starlette's own HTTP errors are translated here too, so
every error body has the same shape. Redis down is 503, never 404.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from redis import exceptions as redis_errors
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger("peng4nn.service")


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str


class ErrorPublic(BaseModel):
    """Every error response: a sentence for people, a code for programs, field paths for 422."""

    detail: str
    code: str
    errors: list[FieldError] | None = None


class ServiceError(Exception):
    """Base of the errors a route may raise; subclasses set the HTTP status and the code."""

    status_code = 500
    code = "internal_error"

    def __init__(self, detail: str, *, errors: Sequence[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in errors] if errors else None
        self.headers = headers


class InvalidInput(ServiceError):
    status_code, code = 422, "validation_error"


class Unauthorized(ServiceError):
    status_code, code = 401, "unauthorized"


class NotFound(ServiceError):
    status_code, code = 404, "not_found"


class JobNotFound(NotFound):
    code = "job_not_found"

    def __init__(self, job_id: str):
        super().__init__(f"job {job_id!r} does not exist (or has expired)")


class StateConflict(ServiceError):
    status_code, code = 409, "state_conflict"


class IdempotencyKeyReused(StateConflict):
    code = "idempotency_key_reused"


class BodyTooLarge(ServiceError):
    status_code, code = 413, "body_too_large"


class BodyRejected(StarletteHTTPException):
    """Carries a `ServiceError` out of FastAPI's body reader, which passes only HTTPExceptions on."""

    def __init__(self, error: ServiceError):
        super().__init__(error.status_code, error.detail)
        self.error = error


class StreamEnded(ServiceError):
    """Not an error: nothing is left to stream. 204 tells SSE clients to stop reconnecting."""

    status_code, code = 204, "stream_ended"


class QuotaExceeded(ServiceError):
    """Over a per-token quota that frees up with time: 429 with ``Retry-After`` (seconds)."""

    status_code, code = 429, "quota_exceeded"

    def __init__(self, detail: str, retry_after_s: float, code: str | None = None):
        super().__init__(detail, headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))})
        if code:
            self.code = code


class ServiceUnavailable(ServiceError):
    """The service cannot answer now; the code says why (never "unreachable" for a Redis that is up)."""

    status_code, code = 503, "redis_unavailable"

    def __init__(self, detail: str, code: str | None = None, retry_after_s: float | None = None):
        headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))} if retry_after_s else None
        super().__init__(detail, headers=headers)
        if code:
            self.code = code


#: Redis failures that are not "unreachable", most specific first: (exception, code, detail, Retry-After s).
_REDIS_FAILURES: tuple[tuple[type[Exception], str, str, float], ...] = (
    (redis_errors.MaxConnectionsError, "overloaded",
     "every Redis connection of this API process is in use (PENG4NN_REDIS_MAX_CONNECTIONS); retry shortly", 1),
    (redis_errors.AuthenticationError, "redis_auth",
     "the job store (Redis) refused the API's credentials: check the password in REDIS_URL", 30),
    (redis_errors.AuthorizationError, "redis_auth",
     "the job store (Redis) refused the API's credentials: check the password in REDIS_URL", 30),
    (redis_errors.BusyLoadingError, "redis_loading", "the job store (Redis) is loading its data after a restart; "
                                                      "retry shortly", 2),
    (redis_errors.OutOfMemoryError, "store_full",
     "the job store (Redis) is full (maxmemory reached): nothing was written; retry after old jobs expire", 60),
    (redis_errors.ReadOnlyError, "redis_read_only", "the job store (Redis) is a read-only replica right now", 5),
)


#: Starlette HTTP status -> our code, for errors the framework raises itself (404 route, 405 method).
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request", 401: "unauthorized",
               413: "body_too_large"}


def to_service_error(exc: Exception) -> ServiceError:
    """Map any handled exception to a `ServiceError`."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, BodyRejected):
        return exc.error
    if isinstance(exc, RequestValidationError):
        errors = [{"loc": _clean_loc(e["loc"]), "msg": _message(e)} for e in exc.errors()]
        detail = "; ".join(f"{format_loc(e['loc'])}: {e['msg']}" for e in errors[:5])
        if len(errors) > 5:
            detail += f"; and {len(errors) - 5} more"
        return InvalidInput(detail or "invalid request", errors=errors)
    for exc_class, code, detail, retry_after in _REDIS_FAILURES:
        if isinstance(exc, exc_class):
            log.warning("Redis: %s (%s)", exc, code)
            return ServiceUnavailable(detail, code, retry_after)
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
        log.warning("Redis unavailable: %s", exc)
        return ServiceUnavailable("the job store (Redis) is unreachable; retry later", retry_after_s=2)
    if isinstance(exc, StarletteHTTPException):
        err = ServiceError(str(exc.detail), headers=getattr(exc, "headers", None))
        err.status_code = exc.status_code
        err.code = _HTTP_CODES.get(exc.status_code, "http_error")
        return err
    raise exc  # pragma: no cover - only registered exception types reach here


async def handle_error(request: Request, exc: Exception) -> Response:
    """The one exception handler: any mapped error -> ``ErrorPublic`` JSON."""
    err = to_service_error(exc)
    if err.status_code == 204:
        return Response(status_code=204)
    if err.status_code == 405:
        err.headers = {**(err.headers or {}), "Allow": ", ".join(allowed_methods(request))}
        err.detail = f"method {request.method} is not allowed here; allowed: {err.headers['Allow']}"
    body: dict[str, Any] = {"detail": err.detail, "code": err.code}
    if err.errors is not None:
        body["errors"] = err.errors
    return JSONResponse(body, status_code=err.status_code, headers=err.headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's 405 names only the first route's)."""
    return [method for method in _METHODS
            if any(route.matches({**request.scope, "method": method})[0] is Match.FULL
                   for route in request.app.router.routes)]


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


HANDLED_REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, redis_errors.OutOfMemoryError,
                        redis_errors.ReadOnlyError)
"""Redis failures answered as 503 (the connection errors include auth, loading and pool exhaustion)."""


def install_error_handlers(app: FastAPI) -> None:
    for exc_class in (ServiceError, RequestValidationError, *HANDLED_REDIS_ERRORS, StarletteHTTPException):
        app.add_exception_handler(exc_class, handle_error)


def format_loc(loc: Sequence[str | int]) -> str:
    """``["body", "jobs", 2, "dataset"]`` -> ``"body.jobs[2].dataset"``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _clean_loc(loc: Sequence[str | int]) -> list[str | int]:
    """Drop pydantic's union tag from layer paths: ``layers, 3, "conv2d", kernel`` -> ``layers, 3, kernel``."""
    from peng4nn.spec import LAYER_TYPES

    out: list[str | int] = []
    for part in loc:
        if isinstance(part, str) and part in LAYER_TYPES and out and isinstance(out[-1], int):
            continue
        out.append(part)
    return out


def _message(err: dict[str, Any]) -> str:
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        return "unknown field"
    if err["type"] == "json_invalid":
        ctx = err.get("ctx") or {}
        return f"invalid JSON: {ctx.get('error', msg)}"
    if "input" in err and err["type"] != "missing" and not isinstance(err["input"], (dict, list)):
        return f"{msg}; got {err['input']!r}"
    return msg


#: OpenAPI ``responses=`` entries for the error statuses, so the document names the error model.
def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorPublic} for status in statuses}
