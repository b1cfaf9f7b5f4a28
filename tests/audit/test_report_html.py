"""The residency report as a person reads it, on screen and printed: the whole policy, a summary
per shard and jurisdiction, violations listed up to a limit (the rest in the signed JSON, as the
page says), labelled columns, and a printed copy that carries every signature whole (rendered
to PDF and PNG with headless Chromium, where it is installed)."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from domicile.audit.note import Signer, Verifier, open_note
from domicile.audit.report import sign_report
from domicile.audit.report_html import VIOLATIONS_SHOWN, render_html

EU = ["AT", "BE", "DE", "FR"]
POLICY = {
    "CN": {"jurisdictions": ["CN"], "store_in": [], "law": "PIPL art. 40"},
    "RU": {"jurisdictions": ["RU"], "store_in": ["ru-msk"], "law": "152-FZ art. 18(5)"},
    "EU": {"jurisdictions": EU, "store_in": ["eu-fra"], "law": None},
    "default": {"jurisdictions": ["BR", "US"], "store_in": ["us-east"], "law": None},
}


def _shard(name: str, region: str, country: str, **body: Any) -> dict[str, Any]:
    checkpoint = SIGNER.sign(f"domicile/test/{name}\n3\n{'A' * 43}=\n")
    return {
        "shard": name,
        "region": region,
        "country": country,
        "provider": None,
        "address": "Moscow, a street whose name is rather long for a table cell",
        "legal_entity": None,
        "status": "ok",
        "log": {"origin": f"domicile/test/{name}", "size": 3, "checkpoint": checkpoint},
        "entries_after_checkpoint": 0,
        "jurisdictions": [],
        "violations": [],
        **body,
    }


SIGNER = Signer.generate("domicile/test")


def report(violations: int) -> dict[str, Any]:
    """RU subjects on eu-fra-1, which the policy does not permit: ``violations`` of them."""
    misplaced = [
        {"subject": f"{n:064x}", "jurisdiction": "RU", "records": 2} for n in range(violations)
    ]
    shards = [
        _shard(
            "ru-msk-1",
            "ru-msk",
            "RU",
            jurisdictions=[
                {"jurisdiction": "RU", "subjects": 1, "records": 1, "permitted": True, "law": "152"}
            ],
        ),
        _shard(
            "eu-fra-1",
            "eu-fra",
            "DE",
            jurisdictions=[
                {"jurisdiction": "DE", "subjects": 2, "records": 4, "permitted": True, "law": None},
                {
                    "jurisdiction": "RU",
                    "subjects": violations,
                    "records": 2 * violations,
                    "permitted": False,
                    "law": "152-FZ art. 18(5)",
                },
            ],
            violations=misplaced,
        ),
        {**_shard("us-east-1", "us-east", "US"), "status": "unavailable"},
    ]
    return {
        "type": "domicile residency report",
        "deployment": "test",
        "generated_at": "2026-12-01T10:00:00Z",
        "jurisdiction": None,
        "verifier_key": SIGNER.verifier_key(),
        "policy": POLICY,
        "shards": shards,
        "summary": {
            "subjects": 3 + violations,
            "records": 5 + 2 * violations,
            "violations": violations,
            "shards_unavailable": 1,
        },
    }


def page(violations: int) -> tuple[str, str]:
    built = report(violations)
    note = sign_report(built, SIGNER)
    return render_html(built, note), note


def text(markup: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def test_the_whole_policy_is_shown() -> None:
    shown = text(page(1)[0])
    assert "EU: AT, BE, DE, FR" in shown
    assert "CN none: permitted nowhere, subjects are refused PIPL art. 40" in shown
    assert "default every other jurisdiction (2) us-east" in shown


def test_summary_per_shard_and_jurisdiction() -> None:
    shown = text(page(3)[0])
    assert "eu-fra-1 eu-fra DE RU 3 6 3 violations" in shown
    assert "eu-fra-1 eu-fra DE DE 2 4 permitted" in shown
    assert "us-east-1 us-east US unavailable: not counted" in shown
    assert "1 shard could not be read" in shown
    assert "6 subjects and 11 records counted" in shown


def test_violations_are_labelled_and_listed_up_to_a_limit() -> None:
    many = VIOLATIONS_SHOWN + 50
    markup, note = page(many)
    table = markup.split('<table class="violations">', 1)[1].split("</table>", 1)[0]
    assert "<th>law</th>" in table
    assert "<th>permitted regions</th>" in table
    assert table.count('<tr class="violation">') == VIOLATIONS_SHOWN
    assert "… and 50 more, not listed here: every violation is in the signed JSON" in markup
    # The signed JSON carries every one of them.
    assert note.count('"jurisdiction":"RU","records":2,"subject"') == many
    assert "NOT PERMITTED here (permitted: ru-msk)" in text(markup)


def test_how_to_verify_is_on_the_page() -> None:
    markup, note = page(1)
    commands = html.unescape(markup.split('<pre class="commands">', 1)[1].split("</pre>", 1)[0])
    assert "/v1/audit/key > verifier.key" in commands
    assert "domicile audit verify --url" in commands
    signed = html.unescape(
        markup.split('<pre class="note" id="signed-note">', 1)[1].split("<", 1)[0]
    )
    assert signed == note
    assert open_note(signed, [Verifier.parse(SIGNER.verifier_key())]).startswith("{")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PDFTOTEXT = shutil.which("pdftotext")


@pytest.mark.skipif(
    CHROMIUM is None or PDFTOTEXT is None,
    reason="needs headless Chromium and pdftotext (Debian: apt-get install chromium poppler-utils)",
)
def test_printed_to_pdf_and_png_nothing_runs_off_the_page(tmp_path: Path) -> None:
    markup, note = page(VIOLATIONS_SHOWN + 2900)
    source = tmp_path / "report.html"
    source.write_text(markup)
    pdf, png = tmp_path / "report.pdf", tmp_path / "report.png"
    chrome = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-pdf-header-footer",
    ]
    subprocess.run(
        [*chrome, f"--print-to-pdf={pdf}", source.as_uri()],
        check=True,
        capture_output=True,
        timeout=90,
    )
    subprocess.run(
        [*chrome, "--window-size=1100,2400", f"--screenshot={png}", source.as_uri()],
        check=True,
        capture_output=True,
        timeout=90,
        cwd=tmp_path,
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    boxes = subprocess.run(
        [str(PDFTOTEXT), "-bbox", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    pages = re.findall(r'<page width="([\d.]+)" height="([\d.]+)">(.*?)</page>', boxes, re.S)
    assert len(pages) > 1
    words = []
    for width, _, body in pages:
        for x_max, word in re.findall(r'xMax="([\d.]+)"[^>]*>([^<]*)</word>', body):
            assert float(x_max) <= float(width), f"{word!r} runs off the page"
            words.append(html.unescape(word))
    # Text cut off by the page (or by a box that scrolls on screen) is not printed: the signed
    # note, its JSON line and signature, must all be there, and the verifier key.
    printed = "".join(words)
    for value in (note, SIGNER.verifier_key()):
        assert "".join(value.split()) in printed
