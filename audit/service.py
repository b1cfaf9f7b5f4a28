"""The deployment's residency logs (one per shard) behind one signing key at a time:
checkpoints (each signed with the key its log's chain names), key rotations, subject histories,
and the background work of a server (integrating, publishing, archiving)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from domicile.audit.archive import Archiver, ArchiveStore, ArchiveTarget
from domicile.audit.errors import (
    LogUnavailable,
    RotationError,
    SigningKeyUnavailable,
    UnknownLog,
)
from domicile.audit.events import KEY_ROTATED, SYSTEM, Actor, make_leaf
from domicile.audit.keyring import Keyring
from domicile.audit.note import Signer
from domicile.audit.rotation import KeyChain, Rotation, rotation_in
from domicile.audit.store import Entry, IssuedCheckpoint, LogStore, issue_checkpoint

log = logging.getLogger("domicile.audit")

#: How often a server integrates committed entries.
INTEGRATE_EVERY = 0.2
#: At most one background checkpoint per log per interval (requests get one on demand).
PUBLISH_EVERY = 1.0
ARCHIVE_EVERY = 30.0


def key_name(deployment: str) -> str:
    """The verifier key's name: one key signs every log of a deployment."""
    return f"domicile/{deployment}"


@dataclass(frozen=True)
class HistoryEntry:
    log: str
    entry: Entry
    proof: list[bytes]  # inclusion proof against the log's checkpoint in the same answer


#: How long shutdown waits for a round of background work before cancelling it.
STOP_GRACE = 5.0


async def _pause(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` or until stopping; True when stopping."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
    return stopping.is_set()


class AuditService:
    def __init__(
        self,
        logs: Iterable[LogStore],
        deployment: str,
        keyring: Keyring,
        archive_stores: Mapping[str, ArchiveStore] | None = None,
        bundle_size: int = 1024,
    ) -> None:
        """``archive_stores`` maps a region to where its logs are archived."""
        self.deployment = deployment
        self.keyring = keyring
        self.logs = {store.name: store for store in logs}
        stores = archive_stores or {}
        targets = {
            name: ArchiveTarget(store, stores[store.site.region])
            for name, store in self.logs.items()
            if store.site.region in stores
        }
        self.archiver = Archiver(targets, self.issue, bundle_size) if targets else None
        self._published: dict[str, tuple[int, float]] = {}
        self._failing: set[str] = set()
        self._chained: set[str] = set()  # logs known to follow the deployment's chain of keys

    def origin(self, name: str) -> str:
        return f"{key_name(self.deployment)}/{name}"

    @property
    def signer(self) -> Signer:
        """The deployment's current key: it signs reports, and the checkpoints of every log
        that has no rotation entry naming another."""
        return self.keyring.current

    def log(self, name: str) -> LogStore:
        try:
            return self.logs[name]
        except KeyError:
            raise UnknownLog(name) from None

    async def checkpoint(self, name: str) -> IssuedCheckpoint:
        """A checkpoint covering every entry committed before the call."""
        store = self.log(name)
        await self._follow_chain(store)
        size = await store.integrate()
        latest = await store.latest_checkpoint()
        if latest is not None and latest.size >= size:
            return latest
        issued = await self.issue(store, size)
        self._published[name] = (size, time.monotonic())
        return issued

    async def _follow_chain(self, store: LogStore) -> None:
        """A log nothing has signed yet (a shard added after a rotation) first gets the
        deployment's rotations, so that a verifier holding the first key can follow it too."""
        if store.name in self._chained:
            return
        if await store.latest_checkpoint() is None:
            history = await self._history()
            while True:
                held = [r for _, leaf in await store.key_rotations() if (r := rotation_in(leaf))]
                steps = [(r.old, r.new) for r in history[: len(held)]]
                if len(held) >= len(history) or [(r.old, r.new) for r in held] != steps:
                    break
                leaf = make_leaf(store.site, KEY_ROTATED, SYSTEM, **history[len(held)].fields())
                await store.append_key_rotation(leaf, len(held))  # or another process did
        self._chained.add(store.name)

    async def _history(self) -> list[Rotation]:
        """The rotations that led to the current key, as the logs that rotated hold them."""
        current = self.signer.verifier()
        for store in self.logs.values():
            try:
                found = [r for _, leaf in await store.key_rotations() if (r := rotation_in(leaf))]
            except LogUnavailable:
                continue
            if found and found[-1].new == current:
                return found
        return []

    async def key_chain(self, store: LogStore) -> KeyChain:
        """The log's keys, from its integrated rotation entries (each verified)."""
        rotations = [
            (index, rotation)
            for index, leaf in await store.key_rotations()
            if index is not None and (rotation := rotation_in(leaf)) is not None
        ]
        return KeyChain.of(self.signer.verifier(), rotations)

    async def issue(self, store: LogStore, size: int) -> IssuedCheckpoint:
        """Sign and keep the checkpoint of the tree at ``size`` with the key the log's chain
        names for that size. When that key is no longer held, a checkpoint kept already
        stands; none is `SigningKeyUnavailable`."""
        key = (await self.key_chain(store)).key_at(size)
        signer = self.keyring.get(key)
        if signer is None:
            kept = await store.checkpoint_at(size)
            if kept is not None:
                return kept
            raise SigningKeyUnavailable(store.name, key.vkey)
        return await issue_checkpoint(store, size, self.origin(store.name), signer)

    async def rotate(self, name: str, rotation: Rotation, actor: Actor) -> int:
        """Hand log ``name`` over to ``rotation.new``: what it holds is checkpointed with the
        old key first (archive bundles included: no key held could sign them later), then the
        rotation entry is appended and a checkpoint signed with the new key, whose size is
        returned. A log that has the rotation already is only checkpointed."""
        store = self.log(name)
        while True:
            held = [r for _, leaf in await store.key_rotations() if (r := rotation_in(leaf))]
            if held and held[-1].new == rotation.new:
                break
            current = held[-1].new if held else self.signer.verifier()
            if current != rotation.old:
                raise RotationError(f"log {name} is signed with {current.vkey}, not the old key")
            size = await store.integrate()
            await self.issue(store, size)
            if self.archiver is not None and name in self.archiver.targets:
                await self.archiver.sign_bundles(name, size)
            leaf = make_leaf(store.site, KEY_ROTATED, actor, **rotation.fields())
            if await store.append_key_rotation(leaf, len(held)):
                break
        size = await store.integrate()
        return (await self.issue(store, size)).size

    async def subject_history(
        self, pseudonym: str
    ) -> tuple[list[HistoryEntry], dict[str, IssuedCheckpoint]]:
        """Every entry about a subject in every log, each with an inclusion proof against that
        log's checkpoint (which is returned too)."""

        async def one(name: str) -> tuple[str, IssuedCheckpoint, list[HistoryEntry]]:
            checkpoint = await self.checkpoint(name)
            store = self.logs[name]
            found = await store.subject_entries(pseudonym, checkpoint.size)
            proven = [
                HistoryEntry(name, e, await store.inclusion_proof(e.index, checkpoint.size))
                for e in found
            ]
            return name, checkpoint, proven

        answers = await asyncio.gather(*(one(name) for name in self.logs))
        entries = [entry for _, _, found in answers for entry in found]
        checkpoints = {name: checkpoint for name, checkpoint, found in answers if found}
        return entries, checkpoints

    # -- background work of a server -----------------------------------------------------------

    async def _tick(self, name: str, store: LogStore) -> None:
        await self._follow_chain(store)
        if await store.has_pending():
            await store.integrate()
        published_size, at = self._published.get(name, (-1, 0.0))
        if time.monotonic() - at < PUBLISH_EVERY:
            return
        size = await store.size()
        if size != published_size:
            await self.issue(store, size)
            self._published[name] = (size, time.monotonic())

    async def tick(self) -> None:
        """Integrate every log; publish a checkpoint where a log grew (at most once a second)."""
        for name, store in self.logs.items():
            try:
                await self._tick(name, store)
            except Exception as exc:  # a shard outage must not stop the other logs
                if name not in self._failing:  # once per outage, not every tick
                    log.warning("audit log %s: background integration failed: %s", name, exc)
                    self._failing.add(name)
                continue
            if name in self._failing:
                log.info("audit log %s: background integration resumed", name)
                self._failing.discard(name)

    async def _integrate_forever(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            await self.tick()
            await _pause(stopping, INTEGRATE_EVERY)

    async def _archive_forever(self, archiver: Archiver, stopping: asyncio.Event) -> None:
        # Its own task: a slow or unreachable S3 must not hold up integration.
        while not await _pause(stopping, ARCHIVE_EVERY):
            await archiver.archive_all()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the background work while the context is open (a server's lifespan)."""
        stopping = asyncio.Event()
        tasks = [
            asyncio.create_task(self._integrate_forever(stopping), name="domicile-audit-integrate")
        ]
        if self.archiver is not None:
            tasks.append(
                asyncio.create_task(
                    self._archive_forever(self.archiver, stopping), name="domicile-audit-archive"
                )
            )
        try:
            yield
        finally:
            # Let the loops finish their round rather than cancel them mid-transaction: a
            # cancelled SQLite write can leave its lock behind until the connection is collected.
            stopping.set()
            _, late = await asyncio.wait(tasks, timeout=STOP_GRACE)
            for task in late:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
