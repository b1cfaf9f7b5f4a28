"""``domicile shards status|upgrade|downgrade|drain``: the state of every shard, schema
migrations across shards, emptying a shard."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import click
import orjson
from sqlalchemy.exc import DBAPIError

from domicile.router.cli.common import config_option, fail, run, settings_from, with_runtime
from domicile.router.cli.console import (
    comply_options,
    counted,
    print_table,
    run_comply,
    stdout,
)
from domicile.router.health import UP, catalog_health, redis_health
from domicile.router.runtime import Runtime
from domicile.shards.comply import Selection, to_move_per_rule
from domicile.shards.errors import DomicileError, InvalidInput
from domicile.shards.schema_runner import (
    CATALOG_HISTORY,
    DOWNGRADE,
    UPGRADE,
    ShardResult,
    Timeouts,
    migrate,
    render_sql,
    resolve_revision,
    run_wave,
)


@click.group()
def shards() -> None:
    """Shard status and schema migrations."""


@shards.command("status")
@config_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def status(config: Path | None, fmt: str) -> None:
    """Each shard: region, health (with the cause when not up), schema revision against head,
    counts, whether it takes new subjects, and its last migration; the catalog's and Redis's
    health. Exit 1 when a shard or the catalog is not up."""
    from domicile.router.api.shards import describe_shard

    async def work(runtime: Runtime) -> int:
        shards = runtime.registry.all()
        catalog, rows = await asyncio.gather(
            catalog_health(runtime.catalog),
            asyncio.gather(*(describe_shard(runtime, s) for s in shards)),
        )
        redis = redis_health(runtime.cache)
        last = await _last_migrations(runtime) if catalog.up else {}
        timed = await _timed_rules(runtime) if catalog.up else []
        for row, shard in zip(rows, shards, strict=True):
            row["accepts_new_subjects"] = shard.spec.accepts_new_subjects
            row["last_migration"] = last.get(shard.name)
        if fmt == "json":
            document = {
                "catalog": catalog.as_json(),
                "redis": None if redis is None else redis.as_json(),
                "shards": rows,
                "timed_rules": timed,
            }
            click.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        else:
            keys = ("name", "region", "country", "health", "schema_revision", "head_revision")
            headers = ("shard", "region", "country", "health", "revision", "head", "subjects")
            print_table(
                (*headers, "records", "new subjects", "last migration"),
                (
                    (
                        *(r[k] for k in keys),
                        r["subjects"],
                        r["records"],
                        "yes" if r["accepts_new_subjects"] else "no (draining)",
                        _migration_cell(r["last_migration"]),
                    )
                    for r in rows
                ),
            )
            for r in rows:
                if r["reason"]:
                    stdout.print(f"{r['name']}: {r['reason']}")
            for rule in timed:
                stdout.print(_timed_line(rule))
            for part, health in (("catalog", catalog), ("redis", redis)):
                if health is not None:
                    stdout.print(f"{part}: {health.reason or health.state}")
        return 0 if catalog.up and all(r["health"] == UP for r in rows) else 1

    run(with_runtime(settings_from(config), work, prepare=False))


async def _timed_rules(runtime: Runtime) -> list[dict[str, object]]:
    """Rules with an effective time: when, what they permit until then, subjects to move."""
    topology = runtime.settings.topology
    if not topology.scheduled_rules:
        return []
    counts = await to_move_per_rule(runtime.directory, topology)
    now = datetime.now(UTC)
    return [
        {
            "rule": rule.key,
            "effective": None if rule.effective is None else rule.effective.isoformat(),
            "in_effect": not rule.scheduled(now),
            "store_in": list(rule.store_in),
            "before": list(rule.before),
            "subjects_to_move": counts.get(rule.key, 0),
        }
        for rule in topology.scheduled_rules
    ]


def _timed_line(rule: dict[str, object]) -> str:
    store_in = ", ".join(rule["store_in"]) or "nowhere"  # type: ignore[arg-type]
    n = rule["subjects_to_move"]
    assert isinstance(n, int)
    left = f"{counted(n, 'subject')} still to move"
    if rule["in_effect"]:
        return f"policy.{rule['rule']}: {store_in}, in effect since {rule['effective']}; {left}"
    before = ", ".join(rule["before"]) or "no other region"  # type: ignore[arg-type]
    return (
        f"policy.{rule['rule']}: {store_in} from {rule['effective']} (until then also "
        f"{before}); {left}"
    )


async def _last_migrations(runtime: Runtime) -> dict[str, dict[str, object]]:
    """The latest journal entry per shard; none when the catalog has no journal yet."""
    try:
        entries = await runtime.migration_journal.entries(limit=1000)
    except (DomicileError, DBAPIError):
        return {}
    last: dict[str, dict[str, object]] = {}
    for e in entries:  # newest first
        last.setdefault(
            e.shard,
            {
                "action": e.action,
                "from_revision": e.from_revision,
                "to_revision": e.to_revision,
                "status": e.status,
                "error": e.error,
                "finished_at": None if e.finished_at is None else e.finished_at.isoformat(),
            },
        )
    return last


def _migration_cell(entry: object) -> str:
    if not isinstance(entry, dict):
        return "-"
    span = f"{entry['from_revision'] or 'base'} -> {entry['to_revision'] or 'base'}"
    error = f": {entry['error']}" if entry["error"] else ""
    return f"{entry['action']} {span} {entry['status']}{error}"


def migration_options(func: click.decorators.FC) -> click.decorators.FC:
    for option in (
        click.option(
            "--statement-timeout",
            type=click.FloatRange(min=0.1),
            default=600.0,
            show_default=True,
            help="PostgreSQL statement_timeout per statement, seconds",
        ),
        click.option(
            "--lock-timeout",
            type=click.FloatRange(min=0.1),
            default=5.0,
            show_default=True,
            help="PostgreSQL lock_timeout, seconds: fail fast rather than queue writes behind DDL",
        ),
        click.option("--sql", "offline", is_flag=True, help="print the SQL instead of running it"),
        click.option(
            "--parallel",
            type=click.IntRange(1, 64),
            default=1,
            show_default=True,
            help="shards migrated at once (a wave)",
        ),
        click.option("--shard", "only", multiple=True, help="only this shard (repeatable)"),
    ):
        func = option(func)
    return func


def _line(result: ShardResult) -> str:
    before, after = result.before or "base", result.after or "base"
    if result.status == "migrated":
        applied = counted(len(result.applied), "revision")
        return f"{result.shard}: {before} -> {after} ({applied} applied)"
    if result.status == "current":
        return f"{result.shard}: already at {after}"
    if result.status == "failed":
        return f"{result.shard}: FAILED at {after}: {result.error}"
    return f"{result.shard}: not started (the wave stopped)"


def _migrate(
    action: str,
    config: Path | None,
    revision: str,
    only: tuple[str, ...],
    parallel: int,
    offline: bool,
    timeouts: Timeouts,
) -> None:
    settings = settings_from(config)
    unknown = set(only) - set(settings.topology.shards)
    if unknown:
        fail(f"--shard: there is no shard {sorted(unknown)[0]!r} in the configuration")
    current, _, wanted = revision.rpartition(":")
    try:
        target = resolve_revision(wanted)
        start = resolve_revision(current) if current else None
    except InvalidInput as exc:
        fail(str(exc))
    if current and not offline:
        fail("FROM:TO revision ranges are for --sql only")

    async def work(runtime: Runtime) -> int:
        shards = [s for s in runtime.registry.all() if not only or s.name in only]
        if offline:
            for shard in shards:
                click.echo(
                    await render_sql(
                        shard, action, target, current=start, known=bool(current), timeouts=timeouts
                    )
                )
            return 0
        await migrate(runtime.catalog.engine, CATALOG_HISTORY, UPGRADE, "head")  # the journal
        results = await run_wave(
            shards,
            runtime.migration_journal,
            action,
            target,
            parallel=parallel,
            timeouts=timeouts,
            topology=runtime.settings.topology,
        )
        for result in results:
            stdout.print(_line(result))
        failed = [r.shard for r in results if r.status == "failed" and r.fault is None]
        skipped = [r.shard for r in results if r.status == "failed" and r.fault is not None]
        if failed:
            click.echo(
                f"domicile: {action} failed on {', '.join(failed)}; the wave stopped there "
                "(fix the cause and run it again to resume)",
                err=True,
            )
        elif skipped:
            click.echo(
                f"domicile: {action} could not reach {', '.join(skipped)}; the other shards "
                "were done (run it again once they are back)",
                err=True,
            )
        return 1 if failed or skipped else 0

    run(with_runtime(settings, work, prepare=False))


@shards.command("upgrade")
@config_option
@click.argument("revision", default="head")
@migration_options
def upgrade(
    config: Path | None,
    revision: str,
    only: tuple[str, ...],
    parallel: int,
    offline: bool,
    lock_timeout: float,
    statement_timeout: float,
) -> None:
    """Apply schema migrations up to REVISION (default head) on every shard (or --shard),
    one revision per transaction, journaled and audited; running it again resumes."""
    timeouts = Timeouts(lock_timeout, statement_timeout)
    _migrate(UPGRADE, config, revision, only, parallel, offline, timeouts)


@shards.command("downgrade")
@config_option
@click.argument("revision")
@migration_options
def downgrade(
    config: Path | None,
    revision: str,
    only: tuple[str, ...],
    parallel: int,
    offline: bool,
    lock_timeout: float,
    statement_timeout: float,
) -> None:
    """Revert schema migrations down to REVISION ("base" removes everything) on every shard
    (or --shard)."""
    timeouts = Timeouts(lock_timeout, statement_timeout)
    _migrate(DOWNGRADE, config, revision, only, parallel, offline, timeouts)


@shards.command("drain")
@config_option
@click.argument("shard")
@comply_options
def drain(
    config: Path | None,
    shard: str,
    dry_run: bool,
    parallel: int,
    batch_size: int,
    purpose: str | None,
) -> None:
    """Move every subject of SHARD to other permitted shards. Set the shard's
    accepts_new_subjects = false in the config first, so no new subject lands there."""
    settings = settings_from(config)
    spec = settings.topology.shards.get(shard)
    if spec is None:
        fail(f"there is no shard {shard!r} in the configuration")
    if spec.accepts_new_subjects:
        fail(
            f"shard {shard} still accepts new subjects: set shards.{shard}.accepts_new_subjects "
            "= false in the config (and restart the routers) before draining it"
        )

    async def work(runtime: Runtime) -> int:
        return await run_comply(
            runtime,
            Selection(drain=shard),
            dry_run=dry_run,
            parallel=parallel,
            batch_size=batch_size,
            purpose=purpose or f"drain shard {shard}",
            label="drain",
        )

    run(with_runtime(settings, work))
