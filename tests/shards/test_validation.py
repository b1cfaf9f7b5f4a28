"""The input rules accept exactly their alphabets and lengths: nothing more (a final newline
slipped through ``re.match`` with ``$``), nothing less."""

from __future__ import annotations

import string
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domicile.shards.errors import InvalidInput
from domicile.shards.validation import (
    validate_collection,
    validate_record_address,
    validate_subject_id,
)

SUBJECT_ALPHABET = string.ascii_letters + string.digits + "._:@-"
COLLECTION_ALPHABET = string.ascii_letters + string.digits + "._-"


def accepts(rule: Callable[..., None], *args: str) -> bool:
    try:
        rule(*args)
    except InvalidInput:
        return False
    return True


@given(st.text(max_size=300))
def test_subject_ids_are_exactly_the_contract_alphabet(value: str) -> None:
    expected = 1 <= len(value) <= 128 and all(c in SUBJECT_ALPHABET for c in value)
    assert accepts(validate_subject_id, value) == expected


@given(st.text(max_size=100))
def test_collections_are_exactly_their_alphabet(value: str) -> None:
    expected = 1 <= len(value) <= 64 and all(c in COLLECTION_ALPHABET for c in value)
    assert accepts(validate_collection, value) == expected


@given(st.text(max_size=300))
def test_record_keys_are_exactly_their_alphabet(value: str) -> None:
    expected = 1 <= len(value) <= 256 and all(c in SUBJECT_ALPHABET for c in value)
    assert accepts(validate_record_address, "notes", value) == expected


@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\x00", " "])
def test_a_trailing_control_character_is_refused(suffix: str) -> None:
    assert not accepts(validate_subject_id, "abc" + suffix)
    assert not accepts(validate_record_address, "notes" + suffix, "a")
    assert not accepts(validate_record_address, "notes", "a" + suffix)
