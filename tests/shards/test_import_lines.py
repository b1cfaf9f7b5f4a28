"""The import's input lines: what is accepted, and every way a line is refused, with a code and
a message that never quotes the line's values."""

from __future__ import annotations

import json
from typing import Any

import pytest

from domicile.shards.errors import InvalidInput
from domicile.shards.import_lines import RecordLine, parse_line

VALUE = "Zx-value-9"


def _line(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def test_a_good_line() -> None:
    parsed = parse_line(
        _line(
            subject_id="ivan.petrov",
            jurisdiction="RU",
            lookups={"email": "i@example.com"},
            records=[{"collection": "profile", "key": "main", "data": {"b": 1, "a": [VALUE]}}],
        ),
        max_record_bytes=100,
    )
    assert (parsed.subject_id, parsed.jurisdiction) == ("ivan.petrov", "RU")
    assert parsed.lookups == {"email": "i@example.com"}
    assert parsed.records == (RecordLine("profile", "main", f'{{"a":["{VALUE}"],"b":1}}'.encode()),)


def _record(**fields: Any) -> dict[str, Any]:
    return {"collection": "c", "key": "k", "data": {}, **fields}


BAD = [
    (b"{" + VALUE.encode(), "malformed_json"),
    (json.dumps([VALUE]).encode(), "invalid_line"),
    (_line(subject_id="a", jurisdiction="RU"), "invalid_line"),
    (_line(subject_id="a", jurisdiction="RU", records=[], **{VALUE: 1}), "invalid_line"),
    (_line(subject_id=7, jurisdiction="RU", records=[]), "invalid_line"),
    (_line(subject_id=f"{VALUE} x", jurisdiction="RU", records=[]), "invalid_subject_id"),
    (_line(subject_id="a", jurisdiction=VALUE, records=[]), "invalid_jurisdiction"),
    (_line(subject_id="a", jurisdiction="ru", records=[]), "invalid_jurisdiction"),
    (_line(subject_id="a", jurisdiction="RU", records=[], lookups=[VALUE]), "invalid_lookups"),
    (_line(subject_id="a", jurisdiction="RU", records={}), "invalid_record"),
    (_line(subject_id="a", jurisdiction="RU", records=[VALUE]), "invalid_record"),
    (_line(subject_id="a", jurisdiction="RU", records=[_record(data=VALUE)]), "invalid_record"),
    (_line(subject_id="a", jurisdiction="RU", records=[_record(extra=1)]), "invalid_record"),
    (_line(subject_id="a", jurisdiction="RU", records=[_record(key=3)]), "invalid_record"),
    (_line(subject_id="a", jurisdiction="RU", records=[_record(key=f"{VALUE}/")]), "invalid_key"),
    (
        _line(subject_id="a", jurisdiction="RU", records=[_record(collection=f"{VALUE}:")]),
        "invalid_collection",
    ),
    (
        _line(subject_id="a", jurisdiction="RU", records=[_record(), _record(data={"n": 1})]),
        "duplicate_record",
    ),
    (
        _line(subject_id="a", jurisdiction="RU", records=[_record(data={"v": VALUE * 20})]),
        "record_too_large",
    ),
]


@pytest.mark.parametrize(("raw", "code"), BAD)
def test_a_bad_line_is_refused_without_its_values(raw: bytes, code: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_line(raw, max_record_bytes=100)
    assert refused.value.code == code
    assert VALUE not in refused.value.message
