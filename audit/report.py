"""The residency report: for each shard, where it is, what it holds per jurisdiction, the rows the
current policy does not permit there (by pseudonym), and the log checkpoint the counts were read
against. The shards read their sections (``shards.residency``); here the report is assembled
around them, signed as a note (its text is the report's RFC 8785 JSON) and grouped by region for
the HTML rendering."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import rfc8785

from domicile.audit.events import rfc3339
from domicile.audit.note import Signer
from domicile.audit.service import AuditService

REPORT_TYPE = "domicile residency report"


def assemble_report(
    service: AuditService,
    jurisdiction: str | None,
    policy: dict[str, Any],
    shards: list[dict[str, Any]],
) -> dict[str, Any]:
    """The report around its shard sections (``status`` "ok", with ``jurisdictions`` and
    ``violations``, or "unavailable") and the whole policy: rule key -> ``jurisdictions`` it
    governs, ``store_in``, ``law``."""
    return {
        "type": REPORT_TYPE,
        "deployment": service.deployment,
        "generated_at": rfc3339(datetime.now(UTC)),
        "jurisdiction": jurisdiction,
        "verifier_key": service.signer.verifier_key(),
        "policy": policy,
        "shards": shards,
        "summary": {
            "subjects": sum(r["subjects"] for s in shards for r in s.get("jurisdictions", [])),
            "records": sum(r["records"] for s in shards for r in s.get("jurisdictions", [])),
            "violations": sum(len(s.get("violations", [])) for s in shards),
            "shards_unavailable": sum(s["status"] != "ok" for s in shards),
        },
    }


def sign_report(report: dict[str, Any], signer: Signer) -> str:
    """The signed note whose text is the report's canonical JSON on one line."""
    return signer.sign(bytes(rfc8785.dumps(report)).decode() + "\n")


def by_region(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for shard in report["shards"]:
        grouped[shard["region"]].append(shard)
    return dict(grouped)
