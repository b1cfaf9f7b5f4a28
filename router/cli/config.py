"""``domicile config show|check``: the configuration as it runs, and a file validated."""

from __future__ import annotations

from pathlib import Path

import click
import tomli_w

from domicile.router.cli.common import config_option, fail
from domicile.router.config import Environment, effective_config, load_settings
from domicile.router.errors import ConfigError


@click.group("config")
def config_group() -> None:
    """The configuration: show it, check a file."""


@config_group.command("show")
@config_option
def show(config: Path | None) -> None:
    """The effective configuration as TOML (the embedded default when there is no file),
    every default filled in and url passwords masked."""
    env = Environment()
    try:
        effective = effective_config(config, env)
    except ConfigError as exc:
        fail(f"config: {exc}")
    source = config or env.config
    click.echo(f"# domicile's effective configuration: {source or 'the embedded default'}\n")
    click.echo(tomli_w.dumps(effective), nl=False)


@config_group.command("check")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
def check(file: Path) -> None:
    """Validate FILE as domicile would load it: exit 0, or 2 with the problem on one line."""
    try:
        settings = load_settings(file)
    except ConfigError as exc:
        fail(f"config: {exc}")
    topology = settings.topology
    click.echo(
        f"{file}: valid ({len(topology.regions)} regions, {len(topology.shards)} shards, "
        f"{len(topology.rules)} policy rules)"
    )
