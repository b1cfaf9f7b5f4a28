"""Lookup values normalise by their kind (with the libraries, not by hand), and their blind
values are HMAC-SHA256 under the lookup secret of ``kind || 0x00 || normalised value``."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from domicile.shards.errors import InvalidInput
from domicile.shards.lookup_keys import DEFAULT_KINDS, LookupKeys


def test_lookup_values_normalise_by_kind() -> None:
    keys = LookupKeys(DEFAULT_KINDS, b"k" * 32)
    assert keys.normalize("email", " Ivan@Example.RU", "RU") == "ivan@example.ru"
    assert keys.normalize("email", "ivan@xn--e1afmkfd.xn--p1ai", "RU") == "ivan@пример.рф"
    assert keys.normalize("phone", "8 (912) 345-67-89", "RU") == "+79123456789"
    assert keys.normalize("phone", "+7 912 345-67-89", "DE") == "+79123456789"
    assert keys.normalize("username", "ＴＯＭ ", "US") == "tom"  # NFKC folds full-width forms
    refused_values = [
        ("email", "ivan@"),
        ("phone", "8 (912) 345"),
        ("username", " "),
        ("username", "nul\x00"),
        ("username", "x" * 513),
    ]
    for kind, value in refused_values:
        with pytest.raises(InvalidInput) as refused:
            keys.normalize(kind, value, "RU")
        assert refused.value.code == "invalid_lookup"
    with pytest.raises(InvalidInput, match="no lookup kind 'shoe'"):
        keys.normalize("shoe", "44", "RU")


def test_a_national_number_looked_up_names_the_regions_that_read_it_so() -> None:
    keys = LookupKeys(DEFAULT_KINDS, b"k" * 32)
    found = keys.candidates("phone", "8 (912) 345-67-89")
    assert found[keys.blind("phone", "+79123456789")] == frozenset({"RU", "KZ"})
    assert keys.candidates("phone", "+7 912 345 67 89") == {
        keys.blind("phone", "+79123456789"): None
    }


def test_blind_values_are_keyed_and_domain_separated() -> None:
    one, two = LookupKeys(DEFAULT_KINDS, b"1" * 32), LookupKeys(DEFAULT_KINDS, b"2" * 32)
    expected = hmac.new(b"1" * 32, b"email\x00ivan@example.ru", hashlib.sha256).hexdigest()
    assert one.blind("email", "ivan@example.ru") == expected
    assert one.blind("email", "ivan@example.ru") != two.blind("email", "ivan@example.ru")
    assert one.blind("email", "x") != one.blind("username", "x")
