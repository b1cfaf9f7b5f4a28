"""The ``domicile`` command line. Errors are one line on stderr; exit 0 success, 1 a check
failed, 2 bad usage or input."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from domicile.router.config import ConfigError, Settings, load_settings
from domicile.router.runtime import Runtime, open_runtime
from domicile.shards.api_keys import SCOPES
from domicile.shards.errors import DomicileError

F = TypeVar("F", bound=Callable[..., Any])


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
    # Our commands report each revision themselves; alembic's per-connection notes are noise.
    logging.getLogger("alembic").setLevel(logging.WARNING)


@main.command()
@config_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--access-log/--no-access-log", default=False, help="log every request")
def serve(config: Path | None, host: str, port: int, access_log: bool) -> None:
    """Run the HTTP API."""
    import uvicorn

    from domicile.router.app import create_app

    settings = settings_from(config)
    if access_log:
        logging.getLogger("domicile.access").setLevel(logging.INFO)
    app = create_app(settings)
    # What is imported and built by now lives as long as the process: frozen, the cyclic
    # collector stops rescanning it on every full collection (a quarter of a read's CPU in
    # bench/RESULTS.md).
    gc.freeze()
    # uvicorn's own access log prints raw paths (subject ids): ours prints route templates.
    uvicorn.run(app, host=host, port=port, access_log=False, log_config=None)


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
        new = await runtime.api_keys.create(name, set(scopes))
        click.echo(f"key id: {new.key_id}")
        click.echo(f"scopes: {' '.join(sorted(scopes))}")
        click.echo(new.secret)
        return 0

    run(with_runtime(settings_from(config), work))


@main.group()
def shards() -> None:
    """Shard status and schema migrations."""


def _register_groups() -> None:
    from domicile.router import cli_ops, cli_shards
    from domicile.router.cli_audit import audit

    main.add_command(audit)
    for command in (cli_shards.status, cli_shards.upgrade, cli_shards.downgrade, cli_shards.drain):
        shards.add_command(command)
    for command in vars(cli_ops).values():
        if isinstance(command, click.Command):
            main.add_command(command)


_register_groups()

if __name__ == "__main__":
    main()
