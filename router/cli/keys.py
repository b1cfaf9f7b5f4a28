"""``domicile keys``: API keys."""

from __future__ import annotations

from pathlib import Path

import click

from domicile.router.cli.common import config_option, run, settings_from, with_runtime
from domicile.router.runtime import Runtime
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
