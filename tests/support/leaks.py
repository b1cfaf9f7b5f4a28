"""Where given bytes are stored: every column of every table of every shard and the catalog,
searched in the databases themselves (bytea and BLOB columns as the bytes they hold)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from tests.support.deployment import Deployment, query_sqlite


def _sqlite_holders(path: str, needle: bytes) -> set[str]:
    tables = [
        t for (t,) in query_sqlite(path, "SELECT name FROM sqlite_master WHERE type = 'table'", ())
    ]
    found = set()
    for table in tables:
        columns = [c[1] for c in query_sqlite(path, f'PRAGMA table_info("{table}")', ())]
        for column in columns:
            sql = f'SELECT count(*) FROM "{table}" WHERE instr(CAST("{column}" AS BLOB), ?) > 0'
            if query_sqlite(path, sql, (needle,))[0][0]:
                found.add(table)
    return found


async def _postgres_holders(url: str, needle: bytes) -> set[str]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        columns = await conn.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public'"
        )
        found = set()
        for table, column, data_type in columns:
            value = (
                f'"{column}"' if data_type == "bytea" else f"convert_to(\"{column}\"::text, 'UTF8')"
            )
            sql = f'SELECT count(*) FROM "{table}" WHERE position($1::bytea in {value}) > 0'
            if await conn.fetchval(sql, needle):
                found.add(table)
        return found
    finally:
        await conn.close()


async def holders_of(dep: Deployment, needle: bytes) -> set[tuple[str, str]]:
    """(database, table) of every table holding ``needle``: the shards by name, ``catalog``."""
    databases = {**dep.shard_urls, "catalog": dep.settings().catalog_url}
    found: set[tuple[str, str]] = set()
    for name, url in databases.items():
        if url.startswith("sqlite"):
            path = str(Path(url.split("///", 1)[1]))
            tables = await asyncio.to_thread(_sqlite_holders, path, needle)
        else:
            tables = await _postgres_holders(url, needle)
        found |= {(name, table) for table in tables}
    return found
