"""How domicile installs: one import package, usable beside an application's own packages."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_one_top_level_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), "."],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("domicile-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"domicile"}
    for package in ("router", "shards", "audit", "migrations"):
        assert f"domicile/{package}/py.typed" in names
    assert "domicile/migrations/shard/versions/0001_initial.py" in names
    assert "domicile/audit/templates/report.html" in names
    assert "domicile/audit/pack/VERIFY.md" in names  # shipped in every evidence pack
    assert "domicile/audit/pack/verify_pack.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    with zipfile.ZipFile(wheel) as archive:
        assert "domicile = domicile.router.cli:main" in archive.read(entry_points).decode()


def test_runs_from_a_folder_with_its_own_router_and_migrations(tmp_path: Path) -> None:
    """An application's own ``router/`` and alembic ``migrations/`` must not shadow ours."""
    for package in ("router", "migrations", "migrations/shard", "shards", "audit"):
        folder = tmp_path / package
        folder.mkdir()
        (folder / "__init__.py").write_text(f"raise ImportError('the application own {package}')\n")
    env = {**os.environ, "DOMICILE_DATA_DIR": str(tmp_path / "data")}
    env.pop("DOMICILE_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-m", "domicile.router.cli", "shards", "upgrade"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    shards = tmp_path / "data" / "shards"
    assert sorted(p.name for p in shards.glob("*.sqlite")) == [
        "eu-fra-1.sqlite",
        "ru-msk-1.sqlite",
        "us-east-1.sqlite",
    ]
