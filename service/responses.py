"""JSON responses built from the models we already validated.

A plain ``def`` route that returns a model makes FastAPI validate and serialise it
again in a second thread-pool hop; the routes return `model_response(...)` instead
(the declared ``response_model`` still documents the body in OpenAPI).
"""

from __future__ import annotations

from fastapi import Response
from pydantic import BaseModel


def model_response(model: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(model.model_dump_json(), status_code=status_code, headers=headers,
                    media_type="application/json")
