"""The residency report for a person, on screen and on paper: the verdict, a summary per shard
and jurisdiction, the whole policy, then per region and shard what it holds, the violations
(the first ``VIOLATIONS_SHOWN`` of a shard; every one is in the signed JSON), the checkpoint it
was counted against, how to verify the report, and the signed note itself. Every value is
escaped, and long ones wrap, so a printed copy still carries every signature whole."""

from __future__ import annotations

from html import escape
from importlib.resources import files
from string import Template
from typing import Any

from domicile.audit.report import by_region

#: Violations listed per shard; past it the page says how many more the signed JSON lists.
VIOLATIONS_SHOWN = 100

_VERIFY_PYTHON = (
    "python3 -c 'from domicile.audit.note import Verifier, open_note; "
    'key = Verifier.parse(open("verifier.key").read().strip()); '
    'print(open_note(open("report.note").read(), [key]))\''
)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _cell(value: Any, cls: str = "") -> str:
    shown = "—" if value is None or value == "" else escape(str(value))
    return f'<td class="{cls}">{shown}</td>' if cls else f"<td>{shown}</td>"


def _row(cells: list[str], cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<tr{attr}>{''.join(cells)}</tr>"


def _table(headers: list[str], rows: list[str], cls: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _regions(store_in: list[str]) -> str:
    return ", ".join(store_in) if store_in else "none: permitted nowhere, subjects are refused"


def _scheduled(rule: dict[str, Any]) -> str:
    """A rule's regions, with when it takes effect and what it permits until then."""
    regions = _regions(rule["store_in"])
    if not rule.get("effective"):
        return regions
    before = ", ".join(rule["before"]) or "no other region"
    return f"{regions} (from {rule['effective']}; until then also {before})"


class _Policy:
    """The report's policy, by rule and by the jurisdiction each rule governs."""

    def __init__(self, rules: dict[str, dict[str, Any]]) -> None:
        self.rules = rules
        self.key_of = {code: key for key, rule in rules.items() for code in rule["jurisdictions"]}

    def rule_of(self, jurisdiction: str) -> dict[str, Any] | None:
        key = self.key_of.get(jurisdiction)
        return None if key is None else self.rules[key]

    def permitted(self, jurisdiction: str) -> str:
        rule = self.rule_of(jurisdiction)
        return _regions(rule["store_in"] if rule else [])

    def table(self, jurisdiction: str | None) -> str:
        rows = []
        for key, rule in self.rules.items():
            codes = rule["jurisdictions"]
            if key == "default":
                applies = f"every other jurisdiction ({len(codes)})"
            elif codes == [key]:
                applies = key
            else:
                applies = f"{key}: {', '.join(codes)}" if codes else f"{key}: none"
            governs = jurisdiction is not None and jurisdiction in codes
            rows.append(
                _row(
                    [
                        _cell(key, "key"),
                        _cell(applies),
                        _cell(_scheduled(rule)),
                        _cell(rule["law"]),
                    ],
                    "governs" if governs else "",
                )
            )
        headers = ["rule", "applies to", "permitted regions", "law cited by the policy"]
        return _table(headers, rows)


def _summary(report: dict[str, Any]) -> str:
    rows = []
    for shard in report["shards"]:
        place = [_cell(shard["shard"], "mono"), _cell(shard["region"]), _cell(shard["country"])]
        if shard["status"] != "ok":
            rows.append(
                _row([*place, '<td colspan="4">unavailable: not counted</td>'], "unavailable")
            )
            continue
        if not shard["jurisdictions"]:
            rows.append(_row([*place, '<td colspan="4">holds no personal data</td>']))
        for held in shard["jurisdictions"]:
            status = "permitted" if held["permitted"] else f"{held['subjects']:,} violations"
            cells = [
                _cell(held["jurisdiction"]),
                _cell(f"{held['subjects']:,}", "n"),
                _cell(f"{held['records']:,}", "n"),
                _cell(status),
            ]
            rows.append(_row(place + cells, "" if held["permitted"] else "violation"))
    headers = ["shard", "region", "country", "jurisdiction", "subjects", "records", "status"]
    return _table(headers, rows)


def _violations(shard: dict[str, Any], policy: _Policy) -> str:
    found = shard["violations"]
    if not found:
        return '<p class="ok">No violations.</p>'
    shown = found[:VIOLATIONS_SHOWN]
    parts = [
        f'<p class="violation">{_plural(len(found), "subject")} held here although the policy '
        "does not permit it:</p>"
    ]
    rows = []
    for v in shown:
        rule = policy.rule_of(v["jurisdiction"])
        rows.append(
            _row(
                [
                    _cell(v["subject"], "mono"),
                    _cell(v["jurisdiction"]),
                    _cell(f"{v['records']:,}", "n"),
                    _cell(policy.permitted(v["jurisdiction"])),
                    _cell(rule["law"] if rule else None),
                ],
                "violation",
            )
        )
    headers = ["subject (pseudonym)", "jurisdiction", "records", "permitted regions", "law"]
    parts.append(_table(headers, rows, "violations"))
    if len(found) > len(shown):
        parts.append(
            f'<p class="violation">… and {len(found) - len(shown):,} more, not listed here: '
            "every violation is in the signed JSON below (and in "
            "<code>domicile audit report --format json</code>).</p>"
        )
    return "".join(parts)


def _shard(shard: dict[str, Any], policy: _Policy) -> str:
    title = f"<h3>Shard {escape(shard['shard'])}</h3>"
    if shard["status"] != "ok":
        return title + '<p class="unavailable">Unavailable: this shard could not be read.</p>'
    held = [
        _row(
            [
                _cell(r["jurisdiction"]),
                _cell(f"{r['subjects']:,}", "n"),
                _cell(f"{r['records']:,}", "n"),
                _cell(
                    "permitted here"
                    if r["permitted"]
                    else f"NOT PERMITTED here (permitted: {policy.permitted(r['jurisdiction'])})"
                ),
                _cell(r["law"]),
            ],
            "" if r["permitted"] else "violation",
        )
        for r in shard["jurisdictions"]
    ]
    parts = [title]
    if held:
        headers = ["jurisdiction", "subjects", "records", "policy", "law cited by the policy"]
        parts.append(_table(headers, held))
    else:
        parts.append("<p>Holds no personal data.</p>")
    parts.append(_violations(shard, policy))
    log = shard["log"]
    parts.append(
        f'<p class="meta">Counted against log <code>{escape(log["origin"])}</code> at tree size '
        f"{log['size']:,}; entries committed since: {shard['entries_after_checkpoint']:,}. "
        "Its signed checkpoint:</p>"
        f'<pre class="note">{escape(log["checkpoint"])}</pre>'
    )
    return "".join(parts)


def _region(name: str, shards: list[dict[str, Any]], policy: _Policy) -> str:
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
    body = "".join(_shard(s, policy) for s in shards)
    return f'<section class="region"><h2>Region {escape(name)}</h2>{facts}{body}</section>'


def _how_to_verify(report: dict[str, Any]) -> str:
    commands = "\n".join(
        [
            "# 1. The verifier key, from a source other than this page; it must equal the one",
            "#    printed below. On the deployment: domicile audit key > verifier.key",
            "curl -s https://DOMICILE-HOST/v1/audit/key > verifier.key",
            "# 2. The signed note at the end of this page, copied exactly (every line, the",
            "#    blank line before the signature included), into report.note.",
            "# 3. Check the signature; it prints the report's JSON, whose figures are this page's:",
            _VERIFY_PYTHON,
            "# 4. Check that the logs are consistent with the checkpoints the counts were read",
            "#    against (an audit:read key; the witness state remembers what was verified):",
            'domicile audit verify --url https://DOMICILE-HOST --api-key "$AUDITOR" '
            '--key "$(cat verifier.key)"',
        ]
    )
    return (
        "<h2>How to verify this report</h2>"
        "<p>The report is signed: its JSON is the text of a "
        "<a href='https://c2sp.org/signed-note'>C2SP signed note</a> (Ed25519), the same "
        "format as each log's checkpoint. A changed figure, a truncated list or another key "
        "fails the check. With domicile installed:</p>"
        f'<pre class="commands">{escape(commands)}</pre>'
        "<p>Without domicile, any signed-note implementation verifies it, e.g. Go's "
        "<code>golang.org/x/mod/sumdb/note</code>: <code>note.Open(reportNote, "
        "note.VerifierList(note.NewVerifier(verifierKey)))</code>; the checkpoints verify the "
        "same way and their Merkle proofs with any RFC 9162 library (docs/auditing.md).</p>"
        f'<p class="meta">Report generated {escape(report["generated_at"])} for deployment '
        f"<code>{escape(report['deployment'])}</code>.</p>"
    )


def render_html(report: dict[str, Any], signed_note: str) -> str:
    scope = report["jurisdiction"] or "all jurisdictions"
    summary = report["summary"]
    policy = _Policy(report["policy"])
    verdict = (
        f'<p class="violation">{_plural(summary["violations"], "violation")} found.</p>'
        if summary["violations"]
        else '<p class="ok">No violations found.</p>'
    )
    if summary["shards_unavailable"]:
        verdict += (
            f'<p class="unavailable">{_plural(summary["shards_unavailable"], "shard")} could '
            "not be read: this report is incomplete.</p>"
        )
    governs = ""
    if report["jurisdiction"] is not None:
        governs = " The rule that governs it is highlighted."
    content = [
        f"<h1>Residency report: {escape(scope)}</h1>",
        f'<p class="meta">Deployment <code>{escape(report["deployment"])}</code>, generated '
        f"{escape(report['generated_at'])}. {_plural(summary['subjects'], 'subject')} and "
        f"{_plural(summary['records'], 'record')} counted.</p>",
        verdict,
        "<h2>Summary by shard and jurisdiction</h2>",
        _summary(report),
        "<h2>Policy</h2>",
        f"<p>Every rule of the residency policy in force.{governs}</p>",
        policy.table(report["jurisdiction"]),
        *(_region(name, shards, policy) for name, shards in by_region(report).items()),
        _how_to_verify(report),
        "<h2>Signature</h2>",
        "<p>The report's JSON, signed with the deployment's verifier key "
        f"<code>{escape(report['verifier_key'])}</code>:</p>",
        f'<pre class="note" id="signed-note">{escape(signed_note)}</pre>',
    ]
    template = Template(
        files("domicile.audit").joinpath("templates/report.html").read_text("utf-8")
    )
    return template.substitute(
        title=escape(f"domicile residency report: {scope}"), content="\n".join(content)
    )
