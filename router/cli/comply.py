"""SRE operations: ``move`` (one subject, online) and ``comply`` (everything the policy no longer
permits where it is)."""

from __future__ import annotations

from pathlib import Path

import click

from domicile.router.cli.common import config_option, fail, run, settings_from, with_runtime
from domicile.router.cli.console import comply_options, mover_for, report_moves, run_comply, stdout
from domicile.router.runtime import Runtime
from domicile.shards.comply import Selection
from domicile.shards.errors import AlreadyPlaced, MoveInProgress, MoveRefused, SubjectNotFound
from domicile.shards.policy import is_jurisdiction


@click.command("comply")
@config_option
@click.option("--jurisdiction", help="only subjects of this jurisdiction (e.g. RU)")
@comply_options
def comply_command(
    config: Path | None,
    jurisdiction: str | None,
    dry_run: bool,
    parallel: int,
    batch_size: int,
    purpose: str | None,
) -> None:
    """Move every subject the current policy no longer permits where it is."""
    if jurisdiction is not None and not is_jurisdiction(jurisdiction):
        fail(f"--jurisdiction: {jurisdiction!r} is not an ISO 3166-1 alpha-2 code (upper case)")

    async def work(runtime: Runtime) -> int:
        return await run_comply(
            runtime,
            Selection(jurisdiction=jurisdiction),
            dry_run=dry_run,
            parallel=parallel,
            batch_size=batch_size,
            purpose=purpose or "comply with the residency policy",
            label="comply",
        )

    run(with_runtime(settings_from(config), work))


@click.command("move")
@config_option
@click.argument("subject_id")
@click.option("--to", "target", required=True, help="the shard to move the subject to")
@click.option("--purpose", help="the stated reason, recorded in the audit entries")
def move_command(config: Path | None, subject_id: str, target: str, purpose: str | None) -> None:
    """Move one subject to another shard, online and verified."""

    async def work(runtime: Runtime) -> int:
        mover = mover_for(runtime, purpose or "move")
        try:
            moved = await mover.move_subject(subject_id, target)
        except (MoveRefused, SubjectNotFound) as exc:
            click.echo(f"domicile: {exc}", err=True)
            return 2
        except AlreadyPlaced as exc:
            stdout.print(str(exc))
            return 0
        except MoveInProgress as exc:
            click.echo(f"domicile: {exc}", err=True)
            return 1
        return report_moves([moved])

    run(with_runtime(settings_from(config), work))
