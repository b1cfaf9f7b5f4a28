"""/v1/moves (admin): online moves of subjects between shards."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1/moves", tags=["moves"])
