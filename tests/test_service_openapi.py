"""The committed OpenAPI document must match the app (regenerate with ``python -m peng4nn_service.openapi``)."""

from __future__ import annotations

import json

from peng4nn_service.openapi import OPENAPI_PATH, render


def test_committed_openapi_matches_the_app():
    committed = OPENAPI_PATH.read_text()
    assert committed == render(), "openapi/openapi.json drifted from the app: run `python -m peng4nn_service.openapi`"


def test_openapi_documents_errors_and_auth():
    doc = json.loads(OPENAPI_PATH.read_text())
    post = doc["paths"]["/v1/jobs"]["post"]
    assert {"202", "401", "413", "422", "503"} <= set(post["responses"])
    assert post["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorPublic")
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
    events = doc["paths"]["/v1/jobs/{job_id}/events"]["get"]
    assert "text/event-stream" in events["responses"]["200"]["content"]
