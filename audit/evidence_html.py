"""The evidence statement for a person, on screen and on paper: the verdict, the whole policy in
force and its history, each location with its address and legal entity, the compliance
timeline, the yearly volumes, the violations, and the checkpoints and verifier key printed whole
(they wrap), so that a paper copy can be checked against the logs."""

from __future__ import annotations

from html import escape
from typing import Any

#: Violations listed; past it the page says how many more the signed JSON lists.
VIOLATIONS_SHOWN = 100

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 60em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #999; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
pre, .wrap { white-space: pre-wrap; overflow-wrap: anywhere; font-family: monospace; }
.bad { color: #a00; font-weight: bold; } .good { color: #060; font-weight: bold; }
@page { size: A4; margin: 15mm; }
@media print { body { margin: 0; } h2 { break-after: avoid; } tr { break-inside: avoid; } }
"""


def _text(value: Any) -> str:
    return "—" if value is None or value == "" else escape(str(value))


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_text(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _verdict(statement: dict[str, Any]) -> str:
    who = escape(statement["jurisdiction"] or "every jurisdiction")
    if statement["violations"]:
        n = len(statement["violations"])
        said = f"Not compliant: {n} subject(s) of {who} held where the policy does not permit."
        return f'<p class="bad">{said}</p>'
    since = statement["compliant_since"]
    if since is None:
        return f'<p class="bad">Compliance of {who} cannot be established from the logs.</p>'
    said = f"Every subject of {who} has been held where the policy permits since {escape(since)}."
    return f'<p class="good">{said}</p>'


def _rules(policy: dict[str, Any] | None) -> list[list[Any]]:
    if policy is None:
        return []
    rows = []
    for key, rule in policy["rules"].items():
        when = rule.get("effective")
        until = (
            f"from {when}; until then also {', '.join(rule['before']) or 'none'}" if when else ""
        )
        rows.append([key, ", ".join(rule["store_in"]) or "none", rule.get("law"), until])
    return rows


def render_evidence_html(statement: dict[str, Any]) -> str:
    policy = statement["policy"]
    locations = [
        [
            loc["shard"],
            loc["region"],
            loc["country"],
            loc["provider"],
            loc["address"],
            loc["legal_entity"],
            loc["permitted"],
            loc["subjects"],
            loc["records"],
            loc["holding_since"],
        ]
        for loc in statement["locations"]
    ]
    history = [[c["since"], c["sha256"], c["log"], c["index"]] for c in statement["policy_history"]]
    periods = [
        [p["log"], p["from"], p["until"] or "still open"] for p in statement["violation_periods"]
    ]
    volumes = [
        [year, v["subjects_registered"], v["subjects_erased"], v["subjects_moved_abroad"]]
        for year, v in statement["volumes"].items()
    ]
    shown = statement["violations"][:VIOLATIONS_SHOWN]
    violations = [[v["shard"], v["jurisdiction"], v["subject"]] for v in shown]
    more = len(statement["violations"]) - len(shown)
    checkpoints = "".join(
        f"<h3>{escape(log)}</h3><pre>{escape(note)}</pre>"
        for log, note in statement["checkpoints"].items()
    )
    archives = [[log, where] for log, where in statement["archives"].items()]
    findings = "".join(f"<li>{escape(f)}</li>" for f in statement["findings"]) or "<li>none</li>"
    sections = [
        f"<h1>Residency evidence: {escape(statement['jurisdiction'] or 'all jurisdictions')}</h1>",
        f"<p>Deployment {escape(statement['deployment'])}, generated at "
        f"{escape(statement['generated_at'])}; every figure is computed from the signed log "
        "entries up to the checkpoints printed below.</p>",
        _verdict(statement),
        f"<p>Compliant since: {_text(statement['compliant_since'])}</p>",
        "<h2>Policy in force</h2>",
        f"<p>SHA-256 <span class=wrap>{_text(policy and policy['sha256'])}</span>, in force since "
        f"{_text(policy and policy['in_force_since'])}.</p>",
        _table(["rule", "regions permitted", "law", "scheduled"], _rules(policy)),
        "<h2>Policy history</h2>",
        _table(["since", "policy SHA-256", "log", "entry"], history),
        "<h2>Locations</h2>",
        _table(
            [
                "shard",
                "region",
                "country",
                "provider",
                "data centre address",
                "legal entity",
                "permitted",
                "subjects",
                "records",
                "holding since",
            ],
            locations,
        ),
        "<h2>Compliance timeline: periods with a subject held where not permitted</h2>",
        _table(["log", "from", "until"], periods),
        "<h2>Volumes per calendar year (UTC)</h2>",
        _table(
            ["year", "subjects registered", "subjects erased", "subjects moved abroad"], volumes
        ),
        "<h2>Violations (by pseudonym)</h2>",
        _table(["shard", "jurisdiction", "subject"], violations),
        f"<p>…and {more} more, listed in evidence.json.</p>" if more > 0 else "",
        "<h2>Differences between the logs and the current tables</h2>",
        f"<ul>{findings}</ul>",
        "<h2>Archives</h2>",
        _table(["log", "archived at"], archives),
        "<h2>Checkpoints</h2>",
        checkpoints,
        "<h2>Verifier key</h2>",
        f"<pre>{escape(statement['verifier_key'])}</pre>",
        "<h2>How to verify</h2>",
        "<p>See VERIFY.md in this folder: <code>domicile audit verify --evidence DIR</code>, or "
        "<code>python3 verify_pack.py DIR</code> without domicile. Obtain the verifier key from a "
        "source other than this page.</p>",
    ]
    body = "\n".join(sections)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Residency evidence</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )
