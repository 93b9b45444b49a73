"""/v1/curves: observe mode, for networks the caller trains itself.

The caller opens a session, posts each validation point and gets the engine's decision
back at once: it is made in this process by the library's policy with the fast fitting
back-end (no queue hop). ``async def`` handlers on ``redis.asyncio`` throughout: the fit
runs inline on the event loop (see `peng4nn_service.curve_sessions` for why not in a thread).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request, Response
from fastapi.responses import JSONResponse

from peng4nn_service.curve_schemas import (
    CurveCreate,
    CurveCreated,
    CurvePublic,
    ObservationPoint,
    ObservationResult,
    ObservationsCreate,
)
from peng4nn_service.curve_sessions import CURVE_ID_PATTERN, CurveSessions
from peng4nn_service.deps import OwnerDep, v1_router
from peng4nn_service.errors import error_responses
from peng4nn_service.fit_batching import FitBatcher, prefitted
from peng4nn_service.quotas import check_points_per_post

router = v1_router("/curves", "curves")


async def get_curve_sessions(request: Request) -> CurveSessions:
    """The app's session store (made by the lifespan, on the app's event loop)."""
    return request.app.state.curve_sessions


SessionsDep = Annotated[CurveSessions, Depends(get_curve_sessions)]


def get_fit_batcher(request: Request) -> FitBatcher:
    """The app's batcher of observation fits (one event loop per app)."""
    return request.app.state.fit_batcher


CurveId = Annotated[str, Path(pattern=CURVE_ID_PATTERN, description="The id POST /v1/curves answered.")]


@router.post("", status_code=201, response_model=CurveCreated)
async def create_curve(owner: OwnerDep, sessions: SessionsDep, response: Response,
                       body: CurveCreate | None = None) -> CurveCreated:
    """Open an observation session (estimator settings, classes and label are optional)."""
    created = await open_session(sessions, owner, body)
    response.headers["Location"] = f"/v1/curves/{created.id}"
    return created


async def open_session(sessions: CurveSessions, owner: str, body: CurveCreate | None) -> CurveCreated:
    """The session-opening post's work and answer (also called by `peng4nn_service.fast_path`)."""
    curve_id = await sessions.create(owner, body or CurveCreate())
    return CurveCreated(id=curve_id, expires_in_s=sessions.settings.curve_ttl_s)


@router.post("/{curve_id}/observations", response_model=ObservationResult, responses=error_responses(404, 409))
async def observe_curve(curve_id: CurveId, body: ObservationsCreate, owner: OwnerDep,
                        sessions: SessionsDep, request: Request) -> JSONResponse:
    """Append points (epochs increasing) and answer the decision after the last one; all or nothing."""
    # The library's Decision as it is: answered directly, not re-validated (the hot path).
    return JSONResponse(await observe_points(request, sessions, curve_id, owner, body.points))


async def observe_points(request: Request, sessions: CurveSessions, curve_id: str, owner: str,
                         points: list[ObservationPoint]) -> dict:
    """The observation post's work and answer (also called by `peng4nn_service.fast_path`, which skips the framework)."""
    check_points_per_post(len(points), request.app.state.settings.quota_points_per_post)
    entry = sessions.cache.get(curve_id)
    policy = entry.policy if entry is not None and entry.owner == owner else None
    # One point for a cached policy: its fit is made together with the other posts of this loop turn.
    async with prefitted(get_fit_batcher(request), policy, points):
        decision, n_points = await sessions.observe(curve_id, owner, points)
    return {**decision, "n_points": n_points}


@router.get("/{curve_id}", response_model=CurvePublic, responses=error_responses(404))
async def read_curve(curve_id: CurveId, owner: OwnerDep, sessions: SessionsDep) -> CurvePublic:
    """Every point with the decision made after it, the latest and the first stopping decision."""
    return await sessions.get(curve_id, owner)


@router.delete("/{curve_id}", status_code=204, responses=error_responses(404))
async def delete_curve(curve_id: CurveId, owner: OwnerDep, sessions: SessionsDep) -> Response:
    """Forget a session and its points."""
    await sessions.delete(curve_id, owner)
    return Response(status_code=204)
