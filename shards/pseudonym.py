"""Keyed pseudonyms (HMAC-SHA256): the only form in which a subject or record may appear
outside its home region (catalog, caches, audit logs, application logs)."""

from __future__ import annotations

import hashlib
import hmac


class Pseudonymizer:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the pseudonym key must be at least 32 bytes")
        self._key = key

    def _mac(self, *parts: str) -> str:
        # NUL separators: ids cannot contain NUL, so distinct tuples never collide.
        message = "\x00".join(parts).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def subject(self, subject_id: str) -> str:
        return self._mac("subject", subject_id)

    def record(self, subject_id: str, collection: str, key: str) -> str:
        return self._mac("record", subject_id, collection, key)
