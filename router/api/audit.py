"""/v1/audit: logs, checkpoints, entries, proofs, subject history, report, verifier key.

Everything an auditor needs to check the logs with third-party tools: leaves are the exact bytes
hashed (base64), proofs are RFC 9162 hash lists, checkpoints are C2SP signed notes.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from domicile.audit.events import decode_leaf
from domicile.audit.report import sign_report
from domicile.audit.report_html import render_html
from domicile.audit.service import AuditService
from domicile.audit.sources import PAGE
from domicile.audit.store import Entry, IssuedCheckpoint, LogStore
from domicile.router.api.audit_models import (
    ConsistencyProofOut,
    EntryOut,
    InclusionProofOut,
    LogList,
    SignedReport,
    SubjectHistory,
)
from domicile.router.api.models import errors
from domicile.router.auth import AuditRead
from domicile.router.errors import ApiError
from domicile.router.responses import JSONResponse
from domicile.router.state import runtime_of
from domicile.shards.errors import SubjectNotFound, Unavailable
from domicile.shards.residency import build_report
from domicile.shards.validation import validate_jurisdiction, validate_subject_id

router = APIRouter(prefix="/v1/audit", tags=["audit"])

_TEXT = {"content": {"text/plain": {"schema": {"type": "string"}}}}


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _service(request: Request) -> AuditService:
    return runtime_of(request).audit


def _log(request: Request, name: str) -> LogStore:
    return _service(request).log(name)


def _entry(entry: Entry) -> dict[str, Any]:
    return {"index": entry.index, "leaf": _b64(entry.leaf), "event": decode_leaf(entry.leaf)}


def _checkpoint(checkpoint: IssuedCheckpoint | None) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    return {"size": checkpoint.size, "root_hash": _b64(checkpoint.root), "note": checkpoint.note}


@router.get(
    "/logs", operation_id="list_audit_logs", response_model=LogList, responses=errors(401, 403)
)
async def list_logs(request: Request, _: AuditRead) -> Response:
    service = _service(request)

    async def describe(shard_log: LogStore) -> dict[str, Any]:
        site = shard_log.site
        info: dict[str, Any] = {
            "log": shard_log.name,
            "origin": service.origin(shard_log.name),
            "shard": site.log,  # a shard's log is named after it
            "region": site.region,
            "country": site.country,
            "status": "unavailable",
            "size": None,
            "checkpoint": None,
        }
        try:
            info["size"] = await shard_log.size()
            info["checkpoint"] = _checkpoint(await shard_log.latest_checkpoint())
        except Unavailable:
            return info
        info["status"] = "ok"
        return info

    logs = await asyncio.gather(*(describe(shard_log) for shard_log in service.logs.values()))
    return JSONResponse({"verifier_key": service.signer.verifier_key(), "logs": list(logs)})


@router.get(
    "/logs/{log}/checkpoint",
    operation_id="get_audit_checkpoint",
    response_class=PlainTextResponse,
    responses={200: _TEXT, **errors(401, 403, 404, 503)},
)
async def get_checkpoint(log: str, request: Request, _: AuditRead) -> Response:
    """The latest signed checkpoint; it covers every entry committed before the request."""
    _log(request, log)
    checkpoint = await _service(request).checkpoint(log)
    return PlainTextResponse(checkpoint.note, headers={"Cache-Control": "no-store"})


@router.get(
    "/logs/{log}/entries",
    operation_id="list_audit_entries",
    response_model=list[EntryOut],
    responses=errors(401, 403, 404, 422, 503),
)
async def list_entries(
    log: str,
    request: Request,
    _: AuditRead,
    start: Annotated[int, Query(ge=0, description="first index")] = 0,
    end: Annotated[
        int | None,
        Query(ge=0, description=f"index after the last; at most {PAGE} entries are returned"),
    ] = None,
) -> Response:
    """Entries ``start <= index < end`` of the tree. Fewer are returned past the log's size or
    beyond a page (1000 entries); continue from the last index + 1."""
    shard_log = _log(request, log)
    if end is not None and end < start:
        raise ApiError(422, "out_of_range", f"end {end} is before start {start}")
    size = await shard_log.size()
    stop = min(start + PAGE, size, start + PAGE if end is None else end)
    entries = await shard_log.entries(start, stop) if stop > start else []
    return JSONResponse([_entry(e) for e in entries])


@router.get(
    "/logs/{log}/proof/inclusion",
    operation_id="get_audit_inclusion_proof",
    response_model=InclusionProofOut,
    responses=errors(401, 403, 404, 422, 503),
)
async def inclusion_proof(
    log: str,
    request: Request,
    _: AuditRead,
    index: Annotated[int, Query(ge=0)],
    tree_size: Annotated[
        int | None, Query(ge=1, description="default: the latest checkpoint's size")
    ] = None,
) -> Response:
    shard_log = _log(request, log)
    if tree_size is None:
        tree_size = (await _service(request).checkpoint(log)).size
    hashes = await shard_log.inclusion_proof(index, tree_size)
    return JSONResponse(
        {"index": index, "tree_size": tree_size, "hashes": [_b64(h) for h in hashes]}
    )


@router.get(
    "/logs/{log}/proof/consistency",
    operation_id="get_audit_consistency_proof",
    response_model=ConsistencyProofOut,
    responses=errors(401, 403, 404, 422, 503),
)
async def consistency_proof(
    log: str,
    request: Request,
    _: AuditRead,
    first: Annotated[int, Query(ge=1)],
    second: Annotated[
        int | None, Query(ge=1, description="default: the latest checkpoint's size")
    ] = None,
) -> Response:
    shard_log = _log(request, log)
    if second is None:
        second = (await _service(request).checkpoint(log)).size
    hashes = await shard_log.consistency_proof(first, second)
    return JSONResponse({"first": first, "second": second, "hashes": [_b64(h) for h in hashes]})


@router.get(
    "/subjects/{subject_id}",
    operation_id="get_subject_audit_history",
    response_model=SubjectHistory,
    responses=errors(401, 403, 404, 422, 503),
)
async def subject_history(subject_id: str, request: Request, _: AuditRead) -> Response:
    """Every entry about the subject in every log (its placement history), oldest first, each
    with an inclusion proof against the checkpoint returned for its log."""
    validate_subject_id(subject_id)
    pseudonym = runtime_of(request).pseudonyms.subject(subject_id)
    found, checkpoints = await _service(request).subject_history(pseudonym)
    if not found:
        raise SubjectNotFound()
    entries = []
    for item in found:
        size = checkpoints[item.log].size
        entries.append(
            {
                "log": item.log,
                **_entry(item.entry),
                "inclusion_proof": {
                    "index": item.entry.index,
                    "tree_size": size,
                    "hashes": [_b64(h) for h in item.proof],
                },
            }
        )
    entries.sort(key=lambda e: (e["event"].get("time", ""), e["log"], e["index"]))
    return JSONResponse(
        {
            "subject": pseudonym,
            "checkpoints": {name: cp.note for name, cp in checkpoints.items()},
            "entries": entries,
        }
    )


@router.get(
    "/report",
    operation_id="get_residency_report",
    response_model=SignedReport,
    responses={
        200: {"content": {"text/html": {"schema": {"type": "string"}}}},
        **errors(401, 403, 422),
    },
)
async def residency_report(
    request: Request,
    _: AuditRead,
    jurisdiction: Annotated[str | None, Query(description="one jurisdiction; default all")] = None,
    fmt: Annotated[Literal["json", "html"], Query(alias="format")] = "json",
) -> Response:
    """The residency report: JSON with its signed note, or HTML for a person."""
    if jurisdiction is not None:
        validate_jurisdiction(jurisdiction)
    runtime = runtime_of(request)
    report = await build_report(runtime.audit, runtime.registry, jurisdiction)
    note = sign_report(report, runtime.audit.signer)
    if fmt == "html":
        return HTMLResponse(render_html(report, note))
    return JSONResponse({"report": report, "signed_note": note})


@router.get(
    "/key",
    operation_id="get_audit_verifier_key",
    response_class=PlainTextResponse,
    responses={200: _TEXT},
)
async def verifier_key(request: Request) -> Response:
    """The signed-note verifier key of every checkpoint and report (public, no API key)."""
    return PlainTextResponse(_service(request).signer.verifier_key() + "\n")
