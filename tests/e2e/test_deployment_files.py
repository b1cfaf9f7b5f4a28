"""docker-compose.yml cannot be run here (no Docker engine), so check what can be checked: it
parses, every service is complete, and the domicile config it ships passes domicile's own
strict validation with the shards, regions and archive buckets the services provide."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from domicile.router.config import load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_is_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"pg-ru-msk", "pg-eu-fra", "pg-us-east", "pg-control", "redis", "s3", "router"} <= set(
        services
    )
    for name, service in services.items():
        assert "image" in service or "build" in service, name
    for dependency in services["router"]["depends_on"]:
        assert dependency in services
    for volume in compose["volumes"]:
        assert any(volume + ":" in v for s in services.values() for v in s.get("volumes", []))

    # Compose turns "$$" into "$"; domicile then expands ${POSTGRES_PASSWORD} itself.
    content = compose["configs"]["domicile"]["content"].replace("$$", "$")
    config = tmp_path / "domicile.toml"
    config.write_text(content)
    monkeypatch.setenv("POSTGRES_PASSWORD", "pw")
    settings = load_settings(config)
    hosts = {
        url.split("@")[1].split("/")[0]
        for url in (s.url for s in settings.topology.shards.values())
    }
    assert hosts <= set(services)
    assert settings.redis_url
    assert settings.redis_url.split("//")[1].split(":")[0] in services
    assert set(settings.archive.buckets) == set(settings.topology.regions)


def test_dockerfile_copies_every_package_folder() -> None:
    # The image installs with `pip install .`: a package folder it does not copy fails the build.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    copied = {
        line.split()[1]
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ")
    }
    assert folders <= copied
    assert "constraints.txt" in (ROOT / "Dockerfile").read_text()
