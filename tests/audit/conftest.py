"""Audit fixtures: a real S3 server (SeaweedFS, with Object Lock) for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.s3 import S3Server, seaweedfs


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with seaweedfs() as s3:
        yield s3
