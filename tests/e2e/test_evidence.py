"""``domicile audit evidence`` and ``audit verify --evidence`` on the seed scenario: RU subjects
stored in the EU region while the policy allowed it, then a law requiring Russia. Before
``comply`` the pack records the violations; after it the pack proves compliance since the
comply run, with the Russian data centre's address and legal entity; every figure verifies
offline, and any change to the pack is caught."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from domicile.audit.note import Signer
from domicile.audit.policy_record import parse_time
from tests.support.cli import cli, invoke
from tests.support.deployment import Deployment

pytestmark = pytest.mark.anyio

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PDFTOPPM = shutil.which("pdftoppm")
FOREIGN_KEY = Signer.generate("domicile/test").verifier_key()  # the name, not the key
ADDRESS = "1 Example Street, Moscow 101000"
ENTITY = "Example Data LLC"


def statement(pack: Path) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((pack / "evidence.json").read_text())["evidence"]
    return body


def declare_russian_site(config: Path) -> None:
    text = config.read_text()
    site = f'[regions.ru-msk]\ncountry = "RU"\naddress = "{ADDRESS}"\nlegal_entity = "{ENTITY}"'
    config.write_text(text.replace('[regions.ru-msk]\ncountry = "RU"', site))


async def verify(pack: Path) -> tuple[int, str]:
    result = await invoke("audit", "verify", "--evidence", pack)
    return result.exit_code, result.stdout + result.stderr


async def test_the_pack_before_and_after_comply(
    law_change: tuple[Deployment, dict[str, str]], tmp_path: Path
) -> None:
    dep, ru = law_change
    declare_russian_site(dep.config)

    before = tmp_path / "before"
    out = str(before)
    written = await cli(dep.config, "audit", "evidence", "--jurisdiction", "RU", "--out", out)
    assert written.exit_code == 1, written.output
    early = statement(before)
    assert early["compliant_since"] is None
    assert len(early["violations"]) == len(ru)
    assert {v["shard"] for v in early["violations"]} == {"eu-fra-1"}
    assert early["findings"] == []
    code, said = await verify(before)
    assert code == 0, said

    started = datetime.now(UTC)
    done = await cli(dep.config, "comply")
    assert done.exit_code == 0, done.output
    ended = datetime.now(UTC)

    after = tmp_path / "after"
    out = str(after)
    written = await cli(dep.config, "audit", "evidence", "--jurisdiction", "RU", "--out", out)
    assert written.exit_code == 0, written.output
    late = statement(after)
    assert late["violations"] == []
    assert late["findings"] == []
    assert started < parse_time(late["compliant_since"]) < ended
    locations = {loc["shard"]: loc for loc in late["locations"]}
    assert locations["ru-msk-1"] == {
        "shard": "ru-msk-1",
        "region": "ru-msk",
        "country": "RU",
        "provider": None,
        "address": ADDRESS,
        "legal_entity": ENTITY,
        "permitted": True,
        "subjects": len(ru),
        "records": 3 * len(ru),
        "holding_since": locations["ru-msk-1"]["holding_since"],
    }
    assert started < parse_time(locations["ru-msk-1"]["holding_since"]) < ended
    assert (locations["eu-fra-1"]["permitted"], locations["eu-fra-1"]["subjects"]) == (False, 0)
    shas = [change["sha256"] for change in late["policy_history"]]
    assert len(set(shas)) == 2
    assert shas[-1] == late["policy"]["sha256"]
    assert late["policy"]["rules"]["RU"] == {"store_in": ["ru-msk"]}
    year = str(started.year)
    assert late["volumes"][year]["subjects_registered"] == len(ru)
    assert late["volumes"][year]["subjects_moved_abroad"] == 0
    assert set(late["checkpoints"]) == {"ru-msk-1", "eu-fra-1", "us-east-1"}
    code, said = await verify(after)
    assert code == 0, said

    # No raw subject id, record key or content anywhere in the pack.
    for path in after.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for raw in (b"ivan-", b"de-0", b"us-0", b"content-of-", b'"k0"', b'"notes"'):
                assert raw not in data, (path, raw)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_any_change_to_the_pack_fails_verification(
    law_change: tuple[Deployment, dict[str, str]], tmp_path: Path
) -> None:
    dep, _ = law_change
    pack = tmp_path / "pack"
    written = await cli(dep.config, "audit", "evidence", "--out", str(pack))
    assert written.exit_code == 1, written.output  # RU subjects held in the EU
    assert statement(pack)["jurisdiction"] is None
    assert (await verify(pack))[0] == 0
    files = sorted(p.relative_to(pack) for p in pack.rglob("*") if p.is_file())
    assert len(files) == 11
    for name in files:
        for how in ("changed", "truncated", "missing"):
            copy = tmp_path / f"{how}-{str(name).replace('/', '-')}"
            shutil.copytree(pack, copy)
            target = copy / name
            data = target.read_bytes()
            if how == "changed":
                middle = len(data) // 2
                flipped = bytes([data[middle] ^ 0x01])
                target.write_bytes(data[:middle] + flipped + data[middle + 1 :])
            elif how == "truncated":
                target.write_bytes(data[: len(data) - 5])
            else:
                target.unlink()
            code, said = await verify(copy)
            assert code == 1, (name, how, said)
            assert "domicile: evidence does not hold:" in said or "domicile:" in said
            shutil.rmtree(copy)
    missing = await invoke("audit", "verify", "--evidence", tmp_path / "nowhere")
    assert missing.exit_code == 1
    usage = await invoke("audit", "evidence")
    assert usage.exit_code == 2


def rasterized(pdf: Path, prefix: Path) -> list[Path]:
    """The PDF's pages as PNG files, by pdftoppm."""
    command = [str(PDFTOPPM), "-png", "-r", "40", str(pdf), str(prefix)]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return sorted(prefix.parent.glob(f"{prefix.name}*.png"))


@pytest.mark.skipif(
    CHROMIUM is None or PDFTOPPM is None,
    reason="needs headless Chromium and pdftoppm (Debian: apt-get install chromium poppler-utils)",
)
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_the_pack_holds_a_printed_report(
    law_change: tuple[Deployment, dict[str, str]], tmp_path: Path
) -> None:
    dep, _ = law_change
    declare_russian_site(dep.config)
    pack = tmp_path / "pack"
    await cli(dep.config, "audit", "evidence", "--jurisdiction", "RU", "--out", str(pack))
    assert "report.pdf" in statement(pack)["files"]
    assert rasterized(pack / "report.pdf", tmp_path / "page")
    html = (pack / "report.html").read_text()
    assert ADDRESS in html
    assert ENTITY in html
    assert (await verify(pack))[0] == 0


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_pack_after_a_key_rotation_verifies_from_the_first_key(
    law_change: tuple[Deployment, dict[str, str]], tmp_path: Path
) -> None:
    dep, _ = law_change
    first = (await cli(dep.config, "audit", "key")).stdout.strip()
    rotated = await cli(dep.config, "audit", "key", "rotate")
    assert rotated.exit_code == 0, rotated.output
    pack = tmp_path / "pack"
    await cli(dep.config, "audit", "evidence", "--out", str(pack))
    assert (pack / "verifier.key").read_text().strip() == rotated.stdout.splitlines()[-1]
    for key in (first, rotated.stdout.splitlines()[-1]):
        checked = await invoke("audit", "verify", "--evidence", pack, "--key", key)
        assert checked.exit_code == 0, checked.output
    stranger = await invoke("audit", "verify", "--evidence", pack, "--key", FOREIGN_KEY)
    assert stranger.exit_code == 1
    assert "is not one of the log's keys" in stranger.stderr
