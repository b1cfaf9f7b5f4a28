"""JSON views of domain objects that the HTTP API and the CLI both print, so the two agree."""

from __future__ import annotations

from datetime import UTC, datetime

from domicile.audit.events import rfc3339
from domicile.shards.api_keys import ApiKey
from domicile.shards.move_journal import MoveRow


def _time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return rfc3339(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def move_json(m: MoveRow) -> dict[str, object]:
    return {
        "id": m.id,
        "subject": m.pseudonym,
        "jurisdiction": m.jurisdiction,
        "from_shard": m.from_shard,
        "to_shard": m.to_shard,
        "state": m.state,
        "reason": m.reason,
        "records": m.records,
        "digest": m.digest,
        "error": m.error,
        "created_at": _time(m.created_at),
        "updated_at": _time(m.updated_at),
        "finished_at": _time(m.finished_at),
    }


def key_json(k: ApiKey) -> dict[str, object]:
    """An API key as listed: never its secret (nor the secret's hash)."""
    return {
        "key_id": k.key_id,
        "name": k.name,
        "scopes": sorted(k.scopes),
        "created_at": _time(k.created_at),
        "last_used_at": _time(k.last_used_at),
        "revoked_at": _time(k.revoked_at),
    }
