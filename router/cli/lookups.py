"""``domicile lookups``: build a lookup index from existing records, rotate the lookup secret."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import click

from domicile.audit.events import Actor
from domicile.router.cli.common import config_option, fail, run, settings_from, with_runtime
from domicile.router.cli.console import short
from domicile.router.runtime import Runtime
from domicile.router.secrets import load_or_create_key, write_private
from domicile.shards.lookup_backfill import backfill
from domicile.shards.lookup_keys import LookupKeys
from domicile.shards.lookup_rekey import rekey


@click.group()
def lookups() -> None:
    """Lookup keys: find subjects by e-mail, phone or username."""


def _progress(what: str) -> Callable[[str, int], None]:
    def show(shard: str, done: int) -> None:
        click.echo(f"{shard}: {done} {what}", err=True)

    return show


@lookups.command("backfill")
@config_option
@click.option("--kind", required=True, help="the lookup kind to fill (e.g. email)")
@click.option("--collection", required=True, help="the collection whose records hold the value")
@click.option("--field", "field_name", required=True, help="the record field holding it")
@click.option("--dry-run", is_flag=True, help="report what would be set and every conflict")
def lookups_backfill(
    config: Path | None, kind: str, collection: str, field_name: str, dry_run: bool
) -> None:
    """Build a lookup index from a field of existing records. Resumable: a re-run skips what is
    in. Two subjects with one value are reported (by pseudonym), never decided: exit 1."""

    async def work(runtime: Runtime) -> int:
        actor = Actor(key_id="system", purpose="lookups backfill")
        report = await backfill(
            runtime.store,
            kind,
            collection,
            field_name,
            actor,
            dry_run=dry_run,
            progress=_progress("subjects read"),
        )
        for c in report.conflicts:
            holder = "another subject" if c.holder is None else f"subject {short(c.holder)}"
            click.echo(
                f"conflict: subject {short(c.subject)} ({c.shard}) has a {kind} value "
                f"that {holder} holds"
            )
        for pseudonym in report.invalid:
            click.echo(f"invalid: subject {short(pseudonym)} has a {kind} value that does not "
                       "normalise")  # fmt: skip
        for pseudonym in report.skipped:
            click.echo(f"skipped: subject {short(pseudonym)} is being moved; run again")
        verb = "to set" if dry_run else "set"
        click.echo(
            f"{report.subjects} subjects with a {field_name}: {report.set} {verb}, "
            f"{report.unchanged} already set, {len(report.conflicts)} conflicts, "
            f"{len(report.invalid)} invalid, {len(report.skipped)} skipped"
        )
        return 0 if report.complete else 1

    run(with_runtime(settings_from(config), work))


@lookups.command("rekey")
@config_option
@click.option(
    "--new-secret-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="the new secret (hex); default: one generated into <data dir>/lookup.key.new",
)
def lookups_rekey(config: Path | None, new_secret_file: Path | None) -> None:
    """Rotate the lookup secret: every blind value computed again under the new one, then the
    new secret installed as <data dir>/lookup.key. Run it with the routers stopped; resumable."""
    settings = settings_from(config)
    if settings.lookup_secret is not None and new_secret_file is None:
        fail("the lookup secret comes from DOMICILE_LOOKUP_SECRET: give the new one with "
             "--new-secret-file, then set the variable to it")  # fmt: skip
    pending = settings.lookup_key_path.with_name("lookup.key.new")
    source = new_secret_file or pending
    secret = load_or_create_key(source)
    keys = LookupKeys(settings.lookup_kinds, secret)

    async def work(runtime: Runtime) -> int:
        actor = Actor(key_id="system", purpose="lookup secret rotation")
        changed = await rekey(
            runtime.catalog, runtime.registry, keys, actor, _progress("lookup keys read")
        )
        if settings.lookup_secret is None:
            if source != pending:
                pending.unlink(missing_ok=True)
                write_private(pending, secret.hex().encode() + b"\n")
            os.replace(pending, settings.lookup_key_path)
            where = f"{settings.lookup_key_path} now holds the new secret"
        else:
            where = "set DOMICILE_LOOKUP_SECRET to the new secret"
        click.echo(f"re-keyed {changed} lookup keys; {where}: give it to every router")
        return 0

    run(with_runtime(settings, work))
