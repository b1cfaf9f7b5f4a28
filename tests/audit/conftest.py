"""Audit fixtures: a real S3 server (SeaweedFS, with Object Lock) of this session's own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.s3 import S3Server, seaweedfs


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """Started on first use and shared by the session's S3 tests (one xdist group, so one
    worker runs them all)."""
    with seaweedfs() as s3:
        yield s3
