"""What every command shares: the ``--config`` option, one-line errors on stderr, exit codes
(0 success, 1 a check failed, 2 bad usage or input) and a runtime opened for the command."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from domicile.audit.errors import AuditError
from domicile.router.config import Settings, load_settings
from domicile.router.errors import ConfigError, RouterError, exit_code_of
from domicile.router.runtime import Runtime, open_runtime
from domicile.shards.errors import DomicileError
from domicile.shards.faults import classify

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
    except (DomicileError, AuditError, RouterError) as exc:
        fail(str(exc), exit_code_of(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:
        if click.get_current_context().find_root().params.get("debug"):
            raise
        fault = classify(exc)  # a database failure no shard or catalog code path claimed
        what = f"a database {fault.reason}" if fault else f"internal error ({type(exc).__name__})"
        fail(f"{what}; rerun with --debug for the traceback", 1)
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
