"""The residency report for a person: a table per region, violations highlighted. Every value
is escaped; the signed note is printed at the end so the page can be checked against it."""

from __future__ import annotations

from html import escape
from importlib.resources import files
from string import Template
from typing import Any

from domicile.audit.report import by_region


def _cell(value: Any, cls: str = "") -> str:
    shown = "—" if value is None or value == "" else escape(str(value))
    return f'<td class="{cls}">{shown}</td>' if cls else f"<td>{shown}</td>"


def _row(cells: list[str], cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<tr{attr}>{''.join(cells)}</tr>"


def _table(headers: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _shard(shard: dict[str, Any]) -> str:
    title = f"<h3>Shard {escape(shard['shard'])}</h3>"
    if shard["status"] != "ok":
        return title + '<p class="unavailable">Unavailable: this shard could not be read.</p>'
    held = [
        _row(
            [
                _cell(r["jurisdiction"]),
                _cell(r["subjects"], "n"),
                _cell(r["records"], "n"),
                _cell("permitted" if r["permitted"] else "NOT PERMITTED"),
                _cell(r["law"]),
            ],
            "" if r["permitted"] else "violation",
        )
        for r in shard["jurisdictions"]
    ]
    parts = [title]
    if held:
        parts.append(_table(["jurisdiction", "subjects", "records", "policy", "law"], held))
    else:
        parts.append("<p>Holds no personal data.</p>")
    if shard["violations"]:
        parts.append(
            f'<p class="violation">{len(shard["violations"])} subject(s) held here although '
            "the policy does not permit it:</p>"
        )
        rows = [
            _row(
                [_cell(v["subject"], "mono"), _cell(v["jurisdiction"]), _cell(v["records"], "n")],
                "violation",
            )
            for v in shard["violations"]
        ]
        parts.append(_table(["subject (pseudonym)", "jurisdiction", "records"], rows))
    else:
        parts.append('<p class="ok">No violations.</p>')
    log = shard["log"]
    parts.append(
        f'<p class="meta">Counted against log <code>{escape(log["origin"])}</code> at tree size '
        f"{log['size']}; entries committed since: {shard['entries_after_checkpoint']}.</p>"
        f"<pre>{escape(log['checkpoint'])}</pre>"
    )
    return "".join(parts)


def _region(name: str, shards: list[dict[str, Any]]) -> str:
    first = shards[0]
    facts = _table(
        ["region", "country", "provider", "data centre address", "legal entity"],
        [
            _row(
                [
                    _cell(name),
                    _cell(first["country"]),
                    _cell(first["provider"]),
                    _cell(first["address"]),
                    _cell(first["legal_entity"]),
                ]
            )
        ],
    )
    return f"<h2>Region {escape(name)}</h2>{facts}{''.join(_shard(s) for s in shards)}"


def render_html(report: dict[str, Any], signed_note: str) -> str:
    scope = report["jurisdiction"] or "all jurisdictions"
    summary = report["summary"]
    verdict = (
        f'<p class="violation">{summary["violations"]} violation(s) found.</p>'
        if summary["violations"]
        else '<p class="ok">No violations found.</p>'
    )
    if summary["shards_unavailable"]:
        verdict += (
            f'<p class="unavailable">{summary["shards_unavailable"]} shard(s) could not be read: '
            "this report is incomplete.</p>"
        )
    policy = [
        _row([_cell(code), _cell(", ".join(rule["store_in"]) or "none"), _cell(rule["law"])])
        for code, rule in report["policy"].items()
    ]
    content = [
        f"<h1>Residency report: {escape(scope)}</h1>",
        f'<p class="meta">Deployment <code>{escape(report["deployment"])}</code>, generated '
        f"{escape(report['generated_at'])}. {summary['subjects']} subjects and "
        f"{summary['records']} records counted.</p>",
        verdict,
        "<h2>Policy</h2>",
        _table(["jurisdiction", "permitted regions", "law"], policy)
        if policy
        else "<p>No jurisdictions held.</p>",
        *(_region(name, shards) for name, shards in by_region(report).items()),
        "<h2>Signature</h2>",
        "<p>The report's JSON, signed with the deployment's verifier key "
        f"<code>{escape(report['verifier_key'])}</code>:</p>",
        f"<pre>{escape(signed_note)}</pre>",
    ]
    template = Template(
        files("domicile.audit").joinpath("templates/report.html").read_text("utf-8")
    )
    return template.substitute(
        title=escape(f"domicile residency report: {scope}"), content="\n".join(content)
    )
