"""Shared by the operations commands: consoles, progress, summaries, the comply runner.

Subjects appear by pseudonym only: this output ends up in terminals' scrollback, CI logs and
tickets. Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Self

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from domicile.audit.events import Actor
from domicile.router.runtime import Runtime
from domicile.shards.comply import Report, Selection, comply, survey
from domicile.shards.move_journal import MoveRow
from domicile.shards.moves import Mover
from domicile.shards.policy import Topology
from domicile.shards.states import MoveState

stdout = Console(highlight=False, markup=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, markup=False)


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """``1 subject``, ``2 subjects``, ``1 entry``, ``0 entries``."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A rich table on a terminal; plain aligned columns otherwise, so that pipes and logs get
    whole values rather than ellipses."""
    cells = [[("-" if c is None else str(c)) for c in row] for row in rows]
    if stdout.is_terminal:
        table = Table(*headers)
        for row in cells:
            table.add_row(*row)
        stdout.print(table)
        return
    widths = [max(len(x) for x in column) for column in zip(headers, *cells, strict=True)]
    for row in (list(headers), *cells):
        stdout.print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def mover_for(runtime: Runtime, purpose: str) -> Mover:
    return Mover(
        runtime.settings.topology,
        runtime.registry,
        runtime.directory,
        runtime.move_journal,
        runtime.pseudonyms,
        actor=Actor(key_id="cli", purpose=purpose),
    )


def short(pseudonym: str) -> str:
    return pseudonym[:16]


class LiveBar:
    """A rich progress bar on stderr, with elapsed time and ETA after the given columns, shown
    while the ``with`` block runs."""

    def __init__(self, *columns: ProgressColumn) -> None:
        self._bar = Progress(
            *columns,
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=stderr,
        )
        self._started = time.monotonic()

    def __enter__(self) -> Self:
        self._bar.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._bar.stop()


class BarProgress(LiveBar):
    """``comply``'s progress bar: subjects moved of those misplaced, records/s, ETA."""

    def __init__(self, label: str) -> None:
        super().__init__(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("subjects · {task.fields[rate]}"),
        )
        self._label = label
        self._task: TaskID | None = None
        self._records = 0

    def started(self, total: int) -> None:
        self._started = time.monotonic()
        self._task = self._bar.add_task(self._label, total=total, rate="- records/s")

    def advanced(self, subjects: int, records: int) -> None:
        assert self._task is not None
        self._records += records
        rate = self._records / max(time.monotonic() - self._started, 1e-6)
        self._bar.update(self._task, advance=subjects, rate=f"{rate:,.0f} records/s")


def stuck_line(topology: Topology, jurisdiction: str, shard: str, n: int) -> str:
    why = (
        "no permitted shard takes them"
        if shard in topology.shards
        else "the shard is no longer in the configuration"
    )
    return f"cannot place {counted(n, jurisdiction + ' subject')} of {shard}: {why}"


def print_survey(
    pairs: dict[tuple[str, str, str | None], int], topology: Topology, selection: Selection
) -> None:
    movable = {k: n for k, n in pairs.items() if k[2] is not None}
    stuck = {k: n for k, n in pairs.items() if k[2] is None}
    # A drained shard's subjects are moved off it, permitted where they are or not.
    what = "misplaced" if selection.drain is None else f"to move off {selection.drain}"
    if not pairs:
        stdout.print(f"nothing {what}")
        return
    if movable:
        stdout.print("would move:")
        print_table(
            ("jurisdiction", "from shard", "to shard", "subjects"),
            ((*pair, n) for pair, n in sorted(movable.items(), key=lambda kv: str(kv[0]))),
        )
    for (j, source, _), n in sorted(stuck.items()):
        stdout.print(stuck_line(topology, j, source, n))
    stdout.print(f"{what}: {sum(pairs.values())}")


def print_report(report: Report, elapsed: float, topology: Topology) -> None:
    moved, records = sum(report.moved.values()), sum(report.records.values())
    rate = f"{moved / elapsed:,.1f} subjects/s, {records / elapsed:,.0f} records/s"
    done = f"moved {counted(moved, 'subject')} ({counted(records, 'record')})"
    stdout.print(f"{done} in {elapsed:.1f} s: {rate}")
    if report.moved:
        print_table(
            ("jurisdiction", "from shard", "to shard", "subjects", "records"),
            (
                (*pair, n, report.records[pair])
                for pair, n in sorted(report.moved.items(), key=lambda kv: str(kv[0]))
            ),
        )
    if report.pauses:
        ms = sorted(p * 1000 for p in report.pauses)
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        stdout.print(
            f"write pause per subject: median {statistics.median(ms):.0f} ms, "
            f"p99 {p99:.0f} ms, max {ms[-1]:.0f} ms"
        )
    for m in report.failed:
        stdout.print(f"not moved: {short(m.pseudonym)} ({m.state}, move {m.id}): {m.error}")
    for m in report.unfinished:
        stdout.print(f"unfinished: move {m.id} of {short(m.pseudonym)} at {m.state}: {m.error}")
    for (j, shard), n in sorted(report.unplaceable.items()):
        stdout.print(stuck_line(topology, j, shard, n))
    stdout.print(f"misplaced remaining: {report.remaining}")


async def run_comply(
    runtime: Runtime,
    selection: Selection,
    *,
    dry_run: bool,
    parallel: int,
    batch_size: int,
    purpose: str,
    label: str,
) -> int:
    """``comply`` and ``shards drain``: exit 0 only when nothing misplaced remains."""
    topology = runtime.settings.topology
    if dry_run:
        pairs = await survey(runtime.directory, topology, selection)
        print_survey(pairs, topology, selection)
        return 1 if pairs else 0
    mover = mover_for(runtime, purpose)
    started = time.monotonic()
    with BarProgress(label) as progress:
        report = await comply(
            mover,
            selection,
            parallel=parallel,
            batch_size=batch_size,
            progress=progress,
            reason=label,
        )
    print_report(report, time.monotonic() - started, topology)
    return 0 if report.remaining == 0 else 1


def comply_options(func: click.decorators.FC) -> click.decorators.FC:
    for option in (
        click.option("--purpose", help="the stated reason, recorded in every audit entry"),
        click.option(
            "--batch-size",
            type=click.IntRange(1, 10_000),
            default=1000,
            show_default=True,
            help="subjects copied together (then cut over 50 at a time, each 50 sharing one "
            "write pause)",
        ),
        click.option(
            "--parallel",
            type=click.IntRange(1, 64),
            default=2,
            show_default=True,
            help="batches in flight (their copies overlap; their write pauses never do)",
        ),
        click.option("--dry-run", is_flag=True, help="list what would move; change nothing"),
    ):
        func = option(func)
    return func


def report_moves(moves: list[MoveRow]) -> int:
    """One line per move; 0 when all are done."""
    for m in moves:
        where = f"{short(m.pseudonym)} {m.from_shard} -> {m.to_shard}"
        if m.state == MoveState.DONE:
            stdout.print(
                f"moved {where}: {counted(m.records or 0, 'record')} verified "
                f"(digest {m.digest}), move {m.id}"
            )
        else:
            stdout.print(f"move {m.id} of {where}: {m.state}" + (f": {m.error}" if m.error else ""))
    return 0 if all(m.state == MoveState.DONE for m in moves) else 1
