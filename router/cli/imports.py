"""``domicile import FILE [--rejects FILE]``: bulk-load an existing user base from JSON Lines.

Progress and the summary go to stderr; lines left out go to the rejects file as JSON Lines
``{line, code, message}``, never with the line's content. Exit 0 when every line is in, 1 when
some were rejected (or a shard or the catalog failed: run it again, it resumes), 2 bad usage.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO, TextIO

import click
import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
)

from domicile.audit.events import Actor
from domicile.router.cli.common import config_option, fail, run, settings_from, with_runtime
from domicile.router.cli.console import LiveBar
from domicile.router.runtime import Runtime
from domicile.shards.errors import DomicileError
from domicile.shards.importer import BATCH_SUBJECTS, Importer, Lines, Rejection, Tally

#: Input read per chunk (in a worker thread: a slow pipe must not stall the event loop).
CHUNK_BYTES = 1 << 20
#: Rejected lines also listed in the summary.
LISTED = 10

#: The summary: whole lines, whatever the terminal's width, for logs and scripts.
summary = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)


class ImportProgress(LiveBar):
    """A bar over the input's bytes (a pulse for a pipe), with subjects, records/s and ETA."""

    def __init__(self, total: int | None) -> None:
        super().__init__(
            TextColumn("[bold]import"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[subjects]:,} subjects · {task.fields[rate]}"),
        )
        self._task: TaskID = self._bar.add_task("import", total=total, subjects=0, rate="-")
        self._subjects = self._records = 0

    def advanced(self, *, consumed: int, subjects: int, records: int) -> None:
        self._subjects += subjects
        self._records += records
        rate = self._records / max(time.monotonic() - self._started, 1e-6)
        self._bar.update(
            self._task,
            advance=consumed,
            subjects=self._subjects,
            rate=f"{rate:,.0f} records/s",
        )


async def numbered_lines(stream: BinaryIO) -> Lines:
    """The input's lines, numbered from 1, a chunk of about ``CHUNK_BYTES`` at a time."""
    number = 0
    while chunk := await asyncio.to_thread(stream.readlines, CHUNK_BYTES):
        yield [(number + i, line) for i, line in enumerate(chunk, start=1)]
        number += len(chunk)


def _size(stream: BinaryIO) -> int | None:
    """The input's size when it is a regular file (a pipe's is unknown)."""
    try:
        info = os.fstat(stream.fileno())
    except OSError:  # a stream without a file (io.UnsupportedOperation)
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


class RejectsFile:
    """Rejected lines: written to the rejects file as they come, the first few kept for the
    summary."""

    def __init__(self, out: TextIO | None) -> None:
        self._out = out
        self.first: list[Rejection] = []

    def __call__(self, rejection: Rejection) -> None:
        if len(self.first) < LISTED:
            self.first.append(rejection)
        if self._out is not None:
            line = {"line": rejection.line, "code": rejection.code, "message": rejection.message}
            self._out.write(orjson.dumps(line).decode() + "\n")


def print_summary(
    tally: Tally, elapsed: float, listed: Sequence[Rejection], rejects: str | None
) -> None:
    rate = tally.records / max(elapsed, 1e-6)
    summary.print(
        f"imported {tally.subjects} subjects ({tally.registered} new) and "
        f"{tally.records} records ({tally.written} written, "
        f"{tally.unchanged} unchanged) in {elapsed:.1f} s: {rate:,.0f} records/s"
    )
    rejected = sum(tally.rejected.values())
    if not rejected:
        return
    codes = ", ".join(f"{n} {code}" for code, n in sorted(tally.rejected.items()))
    where = f" (listed in {rejects})" if rejects else ""
    summary.print(f"rejected {rejected} of {tally.lines} lines: {codes}{where}")
    for r in sorted(listed, key=lambda r: r.line):
        summary.print(f"  line {r.line}: {r.code}: {r.message}")
    if rejected > len(listed):
        summary.print(f"  ... and {rejected - len(listed)} more")


@click.command("import")
@config_option
@click.argument("source", metavar="FILE")
@click.option(
    "--rejects",
    "rejects_path",
    metavar="FILE",
    help="write the lines left out here, as JSON Lines {line, code, message}",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=BATCH_SUBJECTS,
    show_default=True,
    help="subjects per batch (per batch: one catalog reservation, one transaction per shard)",
)
@click.option("--purpose", help="the stated reason, recorded in every audit entry")
def import_command(
    config: Path | None,
    source: str,
    rejects_path: str | None,
    batch_size: int,
    purpose: str | None,
) -> None:
    """Bulk-load subjects and their records from JSON Lines (FILE, or - for stdin)."""
    settings = settings_from(config)
    with ExitStack() as files:
        try:
            stream = sys.stdin.buffer if source == "-" else files.enter_context(open(source, "rb"))
        except OSError as exc:
            fail(f"{source}: {exc.strerror}")
        try:
            out = None if rejects_path is None else files.enter_context(open(rejects_path, "w"))
        except OSError as exc:
            fail(f"--rejects {rejects_path}: {exc.strerror}")
        rejects = RejectsFile(out)

        async def work(runtime: Runtime) -> int:
            importer = Importer(
                runtime.store,
                actor=Actor(key_id="cli", purpose=purpose or "import"),
                max_record_bytes=runtime.settings.max_record_bytes,
                relocator=runtime.store.relocator,
            )
            return await run_import(importer, stream, rejects, batch_size, rejects_path)

        run(with_runtime(settings, work))


async def run_import(
    importer: Importer,
    stream: BinaryIO,
    rejects: RejectsFile,
    batch_size: int,
    rejects_path: str | None,
) -> int:
    """Import ``stream`` under a progress bar, then print the summary (also when a shard or
    the catalog stops the run); the exit code."""
    started = time.monotonic()
    tally = Tally()
    try:
        with ImportProgress(_size(stream)) as progress:
            await importer.run(
                numbered_lines(stream),
                reject=rejects,
                progress=progress,
                batch_subjects=batch_size,
                tally=tally,
            )
    except DomicileError:
        print_summary(tally, time.monotonic() - started, rejects.first, rejects_path)
        raise
    print_summary(tally, time.monotonic() - started, rejects.first, rejects_path)
    return 1 if tally.rejected else 0
