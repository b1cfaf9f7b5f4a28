"""The input rules for what callers name: subject ids, jurisdictions, record collections and
keys. The API, the CLI and the store refuse a bad name with the same ``InvalidInput``.
Patterns apply with ``fullmatch``: ``$`` would let a final newline through."""

from __future__ import annotations

import re

from domicile.shards.errors import InvalidInput
from domicile.shards.policy import is_jurisdiction

_SUBJECT_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
_COLLECTION = re.compile(r"[A-Za-z0-9._-]{1,64}")
_RECORD_KEY = re.compile(r"[A-Za-z0-9._:@-]{1,256}")


def validate_subject_id(subject_id: str) -> None:
    if not _SUBJECT_ID.fullmatch(subject_id):
        raise InvalidInput(
            "invalid_subject_id", "subject_id must be 1-128 characters of [A-Za-z0-9._:@-]"
        )


def validate_jurisdiction(jurisdiction: str) -> None:
    if not is_jurisdiction(jurisdiction):
        raise InvalidInput(
            "invalid_jurisdiction",
            f"{jurisdiction!r} is not an ISO 3166-1 alpha-2 country code (upper case)",
        )


def validate_collection(collection: str) -> None:
    if not _COLLECTION.fullmatch(collection):
        raise InvalidInput(
            "invalid_collection", "collection must be 1-64 characters of [A-Za-z0-9._-]"
        )


def validate_record_address(collection: str, key: str) -> None:
    validate_collection(collection)
    if not _RECORD_KEY.fullmatch(key):
        raise InvalidInput("invalid_key", "record key must be 1-256 characters of [A-Za-z0-9._:@-]")
