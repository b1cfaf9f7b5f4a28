"""/v1/audit: logs, checkpoints, entries, proofs, subject history, report, verifier key."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1/audit", tags=["audit"])
