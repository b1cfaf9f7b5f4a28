"""What ``/metrics`` reads from the databases: each audit log's backlog and archive, read at
each scrape (a few indexed reads per log); moves by state and misplaced subjects, counted in
the background every ``RECOUNT`` seconds (each is a scan of a catalog table). A server that
starts with misplaced subjects says how many, where, once."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from domicile.audit.errors import LogUnavailable
from domicile.router.observability import Metrics
from domicile.router.runtime import Runtime
from domicile.shards.comply import Selection
from domicile.shards.errors import DomicileError

log = logging.getLogger("domicile.policy")

#: How often moves and misplaced subjects are counted.
RECOUNT = 30.0


async def read_logs(runtime: Runtime, metrics: Metrics) -> None:
    """The audit gauges; a log that cannot be read now keeps its last values (``shard_up``
    says why)."""
    archiver = runtime.audit.archiver

    async def one(name: str) -> None:
        try:
            async with asyncio.timeout(2):
                backlog = await runtime.audit.logs[name].backlog()
        except (LogUnavailable, DomicileError, TimeoutError):
            return
        now = datetime.now(UTC)
        metrics.audit_pending.labels(name).set(backlog.pending)
        oldest = backlog.oldest_pending
        metrics.audit_lag.labels(name).set(0 if oldest is None else (now - oldest).total_seconds())
        if backlog.checkpoint_issued is not None:
            age = (now - backlog.checkpoint_issued).total_seconds()
            metrics.checkpoint_age.labels(name).set(age)
        if archiver is not None and name in archiver.targets:
            metrics.count_archive_failures(name, archiver.failures[name])
            if name in archiver.archived:
                metrics.archive_lag.labels(name).set(backlog.size - archiver.archived[name])

    await asyncio.gather(*(one(name) for name in runtime.audit.logs))


async def count_placements(runtime: Runtime, metrics: Metrics) -> None:
    """Moves by state and misplaced subjects, now and every ``RECOUNT`` seconds; the first
    count that finds misplaced subjects is logged."""
    topology, told = runtime.settings.topology, False
    while True:
        try:
            placements = await runtime.directory.placement_counts()
            moves = await runtime.move_journal.count_by_state()
        except DomicileError:  # the catalog is down: /metrics says so, count again later
            await asyncio.sleep(RECOUNT)
            continue
        misplaced = {
            (j, shard): n
            for (j, shard), n in sorted(placements.items())
            if Selection().misplaced(topology, j, shard)
        }
        metrics.misplaced.clear()
        for (jurisdiction, shard), n in misplaced.items():
            metrics.misplaced.labels(jurisdiction, shard).set(n)
        metrics.moves.clear()
        for state, n in moves.items():
            metrics.moves.labels(state).set(n)
        if misplaced and not told:
            told = True
            total = sum(misplaced.values())
            log.warning(
                "%d subject%s placed where the policy does not permit %s (%s): "
                "`domicile comply --dry-run` lists them, `domicile comply` moves them",
                total,
                " is" if total == 1 else "s are",
                "it" if total == 1 else "them",
                ", ".join(f"{n} {j} on {shard}" for (j, shard), n in misplaced.items()),
            )
        await asyncio.sleep(RECOUNT)
