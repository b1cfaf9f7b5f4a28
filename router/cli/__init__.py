"""The ``domicile`` command line: every command group, registered here and only here."""

from __future__ import annotations

import logging

import click

from domicile.router.cli.audit import audit
from domicile.router.cli.comply import comply_command, move_command
from domicile.router.cli.imports import import_command
from domicile.router.cli.keys import keys
from domicile.router.cli.lookups import lookups
from domicile.router.cli.moves import moves
from domicile.router.cli.serve import serve
from domicile.router.cli.shards import shards

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="domicile")
@click.option("--debug", is_flag=True, help="print the traceback of an unexpected failure")
def main(debug: bool) -> None:
    """domicile: geo-partitioned user-data storage that keeps data where the law says."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("domicile.access").setLevel(logging.WARNING)
    # Our commands report each revision themselves; alembic's per-connection notes are noise.
    logging.getLogger("alembic").setLevel(logging.WARNING)


for command in (
    serve,
    keys,
    shards,
    import_command,
    move_command,
    comply_command,
    moves,
    audit,
    lookups,
):
    main.add_command(command)
