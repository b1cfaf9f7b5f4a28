"""Response shapes of /v1/audit, for an accurate OpenAPI document. Hashes and leaves are
standard base64; leaves are the exact bytes that were hashed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class CheckpointOut(BaseModel):
    size: int
    root_hash: str = Field(description="base64 of the tree's root hash")
    note: str = Field(description="the signed checkpoint (C2SP tlog-checkpoint, signed note)")


class LogOut(BaseModel):
    log: str
    origin: str
    shard: str
    region: str
    country: str
    status: str = Field(description="ok, or unavailable when the shard cannot be read")
    size: int | None = Field(description="entries integrated into the tree")
    checkpoint: CheckpointOut | None = Field(description="the latest checkpoint issued")


class LogList(BaseModel):
    verifier_key: str
    logs: list[LogOut]


class EntryOut(BaseModel):
    index: int
    leaf: str = Field(description="base64 of the exact leaf bytes (RFC 8785 JSON)")
    event: dict[str, Any] = Field(description="the leaf, decoded")


class InclusionProofOut(BaseModel):
    index: int
    tree_size: int
    hashes: list[str]


class ConsistencyProofOut(BaseModel):
    first: int
    second: int
    hashes: list[str]


class HistoryEntryOut(EntryOut):
    log: str
    inclusion_proof: InclusionProofOut


class SubjectHistory(BaseModel):
    subject: str = Field(description="the subject's pseudonym, as it appears in leaves")
    checkpoints: dict[str, str] = Field(
        description="log -> the signed checkpoint every proof of that log is against"
    )
    entries: list[HistoryEntryOut]


class SignedReport(BaseModel):
    report: dict[str, Any]
    signed_note: str = Field(description="signed note whose text is the report's RFC 8785 JSON")
