"""Rules that take effect later, followed by a running server: at each rule's effective time
every shard's residency guard is narrowed to the rules then in effect (on the shard's next
write), and until then the subjects still to move are counted for the metrics and warned about
once a rule is less than ``[comply] warn_within_hours`` away."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from domicile.router.observability import Metrics
from domicile.router.runtime import Runtime
from domicile.shards.comply import to_move_per_rule
from domicile.shards.errors import DomicileError

log = logging.getLogger("domicile.policy")

#: How often the subjects still to move are counted.
RECOUNT = 60.0


async def follow_schedule(runtime: Runtime, metrics: Metrics) -> None:
    topology = runtime.settings.topology
    if not topology.scheduled_rules:
        return
    warned: set[str] = set()
    while True:
        now = datetime.now(UTC)
        try:
            counts = await to_move_per_rule(runtime.directory, topology)
        except DomicileError as exc:  # the catalog is down: count again later
            log.warning("cannot count the subjects scheduled rules still have to move: %s", exc)
            counts = {}
        for rule in topology.scheduled_rules:
            assert rule.effective is not None
            left = (rule.effective - now).total_seconds()
            metrics.rule_seconds_left.labels(rule.key).set(max(0.0, left))
            if rule.key in counts:
                metrics.rule_to_move.labels(rule.key).set(counts[rule.key])
            waiting = counts.get(rule.key, 0)
            close = 0 < left < runtime.settings.warn_within.total_seconds()
            if close and waiting and rule.key not in warned:
                warned.add(rule.key)
                log.warning(
                    "policy.%s takes effect at %s and %d subject%s still to move; run "
                    "`domicile comply` (from then on, a write to one relocates it first)",
                    rule.key,
                    rule.effective.isoformat(),
                    waiting,
                    " is" if waiting == 1 else "s are",
                )
        change = topology.next_change(now)
        wait = RECOUNT if change is None else min(RECOUNT, (change - now).total_seconds())
        await asyncio.sleep(max(wait, 0.0))
        if change is not None and datetime.now(UTC) >= change:
            for shard in runtime.registry.all():
                shard.ready = False  # its guard is synced to the rules now in effect
            log.warning("a scheduled policy rule took effect at %s", change.isoformat())
