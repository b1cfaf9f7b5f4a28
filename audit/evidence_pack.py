"""The regulator's evidence pack: a folder that can be checked offline.

Layout (docs/auditing.md, "Answering a regulator")::

    evidence.json                  {"evidence": statement, "signed_note": note of its RFC 8785 JSON}
    verifier.key                   the signed-note verifier key
    logs/<log>/checkpoint          the signed checkpoint every figure of that log was computed at
    logs/<log>/entries.jsonl       the leaves [0, size), exact bytes, one per line
    report.html (report.pdf)       the printable rendering
    VERIFY.md, verify_pack.py      how to check it, with and without domicile

The logs are streamed: each page of entries is written and replayed, then dropped, so memory
follows what the shards hold, never the length of the logs. The statement's ``files`` holds the
SHA-256 of every other file but the key (the logs are covered by their checkpoints), so any
change to the pack shows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

import rfc8785

from domicile.audit.events import rfc3339
from domicile.audit.evidence import LogReplay, Volumes, figures
from domicile.audit.evidence_html import render_evidence_html
from domicile.audit.note import Signer
from domicile.audit.service import AuditService
from domicile.audit.store import IssuedCheckpoint

STATEMENT_TYPE = "domicile evidence statement"
STATEMENT, KEY, LOGS = "evidence.json", "verifier.key", "logs"
CHECKPOINT, ENTRIES = "checkpoint", "entries.jsonl"
HTML, PDF, GUIDE, SCRIPT = "report.html", "report.pdf", "VERIFY.md", "verify_pack.py"
#: Entries read from a log at a time.
PAGE = 10_000

Compare = Callable[[str, IssuedCheckpoint, LogReplay], Awaitable[list[str]]]
"""The differences between a log's replay and its shard's current tables (findings)."""
RenderPdf = Callable[[Path, Path], bool]
"""Render an HTML file to a PDF file; False where no renderer is installed."""


@dataclass(frozen=True)
class Written:
    statement: dict[str, Any]
    note: str

    @property
    def compliant(self) -> bool:
        """No subject held where the policy does not permit (findings are reported, not
        judged: a write committed while the pack was read also shows as one)."""
        return not self.statement["violations"]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def statement_text(statement: Mapping[str, Any]) -> str:
    """The signed note's text: the statement's RFC 8785 JSON on one line."""
    return bytes(rfc8785.dumps(dict(statement))).decode() + "\n"


async def _replay_log(
    service: AuditService, name: str, size: int, entries: BinaryIO, replay: LogReplay
) -> None:
    store = service.log(name)
    for start in range(0, size, PAGE):
        for index, leaf in await store.leaves(start, min(size, start + PAGE)):
            replay.feed(index, leaf)
            entries.write(leaf + b"\n")


def _log_folder(out: Path, name: str, checkpoint: IssuedCheckpoint) -> BinaryIO:
    """The log's folder with its checkpoint; returns its entries file, open for writing."""
    folder = out / LOGS / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CHECKPOINT).write_text(checkpoint.note)
    return (folder / ENTRIES).open("wb")


def _sign_and_write(
    out: Path, statement: dict[str, Any], signer: Signer, render_pdf: RenderPdf | None
) -> str:
    """The key, the guides, the report; then the statement naming their digests, signed."""
    (out / KEY).write_text(signer.verifier_key() + "\n")
    shipped = resources.files("domicile.audit").joinpath("pack")
    for name in (GUIDE, SCRIPT):
        (out / name).write_bytes(shipped.joinpath(name).read_bytes())
    (out / HTML).write_text(render_evidence_html(statement))
    files = [HTML, GUIDE, SCRIPT]
    if render_pdf is not None and render_pdf(out / HTML, out / PDF):
        files.append(PDF)
    statement["files"] = {name: sha256_file(out / name) for name in sorted(files)}
    note = signer.sign(statement_text(statement))
    body = {"evidence": statement, "signed_note": note}
    (out / STATEMENT).write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    return note


async def write_pack(
    service: AuditService,
    out: Path,
    jurisdiction: str | None,
    archives: Mapping[str, str],
    compare: Compare,
    render_pdf: RenderPdf | None = None,
) -> Written:
    """Write the pack into ``out`` (an empty or new folder) and return its signed statement."""
    checkpoints = {name: await service.checkpoint(name) for name in service.logs}
    generated_at = datetime.now(UTC)  # after every checkpoint: no entry is later
    volumes = Volumes()
    replays: list[LogReplay] = []
    findings: list[str] = []
    for name, checkpoint in checkpoints.items():
        replay = LogReplay(name, jurisdiction, volumes)
        with _log_folder(out, name, checkpoint) as entries:
            await _replay_log(service, name, checkpoint.size, entries, replay)
        replay.finish(generated_at)
        replays.append(replay)
        findings += await compare(name, checkpoint, replay)
    statement: dict[str, Any] = {
        "type": STATEMENT_TYPE,
        "deployment": service.deployment,
        "generated_at": rfc3339(generated_at),
        "jurisdiction": jurisdiction,
        "verifier_key": service.signer.verifier_key(),
        **figures(replays, volumes),
        "checkpoints": {name: c.note for name, c in checkpoints.items()},
        "archives": dict(archives),
        "findings": findings,
    }
    note = _sign_and_write(out, statement, service.signer, render_pdf)
    return Written(statement, note)
