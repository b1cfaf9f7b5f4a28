"""Leaves are RFC 8785 canonical JSON: the fast path must give exactly the reference bytes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import rfc8785

from domicile.audit.events import (
    RECORD_PUT,
    Actor,
    LeafMaker,
    LogSite,
    canonical_json,
    make_leaf,
)

TRICKY = [
    "plain",
    'quote " and backslash \\ and slash /',
    "ünïcödé ✓ 日本語 🇷🇺",
    "line\nbreak\ttab\x00nul\x1fus\x7fdel",
    "\u2028\u2029 separators",
    "\ud7ff\ue000\uffff",
    "",
    "a" * 300,
]


@pytest.mark.parametrize("text", TRICKY)
def test_fast_path_matches_rfc8785_for_strings(text: str) -> None:
    event = {"purpose": text, "event": "record.put", "z": text[::-1], "A": "x"}
    assert canonical_json(event) == rfc8785.dumps(event)


@pytest.mark.parametrize("number", [0, 1, -1, 7, 10**6, 2**53 - 1, -(2**53) + 1])
def test_integers_match_rfc8785(number: int) -> None:
    event: dict[str, Any] = {"records": number, "event": "subject.erased"}
    assert canonical_json(event) == rfc8785.dumps(event)


@pytest.mark.parametrize("number", [2**53, 10**20])
def test_integers_beyond_doubles_are_refused_as_jcs_does(number: int) -> None:
    with pytest.raises(rfc8785.IntegerDomainError):
        canonical_json({"records": number})


def test_other_values_take_the_reference_path() -> None:
    event: dict[str, Any] = {"ratio": 0.1, "flag": True, "list": [1, "b"], "é": "key"}
    assert canonical_json(event) == rfc8785.dumps(event)


def test_a_leaf_maker_makes_make_leafs_bytes() -> None:
    site = LogSite("ru-msk-1", "ru-msk", "RU")
    actor = Actor(key_id="cli", purpose="импорт")
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    maker = LeafMaker(site, RECORD_PUT, actor, time=moment, version=1)
    for fields in ({"subject": "p", "record": "r", "content_sha256": "d"}, {"ключ": "v"}):
        assert maker(**fields) == make_leaf(
            site, RECORD_PUT, actor, time=moment, version=1, **fields
        )
