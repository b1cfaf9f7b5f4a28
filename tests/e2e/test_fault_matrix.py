"""One broken shard costs only itself: each way a shard's database goes wrong in practice, at
start or while serving, with only ``ru-msk-1`` broken. Every case checks that the router is
alive and ready, that another shard's subjects are served, that the broken shard's subjects get
503 + Retry-After with a code naming the cause, that ``shards status`` names it while a command
that needs no shard works, that nothing printed or logged a traceback, and (where the cause can
be removed without a restart) that service comes back by itself once it is.

docs/architecture.md's failure-mode table lists the same rows."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from domicile.router.app import create_app
from domicile.router.runtime import Runtime
from domicile.shards.schema_runner import CATALOG_HISTORY, SHARD_HISTORY
from tests.support.api import Api, start_api
from tests.support.cli import cli
from tests.support.deployment import (
    Deployment,
    drop_databases,
    make_deployment,
    migrated_template,
    pg_url,
)
from tests.support.ports import free_port

pytestmark = pytest.mark.anyio

BROKEN = "ru-msk-1"


@dataclass
class Context:
    dep: Deployment
    tmp_path: Path

    @property
    def role(self) -> str:
        """A role of this test's own (cases run in parallel)."""
        return f"{self.database}_role"

    @property
    def database(self) -> str:
        """The broken shard's PostgreSQL database."""
        return self.dep.databases[0]

    @property
    def sqlite_file(self) -> Path:
        return Path(self.dep.shard_urls[BROKEN].removeprefix("sqlite+aiosqlite:///"))


Step = Callable[[Context], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    name: str
    backend: str
    cause: str
    #: "start": broken before the router starts; "run": broken while it serves.
    when: str
    breaks: Step
    #: Removes the cause without restarting the router; None where that needs a config change.
    fixes: Step | None = None


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(pg_url("postgres", "postgresql"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _terminate(database: str) -> None:
    await _admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    )


async def _point_at(ctx: Context, url: str) -> None:
    ctx.dep.config.write_text(ctx.dep.config.read_text().replace(ctx.dep.shard_urls[BROKEN], url))


def _url_as(ctx: Context, role: str) -> str:
    return pg_url(ctx.database).replace("postgres@", f"{role}@")


async def _give_to_role(ctx: Context) -> None:
    """Make the role own the shard's schema, as a deployment's own role would."""
    conn = await asyncpg.connect(pg_url(ctx.database, "postgresql"))
    try:
        await conn.execute(
            f"""DO $$ DECLARE r record; BEGIN
            FOR r IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' LOOP
                EXECUTE format('ALTER TABLE public.%I OWNER TO {ctx.role}', r.tablename);
            END LOOP;
            FOR r IN SELECT p.oid::regprocedure AS f FROM pg_proc p
                JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' LOOP
                EXECUTE format('ALTER FUNCTION %s OWNER TO {ctx.role}', r.f);
            END LOOP;
            END $$"""
        )
    finally:
        await conn.close()


# -- PostgreSQL ---------------------------------------------------------------------------------


async def _missing_database(ctx: Context) -> None:
    await drop_databases([ctx.database])


async def _create_database(ctx: Context) -> None:
    template = await migrated_template("postgres", SHARD_HISTORY)
    await _admin(f'CREATE DATABASE "{ctx.database}" TEMPLATE "{template}"')


async def _unknown_role(ctx: Context) -> None:
    await _point_at(ctx, _url_as(ctx, ctx.role))


async def _create_role(ctx: Context) -> None:
    await _admin(f"CREATE ROLE {ctx.role} LOGIN")
    await _give_to_role(ctx)


async def _role_without_connections(ctx: Context) -> None:
    await _admin(f"CREATE ROLE {ctx.role} LOGIN CONNECTION LIMIT 0")
    await _give_to_role(ctx)
    await _point_at(ctx, _url_as(ctx, ctx.role))


async def _lift_connection_limit(ctx: Context) -> None:
    await _admin(f"ALTER ROLE {ctx.role} CONNECTION LIMIT -1")


async def _unresolvable_host(ctx: Context) -> None:
    await _point_at(ctx, pg_url(ctx.database).replace("127.0.0.1", "ru-db.invalid"))


async def _read_only(ctx: Context) -> None:
    """What a failover to a standby looks like from the client: every connection is dropped,
    and the new ones are read-only."""
    await _admin(f'ALTER DATABASE "{ctx.database}" SET default_transaction_read_only = on')
    await _terminate(ctx.database)


async def _writable_again(ctx: Context) -> None:
    await _admin(f'ALTER DATABASE "{ctx.database}" RESET default_transaction_read_only')
    await _terminate(ctx.database)


async def _dropped(ctx: Context) -> None:
    await _admin(f'DROP DATABASE "{ctx.database}" WITH (FORCE)')


# -- SQLite ---------------------------------------------------------------------------------------


async def _garbage_file(ctx: Context) -> None:
    ctx.sqlite_file.write_bytes(b"this is not a database file\n" * 200)


async def _restore_file(ctx: Context) -> None:
    for suffix in ("-wal", "-shm"):
        ctx.sqlite_file.with_name(ctx.sqlite_file.name + suffix).unlink(missing_ok=True)
    shutil.copyfile(await migrated_template("sqlite", SHARD_HISTORY), ctx.sqlite_file)


async def _empty_file(ctx: Context) -> None:
    ctx.sqlite_file.write_bytes(b"")


async def _upgrade(ctx: Context) -> None:
    result = await cli(ctx.dep.config, "shards", "upgrade")
    assert result.exit_code == 0, result.output


def _set_identity(path: Path, name: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("DELETE FROM shard_identity")
        db.execute(
            "INSERT INTO shard_identity (name, region, country, created_at) "
            "VALUES (?, 'eu-fra', 'DE', '2026-01-01T00:00:00+00:00')",
            (name,),
        )


async def _another_shards_file(ctx: Context) -> None:
    _set_identity(ctx.sqlite_file, "eu-fra-1")


async def _own_identity(ctx: Context) -> None:
    _set_identity(ctx.sqlite_file, BROKEN)


def _filler(ctx: Context) -> Path:
    return ctx.sqlite_file.parent / "filler"


async def _fill_disk(ctx: Context) -> None:
    with _filler(ctx).open("wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()


async def _free_disk(ctx: Context) -> None:
    _filler(ctx).unlink()


CASES = [
    Case("database missing", "postgres", "database_missing", "start", _missing_database,
         _create_database),
    Case("role missing", "postgres", "auth_failed", "start", _unknown_role, _create_role),
    Case("connection limit", "postgres", "too_many_connections", "start",
         _role_without_connections, _lift_connection_limit),
    Case("host does not resolve", "postgres", "unreachable", "start", _unresolvable_host),
    Case("silent server", "postgres", "timeout", "start", lambda ctx: asyncio.sleep(0)),
    Case("read-only after failover", "postgres", "read_only", "run", _read_only,
         _writable_again),
    Case("database dropped", "postgres", "database_missing", "run", _dropped, _create_database),
    Case("not a database", "sqlite", "damaged", "start", _garbage_file, _restore_file),
    Case("no schema", "sqlite", "schema_missing", "start", _empty_file, _upgrade),
    Case("another shard's file", "sqlite", "identity_mismatch", "start", _another_shards_file,
         _own_identity),
    Case("disk full", "sqlite", "disk_full", "run", _fill_disk, _free_disk),
]  # fmt: skip


@contextlib.contextmanager
def _small_file_system(path: Path) -> Iterator[bool]:
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(path)], capture_output=True
    )
    try:
        yield mounted.returncode == 0
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.asynccontextmanager
async def _silent_server() -> AsyncIterator[int]:
    """A server that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()


async def _until(check: Callable[[], Awaitable[bool]], seconds: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "did not recover in time"
        await asyncio.sleep(0.25)


async def _broken_shard(api: Api) -> dict[str, str | None]:
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    shards: dict[str, dict[str, str | None]] = ready.json()["shards"]
    assert all(s["state"] == "up" for name, s in shards.items() if name != BROKEN), shards
    return shards[BROKEN]


def _assert_refused(response: httpx.Response, code: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit()
    assert response.json()["error"]["code"] == code, response.text
    assert BROKEN in response.json()["error"]["message"]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_a_broken_shard_costs_only_itself(
    case: Case, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with contextlib.AsyncExitStack() as stack:
        urls: dict[str, str] = {}
        if case.name == "silent server":
            port = await stack.enter_async_context(_silent_server())
            urls[BROKEN] = pg_url("silent", port=port)
        if case.name == "disk full":
            small = tmp_path / "small"
            if not stack.enter_context(_small_file_system(small)):
                pytest.skip("cannot mount a small file system here (needs root)")
            shutil.copyfile(await migrated_template("sqlite", SHARD_HISTORY), small / "ru.sqlite")
            urls[BROKEN] = f"sqlite+aiosqlite:///{small / 'ru.sqlite'}"
        dep = await make_deployment(tmp_path, case.backend, urls=urls)
        ctx = Context(dep, tmp_path)
        if case.backend == "postgres":  # after the databases it may own objects in
            stack.push_async_callback(_admin, f"DROP ROLE IF EXISTS {ctx.role}")
        stack.push_async_callback(drop_databases, dep.databases)
        if case.when == "start":
            await case.breaks(ctx)
        async for api in start_api(dep.settings()):
            if case.when == "run":
                assert (await api.register("ivan", "RU")).status_code == 201
                assert (await api.put("ivan", "profile", "main", {"v": 1})).status_code == 200
                await case.breaks(ctx)
            assert (await api.client.get("/healthz")).status_code == 200

            # Another region's subjects are served, reads and writes alike.
            assert (await api.register("ann", "US")).status_code == 201
            assert (await api.put("ann", "profile", "main", {"v": 1})).status_code == 200
            assert (await api.request("GET", "/v1/subjects/ann/records/profile/main")).is_success

            # The broken shard's subjects get 503 naming the cause (a fault met at run time
            # may first show as the connections it dropped: retried until the cause shows).
            code = f"shard_{case.cause}"
            if case.cause == "read_only":
                read = "/v1/subjects/ivan/records/profile/main"
                await _until(partial(_status, api, "GET", read, 200))
                _assert_refused(await api.put("ivan", "profile", "main", {"v": 2}), code)
            elif case.when == "run":
                await _until(partial(_code, api, code))
                _assert_refused(await api.put("ivan", "profile", "main", {"v": 2}), code)
            else:
                _assert_refused(await api.register("olga", "RU"), code)
            broken = await _broken_shard(api)
            assert broken["cause"] == case.cause, broken
            assert broken["state"] == ("read_only" if case.cause == "read_only" else "down")

            # The CLI: status names the shard and the cause; a command that needs no shard
            # works; neither prints a traceback.
            status = await cli(dep.config, "shards", "status")
            assert status.exit_code == 1, status.output
            assert f"{BROKEN}: {broken['reason']}" in status.output
            keys = await cli(dep.config, "keys", "create", "--name", "x", "--scope", "admin")
            assert keys.exit_code == 0, keys.output
            for output in (status.output, keys.output):
                assert "Traceback" not in output

            if case.fixes is not None:
                await case.fixes(ctx)
                if case.cause == "read_only":
                    await _until(partial(_status, api, "PUT", "/v1/subjects/ivan/records/p/k", 200))
                else:
                    await _until(partial(_status, api, "POST", "/v1/subjects", 201, "olga"))
                assert (await _broken_shard(api))["state"] == "up"
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def _status(api: Api, method: str, path: str, want: int, subject: str = "") -> bool:
    if method == "POST":
        response = await api.register(subject, "RU")
    else:
        response = await api.request(method, path, json={"v": 3} if method == "PUT" else None)
    assert response.status_code in (want, 503), response.text
    return response.status_code == want


async def _code(api: Api, code: str) -> bool:
    response = await api.put("ivan", "profile", "main", {"v": 2})
    assert response.status_code == 503, response.text
    return bool(response.json()["error"]["code"] == code)


async def test_the_router_starts_without_its_catalog(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dep = await make_deployment(tmp_path, "postgres")
    catalog = dep.databases[-1]
    try:
        await drop_databases([catalog])
        app = create_app(dep.settings())
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://domicile"
            ) as client,
        ):
            assert (await client.get("/healthz")).status_code == 200
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["catalog"]["cause"] == "database_missing"
            assert ready.json()["shards"][BROKEN]["state"] == "up"  # only the catalog is out
            refused = await client.get(
                "/v1/subjects/ann",
                headers={"Authorization": "Bearer dmk_0123456789abcdef_unverifiable"},
            )
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "catalog_unavailable"
            assert refused.headers["retry-after"].isdigit()

            listed = await cli(dep.config, "moves", "list")
            assert listed.exit_code == 1
            assert listed.output.strip().splitlines() == [
                "domicile: the catalog database names a database that does not exist; "
                "create it, then run `domicile shards upgrade`"
            ]
            status = await cli(dep.config, "shards", "status")
            assert status.exit_code == 1
            assert "catalog: the catalog database names a database that does not exist" in (
                status.output
            )

            template = await migrated_template("postgres", CATALOG_HISTORY)
            await _admin(f'CREATE DATABASE "{catalog}" TEMPLATE "{template}"')
            await _until(partial(_ready, client))
            runtime: Runtime = app.state.runtime
            key = (await runtime.api_keys.create("after", {"subjects:write"})).secret
            registered = await client.post(
                "/v1/subjects",
                json={"subject_id": "ann", "jurisdiction": "US"},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert registered.status_code == 201, registered.text
    finally:
        await drop_databases(dep.databases)
    assert "Traceback" not in caplog.text


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path), "--requirepass", "rotated"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            time.sleep(0.05)
        yield port
    finally:
        proc.kill()
        proc.wait()


async def test_redis_refusing_the_credentials_is_said_and_survived(
    tmp_path: Path, redis_with_password: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A credential rotation that the router's config missed: it serves from the catalog,
    says so once, shows it in /readyz and /metrics, and uses Redis again once it may."""
    url = f"redis://:before-rotation@127.0.0.1:{redis_with_password}/0"
    dep = await make_deployment(tmp_path, "sqlite", extra=f'[redis]\nurl = "{url}"\n')
    caplog.set_level(logging.WARNING, logger="domicile.cache")
    async for api in start_api(dep.settings()):
        for i in range(3):
            assert (await api.register(f"ann{i}", "US")).status_code == 201
            assert (await api.put(f"ann{i}", "profile", "main", {"v": i})).status_code == 200
        ready = (await api.client.get("/readyz")).json()
        assert ready["status"] == "ready"
        assert ready["redis"]["cause"] == "auth_failed", ready
        metrics = (await api.client.get("/metrics")).text
        assert 'domicile_redis_up{cause="auth_failed"} 0.0' in metrics
        said = [r for r in caplog.records if "redis refused the credentials" in r.getMessage()]
        assert len(said) == 1, [r.getMessage() for r in caplog.records]

        redis = aioredis.Redis(port=redis_with_password, password="rotated")
        await redis.config_set("requirepass", "before-rotation")
        await redis.aclose()
        await _until(partial(_redis_up, api))
        assert 'domicile_redis_up{cause=""} 1.0' in (await api.client.get("/metrics")).text
        assert any("redis is available again" in r.getMessage() for r in caplog.records)


async def _redis_up(api: Api) -> bool:
    await api.request("GET", "/v1/subjects/ann0")  # a request that touches the cache
    redis = (await api.client.get("/readyz")).json()["redis"]
    return bool(redis["state"] == "up")
