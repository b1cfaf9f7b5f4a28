"""Lookup keys: the values a backend finds a subject by (e-mail, phone, username), each kind
normalised by a well-kept library, and their blind index, the only form of them that leaves
the subject's home shard.

The blind value is ``HMAC-SHA256(lookup secret, kind || 0x00 || normalised value)``: the
catalog, caches and audit leaves hold it, never the value. The lookup secret is its own key,
not the pseudonym key, so the two never share an input space.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from domicile.shards.errors import InvalidInput

#: What a kind's name may be (config keys and URL segments alike).
KIND_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
#: The longest value taken, before normalisation.
MAX_VALUE = 512


class Normalization(StrEnum):
    EMAIL = "email"  # syntax checked, IDNA domain, case folded
    PHONE = "phone"  # E.164; national forms read in the subject's jurisdiction
    CASEFOLD = "casefold"  # Unicode NFKC, case folded, outer spaces stripped
    EXACT = "exact"  # as given


#: The embedded default's kinds (and any config file's that declares none).
DEFAULT_KINDS: Mapping[str, Normalization] = {
    "email": Normalization.EMAIL,
    "phone": Normalization.PHONE,
    "username": Normalization.CASEFOLD,
}

_E164 = phonenumbers.PhoneNumberFormat.E164


@dataclass(frozen=True)
class LookupValue:
    """One lookup key of a subject: the value as given (kept on the home shard only), its
    normalised form (kept there too, for re-keying) and its blind value."""

    kind: str
    value: str
    normalized: str
    blind: str


def _invalid(kind: str, why: str) -> InvalidInput:
    # Never the value itself: error answers are logged by code, but messages travel too.
    return InvalidInput("invalid_lookup", f"the {kind} value {why}")


def _checked(kind: str, value: str) -> str:
    # Printable only: a control character is never part of an address or a name, and NUL
    # cannot be stored in PostgreSQL text.
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_VALUE:
        raise _invalid(kind, f"must be 1-{MAX_VALUE} characters")
    if not value.isprintable():
        raise _invalid(kind, "must be printable characters")
    return value


def _phone(kind: str, value: str, region: str | None) -> phonenumbers.PhoneNumber:
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        raise _invalid(kind, "is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise _invalid(kind, "is not a valid phone number")
    return number


def _is_international(value: str) -> bool:
    return value.lstrip().startswith("+")


class LookupKeys:
    """The deployment's kinds and its blind index."""

    def __init__(self, kinds: Mapping[str, Normalization], secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the lookup secret must be at least 32 bytes")
        self.kinds = dict(kinds)
        self._keyed = hmac.new(secret, digestmod=hashlib.sha256)

    def method(self, kind: str) -> Normalization:
        found = self.kinds.get(kind)
        if found is None:
            declared = ", ".join(sorted(self.kinds)) or "none"
            raise InvalidInput(
                "unknown_lookup_kind",
                f"no lookup kind {kind!r} is declared (declared: {declared})",
            )
        return found

    def blind(self, kind: str, normalized: str) -> str:
        mac = self._keyed.copy()
        mac.update(kind.encode() + b"\x00" + normalized.encode())
        return mac.hexdigest()

    def normalize(self, kind: str, value: str, jurisdiction: str) -> str:
        """The normalised form of ``value``, a national phone number read in ``jurisdiction``;
        ``invalid_lookup`` (422) when it does not normalise."""
        method = self.method(kind)
        _checked(kind, value)
        if method == Normalization.EMAIL:
            try:
                address = validate_email(value.strip(), check_deliverability=False)
            except EmailNotValidError:
                raise _invalid(kind, "is not an e-mail address") from None
            return address.normalized.casefold()
        if method == Normalization.PHONE:
            return phonenumbers.format_number(_phone(kind, value, jurisdiction), _E164)
        if method == Normalization.CASEFOLD:
            return unicodedata.normalize("NFKC", value).casefold().strip()
        return value

    def prepare(self, kind: str, value: str, jurisdiction: str) -> LookupValue:
        normalized = self.normalize(kind, value, jurisdiction)
        return LookupValue(kind, value, normalized, self.blind(kind, normalized))

    def candidates(self, kind: str, value: str) -> dict[str, frozenset[str] | None]:
        """What a value looked up may be, not knowing whose it is: blind value -> the
        jurisdictions whose subjects it may be read for (None: any). A phone number written in
        national form is read in every region where it is a valid number."""
        method = self.method(kind)
        if method != Normalization.PHONE or (isinstance(value, str) and _is_international(value)):
            normalized = self.normalize(kind, value, "ZZ")
            return {self.blind(kind, normalized): None}
        _checked(kind, value)
        found: dict[str, set[str]] = {}
        for region in phonenumbers.SUPPORTED_REGIONS:
            try:
                number = phonenumbers.parse(value, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                e164 = phonenumbers.format_number(number, _E164)
                found.setdefault(self.blind(kind, e164), set()).add(region)
        if not found:
            raise _invalid(kind, "is not a phone number in any region")
        return {blind: frozenset(regions) for blind, regions in found.items()}
