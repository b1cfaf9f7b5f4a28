"""/v1/moves (admin): online moves of subjects between shards.

``POST`` runs the move to its end before answering (a subject of a few records moves in
milliseconds); the journal entry it returns, and ``GET /v1/moves/{id}``, name the subject by
pseudonym only, as the catalog does.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from starlette.responses import Response

from domicile.router.api.common import Purpose, actor_of, require_json
from domicile.router.api.models import errors
from domicile.router.auth import Admin
from domicile.router.errors import ApiError
from domicile.router.responses import JSONResponse
from domicile.router.state import runtime_of
from domicile.router.views import move_json
from domicile.shards.moves import Mover

router = APIRouter(prefix="/v1/moves", tags=["moves"])


class MoveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject_id: str
    to_shard: str = Field(validation_alias=AliasChoices("to_shard", "to"))


class MoveOut(BaseModel):
    id: str
    subject: str  # pseudonym
    jurisdiction: str
    from_shard: str
    to_shard: str
    # planned | verified | switched | done | failed | rolled_back (journals of earlier
    # releases may still show copying or purged)
    state: str
    reason: str
    records: int | None
    digest: str | None  # SHA-256 over the moved records' (pseudonym, version, content_sha256)
    error: str | None
    created_at: str
    updated_at: str
    finished_at: str | None


@router.post(
    "",
    operation_id="move_subject",
    status_code=201,
    response_model=MoveOut,
    responses=errors(401, 403, 404, 409, 415, 422, 503),
)
async def move_subject(
    body: MoveRequest, request: Request, _: Admin, purpose: Purpose = None
) -> Response:
    """Move a subject to ``to_shard`` (alias ``to``), online and verified: 201 with the move
    when it has ended (``state`` done, or failed / rolled_back with ``error``); 422 if the
    policy does not permit that shard; 409 if the subject is already there; 503 if a shard is
    down mid-move (retrying the same request resumes it)."""
    require_json(request)
    runtime = runtime_of(request)
    mover = Mover(
        runtime.settings.topology,
        runtime.registry,
        runtime.directory,
        runtime.move_journal,
        runtime.pseudonyms,
        actor=actor_of(request, purpose),
    )
    # Shielded: a client hanging up must not stop a move half-way through a step.
    moved = await asyncio.shield(mover.move_subject(body.subject_id, body.to_shard, "api"))
    location = {"Location": f"/v1/moves/{moved.id}"}
    if not moved.state.finished:
        raise ApiError(
            503,
            "move_interrupted",
            f"move {moved.id} stopped at {moved.state} ({moved.error}); retry to resume it",
            {"Retry-After": "1", **location},
        )
    return JSONResponse(move_json(moved), status_code=201, headers=location)


@router.get(
    "/{move_id}", operation_id="get_move", response_model=MoveOut, responses=errors(401, 403, 404)
)
async def get_move(move_id: str, request: Request, _: Admin) -> Response:
    found = await runtime_of(request).move_journal.get(move_id)
    if found is None:
        raise ApiError(404, "move_not_found", f"there is no move {move_id!r}")
    return JSONResponse(move_json(found))
