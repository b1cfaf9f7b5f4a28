"""Fixtures of the router's outage tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pgcluster import Cluster


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A throw-away PostgreSQL server that a test may stop and start again."""
    # Not under pytest's tmp dir: that is private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="domicile-pg-"))
    pg = Cluster(root)
    pg.init()
    pg.start()
    yield pg
    pg.stop()
    shutil.rmtree(root, ignore_errors=True)
