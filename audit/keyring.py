"""The signing keys a process holds: the deployment's current key and, while a rotation is under
way, the next. Which of them signs a checkpoint is the log's to say (its chain of keys,
`audit.rotation`), so a process never signs a log with a key the log has rotated away from."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

from domicile.audit.note import Signer, Verifier


class Keyring:
    def __init__(self, load: Callable[[], Sequence[Signer]], stamp: Callable[[], Hashable]) -> None:
        """``load`` reads the keys, current first; ``stamp`` is a cheap fingerprint of where
        they are kept (file times): when it changes, another process rotated, and the keys are
        read again."""
        self._load = load
        self._stamp = stamp
        self._seen = stamp()
        self._signers = list(load())

    def _fresh(self) -> list[Signer]:
        seen = self._stamp()
        if seen != self._seen:
            self._signers, self._seen = list(self._load()), seen
        return self._signers

    @property
    def current(self) -> Signer:
        return self._fresh()[0]

    def get(self, key: Verifier) -> Signer | None:
        return next((s for s in self._fresh() if s.verifier() == key), None)
