"""Keyed pseudonyms (HMAC-SHA256): the only form in which a subject or record may appear
outside its home region (catalog, caches, audit logs, application logs)."""

from __future__ import annotations

import hashlib
import hmac


class Pseudonymizer:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the pseudonym key must be at least 32 bytes")
        # Keyed once: copying a keyed HMAC costs a third less than keying a new one, and every
        # write computes two pseudonyms, a move one per record.
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def _mac(self, *parts: str) -> str:
        # NUL separators: ids cannot contain NUL, so distinct tuples never collide.
        mac = self._keyed.copy()
        mac.update("\x00".join(parts).encode())
        return mac.hexdigest()

    def subject(self, subject_id: str) -> str:
        return self._mac("subject", subject_id)

    def record(self, subject_id: str, collection: str, key: str) -> str:
        return self._mac("record", subject_id, collection, key)
