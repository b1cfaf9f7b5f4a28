"""``domicile audit …``: verifier key, verification, residency log, report, archiving."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from domicile.audit.archive import LocalStore, S3Store, s3_client
from domicile.audit.errors import AuditError, NoteError, SourceError, VerificationFailed
from domicile.audit.events import SYSTEM, decode_leaf
from domicile.audit.note import Signer, Verifier
from domicile.audit.report import sign_report
from domicile.audit.report_html import render_html
from domicile.audit.rotation import Rotation
from domicile.audit.service import key_name
from domicile.audit.sources import ArchiveSource, DatabaseSource, HttpSource
from domicile.audit.store import LogStore
from domicile.audit.verify import LogSource, WitnessState, describe, verify_log
from domicile.router.audit_setup import begin_rotation, finish_rotation, load_or_create_signer
from domicile.router.cli.common import config_option, fail, run, settings_from, with_runtime
from domicile.router.cli.evidence import evidence_command, verify_evidence
from domicile.router.config import Settings
from domicile.router.runtime import Runtime
from domicile.shards.errors import DomicileError
from domicile.shards.log_store import ShardLogStore
from domicile.shards.policy import Topology
from domicile.shards.registry import open_registry
from domicile.shards.residency import build_report
from domicile.shards.validation import validate_jurisdiction, validate_subject_id

FOLLOW_EVERY = 1.0


@click.group()
def audit() -> None:
    """Residency audit: keys, verification, log, report."""


audit.add_command(evidence_command)


@audit.group("key", invoke_without_command=True)
@config_option
@click.pass_context
def key(ctx: click.Context, config: Path | None) -> None:
    """Print the current verifier key (it signs reports and, from its rotation on, every
    checkpoint); `rotate` replaces the signing key."""
    if ctx.invoked_subcommand is None:
        settings = settings_from(config)
        signer = load_or_create_signer(settings.signing_key_path, key_name(settings.deployment))
        click.echo(signer.verifier_key())


@key.command("rotate")
@config_option
def rotate(config: Path | None) -> None:
    """A new signing key: a rotation entry, signed by the old key and the new, is appended to
    every log, and checkpoints from it on are signed with the new key. The old key file is
    replaced once every log holds the rotation; until then, run this again. The new verifier
    key is the last line."""
    settings = settings_from(config)
    path = settings.signing_key_path
    old, new = begin_rotation(path, key_name(settings.deployment))
    rotation = Rotation.sign(old, new, datetime.now(UTC))

    async def work(runtime: Runtime) -> int:
        missing = 0
        for name in runtime.audit.logs:
            try:
                size = await runtime.audit.rotate(name, rotation, SYSTEM)
            except (DomicileError, AuditError) as exc:
                missing += 1
                click.echo(f"domicile: {name}: not rotated yet: {exc}", err=True)
                continue
            click.echo(f"{name}: rotated; checkpoint of size {size} signed with the new key")
        if missing:
            click.echo(
                f"domicile: {missing} log(s) lack the rotation; the old key stays until every "
                "log has it: run `domicile audit key rotate` again",
                err=True,
            )
            return 1
        finish_rotation(path)
        click.echo(f"old key: {old.verifier_key()}")
        click.echo(new.verifier_key())
        return 0

    run(with_runtime(settings, work))


# -- verify ----------------------------------------------------------------------------------------


def _default_state() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "domicile" / "witness.json"


def _parse_key(value: str) -> Verifier:
    """A verifier key string, or a file holding one."""
    text = value
    if "+" not in value or Path(value).is_file():
        try:
            text = Path(value).read_text().strip()
        except OSError as exc:
            fail(f"--key: cannot read {value}: {exc.strerror}")
    try:
        return Verifier.parse(text)
    except NoteError as exc:
        fail(f"--key: {exc}")


def _archive_source(location: str, endpoint_url: str | None) -> ArchiveSource:
    if location.startswith("s3://"):
        bucket, _, prefix = location[5:].partition("/")
        if not bucket:
            fail("--archive: an S3 location is s3://BUCKET[/PREFIX]")
        return ArchiveSource(S3Store(s3_client(endpoint_url), bucket, prefix))
    path = Path(location)
    if not path.is_dir():
        fail(f"--archive: {location} is not a folder")
    return ArchiveSource(LocalStore(path))


def _own_verifier(settings: Settings) -> Verifier:
    """The deployment's own key, for an operator verifying with --config and no --key."""
    try:
        pem = settings.signing_key_path.read_bytes()
    except OSError:
        fail("--key is required: this deployment has no signing key yet")
    return Signer.from_pem(key_name(settings.deployment), pem).verifier()


class _Bars:
    """One progress bar per log, on stderr, only when it is a terminal."""

    def __init__(self) -> None:
        console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self.tasks: dict[str, TaskID] = {}

    def update(self, log: str, done: int, total: int) -> None:
        if log not in self.tasks:
            self.tasks[log] = self.progress.add_task(f"verifying {log}", total=total)
        self.progress.update(self.tasks[log], completed=done, total=total)


async def _served_key(source: HttpSource) -> Verifier:
    """Trust on first use, and say so."""
    verifier = await source.verifier()
    click.echo(
        f"domicile: warning: using the key served by {source.location} ({verifier.vkey}); "
        "pass --key with one obtained independently",
        err=True,
    )
    return verifier


async def _verify(
    source: LogSource, verifier: Verifier, only: tuple[str, ...], state: Path | None
) -> int:
    names = await source.logs()
    for name in only:
        if name not in names:
            fail(f"--log: {source.location} has no log {name!r} (logs: {', '.join(names)})")
    witness = WitnessState(state)
    failed = 0
    bars = _Bars()
    with bars.progress:
        for name in only or names:
            try:
                result = await verify_log(source, name, verifier, witness, bars.update)
            except VerificationFailed as exc:
                failed += 1
                click.echo(f"domicile: verification failed: {exc}", err=True)
                continue
            click.echo(describe(result))
    try:
        witness.save()
    except OSError as exc:
        click.echo(f"domicile: warning: the witness state was not saved: {exc}", err=True)
    return 1 if failed else 0


@audit.command("verify")
@config_option
@click.option("--log", "logs", multiple=True, help="only this log (repeatable); default all")
@click.option(
    "--key",
    "key_arg",
    help="verifier key string, or a file holding it: the first key, or any later one of the "
    "chain of rotations",
)
@click.option("--url", help="verify over the HTTP API of this server")
@click.option("--api-key", envvar="DOMICILE_API_KEY", help="audit:read key for --url")
@click.option("--archive", help="verify an archive: a folder, or s3://BUCKET/PREFIX")
@click.option("--endpoint-url", help="S3 endpoint for an s3:// archive (default: AWS)")
@click.option(
    "--state",
    type=click.Path(path_type=Path, dir_okay=False),
    help="witness state file (default: $XDG_STATE_HOME/domicile/witness.json)",
)
@click.option("--no-state", is_flag=True, help="neither read nor update the witness state")
@click.option(
    "--evidence",
    type=click.Path(path_type=Path),
    help="check an evidence pack (a folder from `audit evidence`) offline",
)
def verify(
    config: Path | None,
    logs: tuple[str, ...],
    key_arg: str | None,
    url: str | None,
    api_key: str | None,
    archive: str | None,
    endpoint_url: str | None,
    state: Path | None,
    no_state: bool,
    evidence: Path | None,
) -> None:
    """Verify logs: every entry against its checkpoints, their signatures, and consistency with
    the checkpoints verified before. Reads the deployment's databases (--config), a server
    (--url) or an archive (--archive); needs none of the server's secrets. With --evidence,
    checks an evidence pack instead (its own verifier.key unless --key)."""
    if evidence is not None:
        if url or archive or config or logs:
            fail("--evidence checks a pack on its own: not with --config, --url, --archive, --log")
        verify_evidence(evidence, _parse_key(key_arg) if key_arg else None)
        return
    if url and archive:
        fail("--url and --archive are alternative sources: give one")
    if (url or archive) and config:
        fail("--config names the deployment's databases: not with --url or --archive")
    verifier = _parse_key(key_arg) if key_arg else None
    if archive and verifier is None:
        fail("--archive needs --key: an archive holds nothing to trust a key by")
    witness_path = None if no_state else (state or _default_state())

    async def go() -> int:
        try:
            if url:
                server = HttpSource(url, api_key)
                key = verifier or await _served_key(server)
                return await _verify(server, key, logs, witness_path)
            if archive:
                assert verifier is not None  # checked above
                archived = _archive_source(archive, endpoint_url)
                return await _verify(archived, verifier, logs, witness_path)
            settings = settings_from(config)
            async with open_registry(settings.topology) as registry:
                shard_logs = {shard.name: ShardLogStore(shard) for shard in registry.all()}
                source = DatabaseSource(shard_logs, str(config or "the embedded default"))
                return await _verify(
                    source, verifier or _own_verifier(settings), logs, witness_path
                )
        except SourceError as exc:
            fail(str(exc))

    run(go())


# -- log -------------------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _parse_since(value: str) -> datetime:
    """RFC 3339 / ISO 8601 (a date, or a date and time; UTC if no offset), or a duration ago
    such as 30m, 12h, 7d."""
    match = _DURATION.fullmatch(value)
    if match:
        return datetime.now(UTC) - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"--since: {value!r} is neither a time (2026-05-01T12:00:00Z) nor a duration (12h)")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


Line = tuple[datetime, str, int, dict[str, Any]]


#: The longest event name (``subject.registered``): the columns after it line up.
EVENT_WIDTH = 18


def _line(event: dict[str, Any], topology: Topology) -> str:
    shard_width = max(map(len, topology.shards))
    region_width = max(map(len, topology.regions))
    columns = [
        event.get("time", "-"),
        f"{event.get('event', '-'):<{EVENT_WIDTH}}",
        f"{event.get('jurisdiction', '-'):<2}",
        f"{event.get('shard', '-'):<{shard_width}}",
        f"{event.get('region', '-'):<{region_width}}",
        event.get("subject", "-"),
    ]
    return "  ".join(str(c) for c in columns)


async def _log_lines(
    shard_log: LogStore, start: int, end: int, subject: str | None
) -> AsyncIterator[Line]:
    while start < end:
        if subject is not None:
            page = [e for e in await shard_log.subject_entries(subject, end) if e.index >= start]
            start = end
        else:
            page = await shard_log.entries(start, min(end, start + 1000))
            start += 1000
        for entry in page:
            event = dict(decode_leaf(entry.leaf))
            yield datetime.fromisoformat(event["time"]), shard_log.name, entry.index, event


async def _merged(streams: list[AsyncIterator[Line]]) -> AsyncIterator[Line]:
    """Merge per-log streams (each in index order) by time."""
    heads: dict[int, Line] = {}
    for i, stream in enumerate(streams):
        first = await anext(stream, None)
        if first is not None:
            heads[i] = first
    while heads:
        i = min(heads, key=lambda k: heads[k][:3])
        yield heads[i]
        following = await anext(streams[i], None)
        if following is None:
            del heads[i]
        else:
            heads[i] = following


@audit.command("log")
@config_option
@click.option("--log", "logs", multiple=True, help="only this log (repeatable); default all")
@click.option("--subject", help="only entries about this subject id (matched by pseudonym)")
@click.option("--since", help="only entries from this time (2026-05-01, …T12:00:00Z) or 12h ago")
@click.option("--follow", "-f", is_flag=True, help="keep printing new entries as they come")
def log_command(
    config: Path | None,
    logs: tuple[str, ...],
    subject: str | None,
    since: str | None,
    follow: bool,
) -> None:
    """Read the residency log: one line per entry (time, event, jurisdiction, shard, region,
    subject pseudonym), newest last."""
    settings = settings_from(config)
    for name in logs:
        if name not in settings.topology.shards:
            fail(f"--log: no log {name!r} (logs: {', '.join(settings.topology.shards)})")
    if subject is not None:
        try:
            validate_subject_id(subject)
        except DomicileError as exc:
            fail(f"--subject: {exc}")
    after = _parse_since(since) if since else None

    async def work(runtime: Runtime) -> int:
        chosen = [runtime.audit.log(name) for name in logs or runtime.audit.logs]
        pseudonym = runtime.pseudonyms.subject(subject) if subject else None
        positions = dict.fromkeys((shard_log.name for shard_log in chosen), 0)
        while True:
            streams = []
            for shard_log in chosen:
                # Entries committed but not yet integrated would otherwise be missing.
                size = await shard_log.integrate()
                streams.append(_log_lines(shard_log, positions[shard_log.name], size, pseudonym))
                positions[shard_log.name] = size
            async for moment, _, _, event in _merged(streams):
                if after is None or moment >= after:
                    click.echo(_line(event, settings.topology))
            if not follow:
                return 0
            await asyncio.sleep(FOLLOW_EVERY)

    run(with_runtime(settings, work))


# -- report and archive ----------------------------------------------------------------------------


@audit.command("report")
@config_option
@click.option("--jurisdiction", help="only this jurisdiction (ISO 3166-1 alpha-2)")
@click.option(
    "--format", "fmt", type=click.Choice(["json", "html"]), default="json", show_default=True
)
def report(config: Path | None, jurisdiction: str | None, fmt: str) -> None:
    """The residency report: signed JSON (the report and its signed note) or HTML. Exits 1 when
    a shard could not be read (the report is then incomplete)."""
    if jurisdiction is not None:
        try:
            validate_jurisdiction(jurisdiction)
        except DomicileError as exc:
            fail(f"--jurisdiction: {exc}")

    async def work(runtime: Runtime) -> int:
        built = await build_report(runtime.audit, runtime.registry, jurisdiction)
        note = sign_report(built, runtime.audit.signer)
        if fmt == "html":
            click.echo(render_html(built, note), nl=False)
        else:
            body = {"report": built, "signed_note": note}
            click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
        return 1 if built["summary"]["shards_unavailable"] else 0

    run(with_runtime(settings_from(config), work))


@audit.command("archive")
@config_option
@click.option("--log", "logs", multiple=True, help="only this log (repeatable); default all")
def archive_command(config: Path | None, logs: tuple[str, ...]) -> None:
    """Copy every closed range of entries, with its checkpoint, to the archive now (a server
    also does this in the background)."""

    async def work(runtime: Runtime) -> int:
        archiver = runtime.audit.archiver
        if archiver is None:
            fail("no archive is configured")
        failed = 0
        for name in logs or archiver.targets:
            if name not in archiver.targets:
                fail(f"--log: no archived log {name!r}")
            target = archiver.targets[name]
            try:
                done = await archiver.archive(name)
            except Exception as exc:  # reported per log; the database copy stays authoritative
                failed += 1
                click.echo(f"domicile: {name}: archiving failed: {exc}", err=True)
                continue
            click.echo(f"{name}: {done} entries archived in {target.store.location}")
        return 1 if failed else 0

    run(with_runtime(settings_from(config), work))
