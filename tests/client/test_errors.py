"""The client's exception classes: one per error code the server can answer, with the server's
status; an unknown code falls back to its status's class, an unknown status to ``ApiError``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from domicile import client as dc
from domicile.audit.errors import AuditError, EvidenceInvalid
from domicile.client.errors import BY_CODE, BY_STATUS, error_from, retry_after
from domicile.router.api.errors import _HTTP_CODES
from domicile.router.errors import ApiError, RouterError, answer_of
from domicile.shards.errors import DomicileError, InvalidInput
from domicile.shards.faults import Cause

REPO = Path(__file__).parents[2]
#: Codes given when a route raises, as in ``ApiError(404, "move_not_found", …)``.
_LITERAL = {
    r'ApiError\(\s*(\d+),\s*"([a-z_]+)"': None,
    r'error_response\(\s*(\d+),\s*"([a-z_]+)"': None,
    r'InvalidInput\(\s*"([a-z_]+)"': 422,
    r'super\(\).__init__\(\s*"([a-z_]+)",': 422,  # InvalidInput's subclasses
}
#: Sources whose codes only the CLI reports (an import's rejects file), never an HTTP answer.
_CLI_ONLY_SOURCES = {"shards/import_lines.py", "shards/importer.py"}
#: Errors only the CLI raises (an evidence pack is checked offline, with no server).
_CLI_ONLY_CLASSES: set[type] = {EvidenceInvalid}


def _subclasses(base: type) -> list[type]:
    found: list[type] = []
    for sub in base.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def server_codes() -> dict[str, int]:
    """Every code the server answers with, and its status."""
    codes: dict[str, int] = {}
    for base in (DomicileError, AuditError, RouterError):
        for cls in _subclasses(base):
            answer = answer_of(cls)
            # Classes whose instances take their code as an argument are found in the sources.
            if cls in _CLI_ONLY_CLASSES:
                continue
            if answer is not None and not issubclass(cls, InvalidInput | ApiError):
                codes[cls.code] = answer.status
    for pattern, status in _LITERAL.items():
        for package in ("router", "shards", "audit"):
            for source in (REPO / package).rglob("*.py"):
                if str(source.relative_to(REPO)) in _CLI_ONLY_SOURCES:
                    continue
                for found in re.findall(pattern, source.read_text()):
                    if status is None:
                        codes[found[1]] = int(found[0])
                    else:
                        codes[found] = status
    codes.update({code: status for status, code in _HTTP_CODES.items()})
    # A shard's unavailability is answered with its cause (``ShardUnavailable``).
    codes.update({f"shard_{cause}": 503 for cause in Cause})
    return codes


def test_every_server_code_has_its_class() -> None:
    codes = server_codes()
    assert {"subject_not_found", "move_not_found", "invalid_key", "unauthorized"} <= codes.keys()
    missing = {code: status for code, status in codes.items() if code not in BY_CODE}
    assert missing == {}
    wrong = {c: (s, BY_CODE[c].status) for c, s in codes.items() if BY_CODE[c].status != s}
    assert wrong == {}


def test_the_shard_causes_have_their_classes() -> None:
    for code in (
        "shard_unreachable",
        "shard_timeout",
        "shard_auth_failed",
        "shard_database_missing",
        "shard_schema_missing",
        "shard_identity_mismatch",
        "shard_read_only",
        "shard_damaged",
        "shard_disk_full",
        "shard_too_many_connections",
        "catalog_unavailable",
        "lookup_taken",
    ):
        assert BY_CODE[code].status == (409 if code == "lookup_taken" else 503)


def test_classes_are_exported_and_unique() -> None:
    classes = _subclasses(dc.ApiError)
    assert len({cls.code for cls in classes}) == len(classes)
    assert {cls.__name__ for cls in classes} <= set(dc.__all__)
    for cls in classes:
        assert getattr(dc, cls.__name__) is cls
        assert issubclass(cls, BY_STATUS[cls.status])


def _answer(status: int, body: object = None, **headers: str) -> httpx.Response:
    request = httpx.Request("GET", "http://domicile/v1/x")
    if body is None:
        return httpx.Response(
            status, text="<html>bad gateway</html>", headers=headers, request=request
        )
    return httpx.Response(status, json=body, headers=headers, request=request)


def _body(code: str) -> dict[str, object]:
    return {"error": {"code": code, "message": f"about {code}"}}


def test_a_known_code() -> None:
    error = error_from(_answer(404, _body("subject_not_found"), **{"X-Request-Id": "r1"}))
    assert type(error) is dc.SubjectNotFound
    assert (error.code, error.status, error.message, error.request_id) == (
        "subject_not_found",
        404,
        "about subject_not_found",
        "r1",
    )
    assert str(error) == "404 subject_not_found: about subject_not_found"


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (503, "shard_on_fire", dc.Unavailable),
        (404, "lookup_not_found", dc.NotFound),
        (422, "invalid_lookup_value", dc.InvalidRequest),
        (409, "subject_not_found", dc.Conflict),  # a known code with another status
        (418, "teapot", dc.ApiError),
    ],
)
def test_an_unknown_code_falls_back_by_status(
    status: int, code: str, expected: type[dc.ApiError]
) -> None:
    error = error_from(_answer(status, _body(code), **{"Retry-After": "2"}))
    assert type(error) is expected
    assert (error.code, error.status, error.retry_after) == (code, status, 2.0)


def test_an_answer_not_from_the_api() -> None:
    error = error_from(_answer(502))
    assert type(error) is dc.ApiError
    assert (error.code, error.status, error.message) == ("api_error", 502, "Bad Gateway")
    assert type(error_from(_answer(503, ["not", "an", "error"]))) is dc.Unavailable


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after(httpx.Headers({"Retry-After": "3"})) == 3.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (retry_after(httpx.Headers({"Retry-After": later})) or 0) <= 30
    assert retry_after(httpx.Headers({"Retry-After": "soon"})) is None
    assert retry_after(httpx.Headers()) is None
