"""Property-based fuzzing of the real API (uvicorn, embedded Redis) from the committed OpenAPI document.

Schemathesis generates requests for every operation of ``openapi/openapi.json``, valid and
invalid (wrong types, missing fields, odd methods, odd headers), with a bounded number of
examples so CI stays fast and derandomized so a red run is reproducible. Every response
must be documented and match its schema, and no request may get a 5xx. The one documented
5xx is ``GET /healthz``'s 503 with no live worker (none runs here); its body is still checked.
A request the schema allows may still be refused with 422 (dataset names, network shapes and
epoch order are checked beyond what the document can say), and unknown query parameters are
ignored as HTTP APIs usually do, so the two request-side checks ("valid request rejected",
"invalid request accepted") are not run.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from peng4nn_service.openapi import OPENAPI_PATH
from tests.conftest import make_settings, start_api

TOKEN = "fuzz-token"
MAX_EXAMPLES = 20
"""Generated examples per operation (plus schemathesis's deterministic coverage cases)."""

schema = schemathesis.openapi.from_path(OPENAPI_PATH)

CHECKS = [status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def server(redis_url):
    api = start_api(make_settings(redis_url, api_tokens=TOKEN))
    yield api
    api.stop()


@pytest.mark.timeout(120)
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_operation_answers_within_its_schema_and_never_5xx(case, server):
    response = case.call(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    checks = CHECKS if case.operation.path == "/healthz" else [*CHECKS, not_a_server_error]
    case.validate_response(response, checks=checks)
