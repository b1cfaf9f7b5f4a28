"""Where `audit.verify` reads logs from: a deployment's databases, the HTTP API, or an archive.
None of them needs a server secret; everything they return is checked against the verifier key.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from domicile.audit.archive import (
    CHECKPOINTS,
    ENTRIES,
    ArchiveStore,
    parse_bundle_key,
    split_leaves,
)
from domicile.audit.errors import (
    ArchiveError,
    LogUnavailable,
    MissingNodes,
    NoteError,
    ProofRangeError,
    SourceError,
)
from domicile.audit.note import Verifier
from domicile.audit.store import LogStore

#: Entries per request: the most the HTTP API serves at once.
PAGE = 1000
#: Entries per database read.
DB_PAGE = 10_000


class DatabaseSource:
    """The log stores themselves (a deployment's own databases), read-only: no integration, no
    signing."""

    def __init__(self, logs: Mapping[str, LogStore], location: str) -> None:
        self._logs = dict(logs)
        self.location = location

    async def logs(self) -> list[str]:
        return list(self._logs)

    async def checkpoints(self, log: str) -> list[str]:
        try:
            return [c.note for c in await self._logs[log].checkpoints()]
        except LogUnavailable as exc:
            raise SourceError(str(exc)) from None

    async def leaves(
        self, log: str, start: int, end: int
    ) -> AsyncIterator[Sequence[tuple[int, bytes]]]:
        while start < end:
            try:
                page = await self._logs[log].leaves(start, min(end, start + DB_PAGE))
            except LogUnavailable as exc:
                raise SourceError(str(exc)) from None
            if not page:
                return
            yield page
            start += DB_PAGE

    async def consistency_proof(self, log: str, first: int, second: int) -> list[bytes] | None:
        try:
            return await self._logs[log].consistency_proof(first, second)
        except (ProofRangeError, MissingNodes):  # a proof that fails
            return []


class HttpSource:
    """A domicile server's ``/v1/audit`` API, with an ``audit:read`` key."""

    def __init__(self, url: str, api_key: str | None) -> None:
        self.location = url.rstrip("/")
        self._api_key = api_key

    def _get_sync(self, path: str, query: Mapping[str, int] | None = None) -> bytes:
        url = f"{self.location}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        if not url.startswith(("http://", "https://")):
            raise SourceError(f"{self.location} is not an http(s) URL")
        request = urllib.request.Request(url)  # noqa: S310 (scheme checked above)
        if self._api_key:
            request.add_header("Authorization", f"Bearer {self._api_key}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as exc:
            raise SourceError(f"{url}: HTTP {exc.code}: {_error_message(exc.read())}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise SourceError(f"{self.location} cannot be reached: {exc}") from None

    async def _get(self, path: str, query: Mapping[str, int] | None = None) -> bytes:
        return await asyncio.to_thread(self._get_sync, path, query)

    async def _json(self, path: str, query: Mapping[str, int] | None = None) -> Any:
        try:
            return json.loads(await self._get(path, query))
        except ValueError:
            raise SourceError(f"{self.location}{path} did not return JSON") from None

    async def verifier(self) -> Verifier:
        """The key the server says it signs with: trust on first use only."""
        text = (await self._get("/v1/audit/key")).decode().strip()
        try:
            return Verifier.parse(text)
        except NoteError as exc:
            raise SourceError(f"{self.location} serves a malformed verifier key: {exc}") from None

    async def logs(self) -> list[str]:
        body = await self._json("/v1/audit/logs")
        return [str(entry["log"]) for entry in body["logs"]]

    async def checkpoints(self, log: str) -> list[str]:
        return [(await self._get(f"/v1/audit/logs/{_quote(log)}/checkpoint")).decode()]

    async def leaves(
        self, log: str, start: int, end: int
    ) -> AsyncIterator[list[tuple[int, bytes]]]:
        while start < end:
            entries = await self._json(
                f"/v1/audit/logs/{_quote(log)}/entries",
                {"start": start, "end": min(end, start + PAGE)},
            )
            if not entries:
                return
            yield [(int(e["index"]), base64.b64decode(e["leaf"])) for e in entries]
            start = int(entries[-1]["index"]) + 1

    async def consistency_proof(self, log: str, first: int, second: int) -> list[bytes] | None:
        try:
            body = await self._json(
                f"/v1/audit/logs/{_quote(log)}/proof/consistency",
                {"first": first, "second": second},
            )
        except SourceError:
            return []  # refused: a proof that fails
        return [base64.b64decode(h) for h in body["hashes"]]


def _quote(log: str) -> str:
    return urllib.parse.quote(log, safe="")


def _error_message(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode(errors="replace")


class ArchiveSource:
    """An archive folder or S3 prefix (see `audit.archive`); it holds no proofs, so a failure is
    narrowed down to the range between two archived checkpoints."""

    def __init__(self, store: ArchiveStore) -> None:
        self.store = store
        self.location = store.location

    async def _call(self, method: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(method, *args)
        except OSError as exc:
            raise SourceError(f"{self.location}: {exc}") from None
        except Exception as exc:  # botocore's errors share no base class with OSError
            if type(exc).__module__.startswith(("botocore", "boto3")):
                raise SourceError(f"{self.location}: {exc}") from None
            raise

    async def logs(self) -> list[str]:
        names: list[str] = await self._call(self.store.logs)
        return names

    async def checkpoints(self, log: str) -> list[str]:
        keys = await self._call(self.store.keys, f"{log}/{CHECKPOINTS}/")
        return [(await self._call(self.store.read, key)).decode() for key in keys]

    async def leaves(
        self, log: str, start: int, end: int
    ) -> AsyncIterator[list[tuple[int, bytes]]]:
        for key in await self._call(self.store.keys, f"{log}/{ENTRIES}/"):
            try:
                first, last = parse_bundle_key(key)
            except ArchiveError as exc:
                raise SourceError(str(exc)) from None
            if last <= start:
                continue
            if first >= end:
                return
            bundle = split_leaves(await self._call(self.store.read, key))
            yield [
                (first + offset, leaf)
                for offset, leaf in enumerate(bundle)
                if start <= first + offset < end
            ]

    async def consistency_proof(self, log: str, first: int, second: int) -> list[bytes] | None:
        return None
