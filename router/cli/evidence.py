"""``domicile audit evidence`` (the regulator's pack) and ``domicile audit verify --evidence``
(checking one offline: no server, no database)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import click

from domicile.audit.errors import EvidenceInvalid
from domicile.audit.evidence_check import check_pack
from domicile.audit.evidence_pack import write_pack
from domicile.audit.note import Verifier
from domicile.router.cli.common import config_option, fail, run, settings_from, with_runtime
from domicile.router.config import Settings
from domicile.router.runtime import Runtime
from domicile.shards.errors import DomicileError
from domicile.shards.evidence_tables import table_comparison
from domicile.shards.validation import validate_jurisdiction

#: Debian's package names the browser ``chromium``; others ship ``chromium-browser``.
CHROMIUM = ("chromium", "chromium-browser")


def render_pdf(html: Path, pdf: Path) -> bool:
    """Print ``html`` to ``pdf`` with headless Chromium, where it is installed."""
    browser = next((found for name in CHROMIUM if (found := shutil.which(name))), None)
    if browser is None:
        return False
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={profile}",
                "--no-pdf-header-footer",
                f"--print-to-pdf={pdf}",
                html.resolve().as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
    return done.returncode == 0 and pdf.is_file()


def archive_locations(settings: Settings) -> dict[str, str]:
    """Where each log is archived: its region's bucket, or the local folder."""
    archive = settings.archive
    located = {}
    for name, spec in settings.topology.shards.items():
        bucket = archive.buckets.get(spec.region)
        if bucket is not None:
            located[name] = f"s3://{bucket}/{settings.deployment}/{name}"
        else:
            located[name] = str(archive.local_dir / name)
    return located


@click.command("evidence")
@config_option
@click.option("--jurisdiction", help="only this jurisdiction (ISO 3166-1 alpha-2)")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="the folder to write (new or empty)",
)
def evidence_command(config: Path | None, jurisdiction: str | None, out: Path) -> None:
    """The regulator's evidence pack: a signed statement whose every figure is recomputed from
    the signed logs, the logs themselves, the verifier key, a printable report and how to check
    it. Exits 0 when compliant, 1 when it records violations."""
    if jurisdiction is not None:
        try:
            validate_jurisdiction(jurisdiction)
        except DomicileError as exc:
            fail(f"--jurisdiction: {exc}")
    if out.exists() and any(out.iterdir()):
        fail(f"--out: {out} is not empty")
    settings = settings_from(config)

    async def work(runtime: Runtime) -> int:
        compare = table_comparison(runtime.registry, settings.topology)
        written = await write_pack(
            runtime.audit, out, jurisdiction, archive_locations(settings), compare, render_pdf
        )
        statement = written.statement
        click.echo(
            f"evidence written to {out}: {len(statement['violations'])} violations, "
            f"{len(statement['findings'])} findings, compliant since "
            f"{statement['compliant_since'] or 'never (not compliant now)'}"
        )
        for finding in statement["findings"]:
            click.echo(f"domicile: finding: {finding}", err=True)
        return 0 if written.compliant else 1

    run(with_runtime(settings, work))


def verify_evidence(folder: Path, key: Verifier | None) -> None:
    """``audit verify --evidence``: exits 0, or 1 naming the first thing that does not hold."""
    if not folder.is_dir():
        fail(f"--evidence: {folder} is not a folder", 1)
    try:
        checked = check_pack(folder, key)
    except EvidenceInvalid as exc:
        fail(f"evidence does not hold: {exc}", 1)
    statement = checked.statement
    click.echo(
        f"{folder}: ok, {len(statement['checkpoints'])} logs, {checked.entries} entries, "
        f"every figure recomputed; compliant since {statement['compliant_since'] or 'never'}"
    )
