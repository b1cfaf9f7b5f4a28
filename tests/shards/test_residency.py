"""The residency report: signed JSON whose signature verifies with the verifier key alone, and
HTML a person can read, with violations listed by pseudonym once the policy changes."""

from __future__ import annotations

import json

import pytest
import rfc8785

from domicile.audit.checkpoint import open_checkpoint
from domicile.audit.note import verify_note
from domicile.shards.pseudonym import Pseudonymizer
from tests.support.api import Api, verifier_of, write_some
from tests.support.cli import invoke
from tests.support.deployment import Deployment

pytestmark = pytest.mark.anyio


async def test_signed_json_report(api: Api) -> None:
    await write_some(api, {"ivan": "RU", "olga": "RU", "hans": "DE", "marie": "FR"}, records=3)
    response = await api.request("GET", "/v1/audit/report", scope="audit:read")
    assert response.status_code == 200, response.text
    body = response.json()
    verifier = await verifier_of(api)

    opened = verify_note(body["signed_note"], [verifier])
    assert opened.text == bytes(rfc8785.dumps(body["report"])).decode() + "\n"
    report = json.loads(opened.text)
    assert report["deployment"] == "test"
    assert report["summary"] == {
        "subjects": 4,
        "records": 12,
        "violations": 0,
        "shards_unavailable": 0,
    }
    shards = {s["shard"]: s for s in report["shards"]}
    eu = shards["eu-fra-1"]
    assert (eu["region"], eu["country"], eu["provider"]) == ("eu-fra", "DE", "Example Cloud")
    assert [(r["jurisdiction"], r["subjects"], r["records"]) for r in eu["jurisdictions"]] == [
        ("DE", 1, 3),
        ("FR", 1, 3),
    ]
    assert eu["violations"] == []
    assert shards["us-east-1"]["jurisdictions"] == []
    ru = shards["ru-msk-1"]
    checkpoint = open_checkpoint(ru["log"]["checkpoint"], [verifier], "domicile/test/ru-msk-1")
    assert checkpoint.size == ru["log"]["size"] == 9  # with the policy.changed entry
    assert ru["entries_after_checkpoint"] == 0

    only_ru = await api.request("GET", "/v1/audit/report?jurisdiction=RU", scope="audit:read")
    report = only_ru.json()["report"]
    assert report["jurisdiction"] == "RU"
    assert report["summary"]["subjects"] == 2
    assert {s["shard"]: len(s["jurisdictions"]) for s in report["shards"]} == {
        "ru-msk-1": 1,
        "eu-fra-1": 0,
        "us-east-1": 0,
    }


async def test_html_report_through_the_api(api: Api) -> None:
    await write_some(api, {"ivan": "RU", "hans": "DE"})
    response = await api.request("GET", "/v1/audit/report?format=html", scope="audit:read")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    for region in ("ru-msk", "eu-fra", "us-east"):
        assert f"<h2>Region {region}</h2>" in page
    # The summary and the policy; per region its facts; per shard holding data, its
    # jurisdictions.
    assert page.count("<table>") == 2 + 3 + 2
    assert "Holds no personal data." in page
    assert "No violations found." in page
    assert "ivan" not in page


async def test_violations_after_a_policy_change(api: Api, deployment: Deployment) -> None:
    await write_some(api, {"ivan": "RU", "olga": "RU", "hans": "DE"})
    # RU data may now live only in eu-fra: everything on ru-msk-1 is a violation.
    deployment.config.write_text(
        deployment.config.read_text().replace(
            '[policy.RU]\nstore_in = ["ru-msk"]', '[policy.RU]\nstore_in = ["eu-fra"]'
        )
    )
    result = await invoke("audit", "report", "--config", deployment.config, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["report"]
    pseudonyms = Pseudonymizer(bytes.fromhex((deployment.data_dir / "pseudonym.key").read_text()))
    ru = next(s for s in report["shards"] if s["shard"] == "ru-msk-1")
    assert ru["violations"] == sorted(
        (
            {"subject": pseudonyms.subject(name), "jurisdiction": "RU", "records": 2}
            for name in ("ivan", "olga")
        ),
        key=lambda v: str(v["subject"]),
    )
    assert ru["jurisdictions"][0]["permitted"] is False
    assert report["summary"]["violations"] == 2
    assert report["policy"]["RU"] == {"jurisdictions": ["RU"], "store_in": ["eu-fra"], "law": None}
    # The whole policy, not only the jurisdictions held: the EU group, CN, default.
    assert list(report["policy"]) == ["CN", "RU", "EU", "default"]
    assert report["policy"]["CN"]["store_in"] == []
    assert len(report["policy"]["EU"]["jurisdictions"]) == 27
    assert "RU" not in report["policy"]["default"]["jurisdictions"]

    html = await invoke("audit", "report", "--config", deployment.config, "--format", "html")
    assert html.exit_code == 0
    assert '<tr class="violation">' in html.stdout
    assert "2 violations found." in html.stdout
    assert pseudonyms.subject("ivan") in html.stdout


async def test_report_usage_errors(deployment: Deployment) -> None:
    result = await invoke("audit", "report", "--config", deployment.config, "--jurisdiction", "ZZ")
    assert result.exit_code == 2
    assert result.stderr.startswith("domicile: --jurisdiction:")
