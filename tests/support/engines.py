"""PostgreSQL without statement pools. On PostgreSQL the store's puts and gets and the catalog's
placement reads and move-journal steps are single prepared statements on an engine's
``StatementPool``; with none they take the SQLAlchemy paths SQLite takes, so both forms can be
checked on the same engine. (The shard log store's raw statements stay: they are chosen by
dialect, and its SQLAlchemy form of integration relies on SQLite's single writer.)"""

from __future__ import annotations

from typing import Any

import pytest

from domicile.shards import engines


class _NoPools:
    """In place of the engines' pool registry: a pool registered is forgotten at once."""

    def __setitem__(self, engine: Any, pool: Any) -> None:
        pass

    def get(self, engine: Any) -> None:
        return None


def without_statement_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until ``monkeypatch`` is undone, ``engines.statement_pool`` finds no pool for any engine,
    and engines created meanwhile never get one."""
    monkeypatch.setattr(engines, "_statement_pools", _NoPools())
