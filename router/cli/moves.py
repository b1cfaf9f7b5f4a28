"""``domicile moves list|resume|cancel``: the move journal."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import click
import orjson

from domicile.router.cli.common import config_option, fail, run, settings_from, with_runtime
from domicile.router.cli.console import mover_for, print_table, report_moves, short, stdout
from domicile.router.runtime import Runtime
from domicile.router.views import move_json
from domicile.shards.comply import batches
from domicile.shards.move_journal import MoveRow
from domicile.shards.moves import BatchOutcome, Mover
from domicile.shards.states import MoveState


@click.group("moves")
def moves() -> None:
    """The move journal: list, resume or cancel moves."""


@moves.command("list")
@config_option
@click.option("--all", "everything", is_flag=True, help="finished moves too")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def moves_list(config: Path | None, everything: bool, limit: int, fmt: str) -> None:
    """Unfinished moves (or, with --all, the latest moves)."""

    async def work(runtime: Runtime) -> int:
        found = await runtime.move_journal.latest(unfinished_only=not everything, limit=limit)
        if fmt == "json":
            body = {"moves": [move_json(m) for m in found]}
            click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
            return 0
        if not found:
            stdout.print("no moves yet" if everything else "no unfinished moves")
            return 0
        print_table(
            ("move", "subject", "jurisdiction", "from", "to", "state", "records", "error"),
            (
                (
                    m.id,
                    short(m.pseudonym),
                    m.jurisdiction,
                    m.from_shard,
                    m.to_shard,
                    m.state,
                    m.records,
                    m.error,
                )
                for m in found
            ),
        )
        return 0

    run(with_runtime(settings_from(config), work))


async def _claim_or_explain(mover: Mover, ids: tuple[str, ...]) -> list[MoveRow]:
    claimed = await mover.claim(ids=ids or None)
    for missing in sorted(set(ids) - {m.id for m in claimed}):
        found = await mover.journal.get(missing)
        why = (
            "no such move"
            if found is None
            else f"already {found.state}"
            if found.finished_at is not None
            else "held by a running process"
        )
        click.echo(f"domicile: move {missing}: {why}", err=True)
    return claimed


@moves.command("resume")
@config_option
@click.argument("move_ids", nargs=-1)
@click.option("--parallel", type=click.IntRange(1, 64), default=4, show_default=True)
def moves_resume(config: Path | None, move_ids: tuple[str, ...], parallel: int) -> None:
    """Finish unfinished moves (all of them, or MOVE_IDS) that no running process holds."""

    async def work(runtime: Runtime) -> int:
        mover = mover_for(runtime, "resume interrupted moves")
        claimed = await _claim_or_explain(mover, move_ids)
        gate = asyncio.Semaphore(parallel)

        async def resume(batch: list[MoveRow]) -> BatchOutcome:
            async with gate:
                return await mover.run(batch)

        outcomes = await asyncio.gather(*(resume(b) for b in batches(claimed, 100)))
        if not claimed:
            stdout.print("no unfinished moves to resume")
        code = report_moves(await _reread(runtime, outcomes))
        return 1 if len(claimed) < len(move_ids) else code

    run(with_runtime(settings_from(config), work))


@moves.command("cancel")
@config_option
@click.argument("move_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="every unfinished move")
def moves_cancel(config: Path | None, move_ids: tuple[str, ...], everything: bool) -> None:
    """Roll back unfinished moves; a move already switched is finished instead."""
    if not move_ids and not everything:
        fail("name the moves to cancel, or pass --all")

    async def work(runtime: Runtime) -> int:
        mover = mover_for(runtime, "cancel moves")
        claimed = await _claim_or_explain(mover, () if everything else move_ids)
        outcomes = [await mover.cancel(b) for b in batches(claimed, 100)]
        final = await _reread(runtime, outcomes)
        for m in final:
            verdict = (
                "rolled back"
                if m.state == MoveState.ROLLED_BACK
                else f"{m.state} (past its switch)"
            )
            stdout.print(f"move {m.id} of {short(m.pseudonym)}: {verdict}")
        cancelled = all(m.state == MoveState.ROLLED_BACK for m in final)
        return 0 if cancelled and len(claimed) >= len(move_ids) else 1

    run(with_runtime(settings_from(config), work))


async def _reread(runtime: Runtime, outcomes: Sequence[BatchOutcome]) -> list[MoveRow]:
    ids = [m.id for o in outcomes for m in (*o.done, *o.failed, *o.unfinished)]
    return await runtime.move_journal.latest(unfinished_only=False, limit=len(ids) or 1, ids=ids)
