"""Request bodies parsed as strict JSON, the same way on the fast path and in the routes.

Python's `json.loads` accepts what JSON does not (``NaN``, ``Infinity``, ``1e999`` read as
infinity) and fails with errors FastAPI does not expect (`RecursionError` on deep nesting,
`UnicodeDecodeError`, the 4,300-digit integer limit): a non-finite number would be stored
as ``null`` and fail later in a worker, and the others were 500s or undocumented 400s. Here
a non-finite number is a 422 naming its field path, and every other way a body can fail to
parse is a `json.JSONDecodeError`, which FastAPI answers as 422 ``invalid JSON`` saying why.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from peng4nn_service.errors import BodyRejected, InvalidInput, format_loc


def non_finite(loc: list[str | int], text: str) -> BodyRejected:
    """A NaN or infinite number in a body: 422 naming its path."""
    msg = f"must be a finite number; got {text}"
    return BodyRejected(InvalidInput(f"{format_loc(loc)}: {msg}", errors=[{"loc": loc, "msg": msg}]))


class _Parse:
    """One parse; remembers whether a non-finite number was read (only then is the result searched)."""

    def __init__(self) -> None:
        self.non_finite = False

    def constant(self, name: str) -> float:
        self.non_finite = True
        return float(name.replace("Infinity", "inf"))

    def number(self, text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            self.non_finite = True
        return value


def loads(body: bytes | str) -> Any:
    """Parse a request body: `BodyRejected` (422) for a non-finite number, `json.JSONDecodeError` for the rest."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError(f"the body is not UTF-8 text (byte {exc.start})", "", 0) from None
    parse = _Parse()
    try:
        data = json.loads(body, parse_constant=parse.constant, parse_float=parse.number)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", "", 0) from None
    except ValueError as exc:  # Python's integer digit limit
        raise json.JSONDecodeError(str(exc), "", 0) from None
    if parse.non_finite:
        try:
            loc, value = _first_non_finite(data, ["body"])
        except RecursionError:
            raise json.JSONDecodeError("nested too deeply", "", 0) from None
        raise non_finite(loc, "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity"))
    return data


def _first_non_finite(data: Any, loc: list) -> tuple[list, float] | None:
    if isinstance(data, float) and not math.isfinite(data):
        return loc, data
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for name, value in items:
        found = _first_non_finite(value, [*loc, name])
        if found is not None:
            return found
    return None




class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """An APIRoute whose handler reads JSON bodies with `loads` (FastAPI's documented custom-route hook)."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler
