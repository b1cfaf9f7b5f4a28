"""The HTML report's "how to verify this report" commands, run as printed (with the server's
address for the placeholder) against a real server: the signed note copied from the page opens
with the verifier key into the report's JSON, and the logs it was counted against verify."""

from __future__ import annotations

import html
import json
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.cli import DOMICILE
from tests.support.server import serve


def _between(markup: str, start: str, end: str = "</pre>") -> str:
    return html.unescape(markup.split(start, 1)[1].split(end, 1)[0])


def test_the_printed_commands_verify_the_report(tmp_path: Path) -> None:
    with serve(tmp_path / "data") as server:
        admin = {"Authorization": f"Bearer {server.key('admin')}"}
        for subject, jurisdiction in (("ivan", "RU"), ("hans", "DE")):
            body = {"subject_id": subject, "jurisdiction": jurisdiction}
            assert httpx.post(f"{server.url}/v1/subjects", json=body, headers=admin).is_success
        markup = httpx.get(f"{server.url}/v1/audit/report?format=html", headers=admin).text

        (tmp_path / "report.note").write_text(
            _between(markup, '<pre class="note" id="signed-note">')
        )
        commands = [
            line.replace("https://DOMICILE-HOST", server.url)
            .replace("python3 ", f"{sys.executable} ", 1)
            .replace("domicile ", f"{DOMICILE} ", 1)
            for line in _between(markup, '<pre class="commands">').splitlines()
            if not line.startswith("#")
        ]
        assert len(commands) == 3
        env = {**server.env, "AUDITOR": server.key("audit:read"), "XDG_STATE_HOME": str(tmp_path)}
        outputs = [
            subprocess.run(
                ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True
            )
            for command in commands
        ]
    for command, done in zip(commands, outputs, strict=True):
        assert done.returncode == 0, (command, done.stderr)
    assert (tmp_path / "verifier.key").read_text().strip() in markup
    report = json.loads(outputs[1].stdout)
    assert report["type"] == "domicile residency report"
    assert report["summary"]["subjects"] == 2
    assert "ru-msk-1: ok" in outputs[2].stdout
