"""The ``domicile`` command line: every command group, registered here and only here."""

from __future__ import annotations

import click

from domicile.router.cli.audit import audit
from domicile.router.cli.comply import comply_command, move_command
from domicile.router.cli.config import config_group
from domicile.router.cli.imports import import_command
from domicile.router.cli.keys import keys
from domicile.router.cli.logs import configure
from domicile.router.cli.lookups import lookups
from domicile.router.cli.moves import moves
from domicile.router.cli.serve import serve
from domicile.router.cli.shards import shards

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="domicile")
@click.option("--debug", is_flag=True, help="print the traceback of an unexpected failure")
@click.option(
    "-v", "--verbose", count=True, help="log domicile's info lines (-vv: debug, libraries' info)"
)
@click.option("-q", "--quiet", is_flag=True, help="log errors only")
def main(debug: bool, verbose: int, quiet: bool) -> None:
    """domicile: geo-partitioned user-data storage that keeps data where the law says."""
    configure(-1 if quiet else verbose)


COMMANDS = (
    serve,
    keys,
    config_group,
    shards,
    import_command,
    move_command,
    comply_command,
    moves,
    audit,
    lookups,
)
for command in COMMANDS:
    main.add_command(command)
