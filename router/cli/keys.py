"""``domicile keys``: create, list and revoke API keys."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
import orjson

from domicile.router.cli.common import config_option, run, settings_from, with_runtime
from domicile.router.cli.console import print_table
from domicile.router.runtime import Runtime
from domicile.router.views import key_json
from domicile.shards.api_keys import SCOPES


@click.group()
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


@keys.command("list")
@config_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def keys_list(config: Path | None, fmt: str) -> None:
    """Every API key: id, name, scopes, created, last used, revoked. Never a secret; the last
    use is recorded at most once a minute per router."""

    async def work(runtime: Runtime) -> int:
        found = await runtime.api_keys.all()
        if fmt == "json":
            body = {"keys": [key_json(k) for k in found]}
            click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
        elif not found:
            click.echo("no API keys yet; `domicile keys create` makes one")
        else:
            print_table(
                ("id", "name", "scopes", "created", "last used", "revoked"),
                (
                    (
                        k.key_id,
                        k.name,
                        " ".join(sorted(k.scopes)),
                        _when(k.created_at),
                        _when(k.last_used_at) or "never",
                        _when(k.revoked_at),
                    )
                    for k in found
                ),
            )
        return 0

    run(with_runtime(settings_from(config), work))


@keys.command("revoke")
@config_option
@click.argument("key_id")
def keys_revoke(config: Path | None, key_id: str) -> None:
    """Revoke KEY_ID: every router refuses it (401) at once when they share Redis, otherwise
    within 30 seconds."""

    async def work(runtime: Runtime) -> int:
        key = await runtime.api_keys.revoke(key_id)
        click.echo(f"revoked API key {key.key_id} ({key.name}) at {_when(key.revoked_at)}")
        return 0

    run(with_runtime(settings_from(config), work))


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
