"""A service that imports the client imports httpx, not the server: no web framework, database
driver or ORM comes with it."""

from __future__ import annotations

import subprocess
import sys

SERVER_ONLY = (
    "fastapi",
    "starlette",
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
    "alembic",
    "redis",
    "boto3",
    "pydantic",
    "domicile.router",
    "domicile.shards",
    "domicile.audit",
)


def test_importing_the_client_brings_no_server_dependency() -> None:
    code = (
        "import sys, domicile.client\n"
        f"print(' '.join(m for m in {SERVER_ONLY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
