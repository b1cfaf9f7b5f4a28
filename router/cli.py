"""The ``domicile`` command line. Errors are one line on stderr; exit 0 success, 1 a check
failed, 2 bad usage or input."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.table import Table

from router.config import ConfigError, Settings, load_settings
from router.runtime import Runtime, open_runtime
from shards.catalog import SCOPES
from shards.errors import DomicileError

F = TypeVar("F", bound=Callable[..., Any])
console = Console()


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"domicile: {message}", err=True)
    sys.exit(code)


def config_option(func: F) -> F:
    return click.option(
        "--config",
        "config",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="domicile.toml (default: $DOMICILE_CONFIG, else the embedded default)",
    )(func)


def settings_from(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        fail(f"config: {exc}")


def run(coro: Coroutine[Any, Any, int | None]) -> None:
    try:
        code = asyncio.run(coro)
    except DomicileError as exc:
        fail(str(exc), 1)
    except (ValueError, ConfigError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    sys.exit(code or 0)


def with_runtime(
    settings: Settings,
    work: Callable[[Runtime], Coroutine[Any, Any, int | None]],
    *,
    prepare: bool = True,
) -> Coroutine[Any, Any, int | None]:
    async def go() -> int | None:
        async with open_runtime(settings, prepare=prepare) as runtime:
            return await work(runtime)

    return go()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="domicile")
def main() -> None:
    """domicile: geo-partitioned user-data storage that keeps data where the law says."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("domicile.access").setLevel(logging.WARNING)


@main.command()
@config_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--access-log/--no-access-log", default=False, help="log every request")
def serve(config: Path | None, host: str, port: int, access_log: bool) -> None:
    """Run the HTTP API."""
    import uvicorn

    from router.app import create_app

    settings = settings_from(config)
    if access_log:
        logging.getLogger("domicile.access").setLevel(logging.INFO)
    # uvicorn's own access log prints raw paths (subject ids): ours prints route templates.
    uvicorn.run(create_app(settings), host=host, port=port, access_log=False, log_config=None)


@main.group()
def keys() -> None:
    """API keys."""


@keys.command("create")
@config_option
@click.option("--name", required=True, help="who the key is for")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(sorted(SCOPES)),
    help="repeat for several scopes",
)
def keys_create(config: Path | None, name: str, scopes: tuple[str, ...]) -> None:
    """Create an API key; the secret is the last line of output."""

    async def work(runtime: Runtime) -> int:
        new = await runtime.catalog.create_key(name, set(scopes))
        click.echo(f"key id: {new.key_id}")
        click.echo(f"scopes: {' '.join(sorted(scopes))}")
        click.echo(new.secret)
        return 0

    run(with_runtime(settings_from(config), work))


@main.group()
def shards() -> None:
    """Shard status and schema migrations."""


@shards.command("status")
@config_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def shards_status(config: Path | None, fmt: str) -> None:
    """Each shard: region, health, schema revision, counts."""
    from router.api.shards import describe_shard

    async def work(runtime: Runtime) -> int:
        rows = await asyncio.gather(*(describe_shard(runtime, s) for s in runtime.registry.all()))
        if fmt == "json":
            import orjson

            click.echo(orjson.dumps({"shards": list(rows)}, option=orjson.OPT_INDENT_2).decode())
        else:
            table = Table(
                "shard", "region", "country", "health", "revision", "head", "subjects", "records"
            )
            for r in rows:
                table.add_row(
                    *(
                        str("-" if r[k] is None else r[k])
                        for k in (
                            "name",
                            "region",
                            "country",
                            "health",
                            "schema_revision",
                            "head_revision",
                            "subjects",
                            "records",
                        )
                    )
                )
            console.print(table)
        return 0 if all(r["health"] == "up" for r in rows) else 1

    run(with_runtime(settings_from(config), work, prepare=False))


@shards.command("upgrade")
@config_option
@click.argument("revision", default="head")
@click.option("--shard", "only", multiple=True, help="only these shards (repeatable)")
def shards_upgrade(config: Path | None, revision: str, only: tuple[str, ...]) -> None:
    """Apply schema migrations to every shard (or --shard)."""
    from shards.schema_runner import SHARD_HISTORY, migrate, sync_shard

    settings = settings_from(config)
    unknown = set(only) - set(settings.topology.shards)
    if unknown:
        fail(f"unknown shard {sorted(unknown)[0]!r}")

    async def work(runtime: Runtime) -> int:
        failed = 0
        for shard in runtime.registry.all():
            if only and shard.name not in only:
                continue
            try:
                await migrate(shard.engine, SHARD_HISTORY, "upgrade", revision)
                await sync_shard(shard, settings.topology.jurisdictions_for_shard(shard.name))
            except Exception as exc:  # report per shard; the others are unaffected
                failed += 1
                click.echo(f"{shard.name}: failed: {type(exc).__name__}: {exc}".splitlines()[0])
                continue
            click.echo(f"{shard.name}: at {revision}")
        return 1 if failed else 0

    run(with_runtime(settings, work))


def _register_groups() -> None:
    from router import cli_ops
    from router.cli_audit import audit

    main.add_command(audit)
    for command in vars(cli_ops).values():
        if isinstance(command, click.Command):
            main.add_command(command)


_register_groups()

if __name__ == "__main__":
    main()
