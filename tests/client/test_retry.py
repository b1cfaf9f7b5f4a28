"""Retries on 503 with ``Retry-After``: waiting at least what the server asks, growing while the
answer stays the same, giving up with the error's class; and against a real server, a write
that meets a subject mid-move goes through once the move's pause ends."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from domicile import client as dc
from tests.client.conftest import Target

QUICK = dc.Retry(attempts=4, backoff=0.01, max_wait=5)
PLACED = {"subject_id": "s", "jurisdiction": "RU", "region": "ru-msk", "country": "RU"}


def answers(
    *responses: httpx.Response,
) -> tuple[list[httpx.Request], Callable[..., httpx.Response]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0)

    return seen, handler


def moving(retry_after: str | None = "0") -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {"error": {"code": "subject_moving", "message": "moving"}}
    return httpx.Response(503, json=body, headers=headers)


def ok() -> httpx.Response:
    return httpx.Response(200, json={**PLACED, "shard": "ru-msk-1"})


def test_retries_until_an_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    seen, handler = answers(moving("1"), moving("1"), ok())
    with dc.Client(
        "http://domicile", "k", retry=QUICK, transport=httpx.MockTransport(handler)
    ) as c:
        assert c.placement("s").shard == "ru-msk-1"
    assert len(seen) == 3
    assert len(waits) == 2
    assert all(1 <= w <= 1.1 for w in waits)  # Retry-After, honoured


def test_backoff_grows_past_a_short_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    retry = dc.Retry(attempts=4, backoff=0.5, max_wait=5)
    seen, handler = answers(moving("0"), moving("0"), moving("0"), moving("0"))
    with (
        dc.Client("http://domicile", "k", retry=retry, transport=httpx.MockTransport(handler)) as c,
        pytest.raises(dc.SubjectMoving) as gave_up,
    ):
        c.put_record("s", "c", "k", {})
    assert len(seen) == 4
    assert [round(w, 1) for w in waits] == pytest.approx([0.5, 1.0, 2.0], abs=0.2)
    assert (gave_up.value.status, gave_up.value.retry_after) == (503, 0.0)


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [
        (503, None),  # not the API's own answer: no promise that a retry helps
        (503, "60"),  # longer than max_wait: the caller decides
        (500, "0"),
    ],
)
def test_what_is_not_retried(status: int, retry_after: str | None) -> None:
    first = moving(retry_after)
    first.status_code = status
    seen, handler = answers(first, ok())
    with (
        dc.Client("http://domicile", "k", retry=QUICK, transport=httpx.MockTransport(handler)) as c,
        pytest.raises(dc.ApiError),
    ):
        c.placement("s")
    assert len(seen) == 1


def test_no_retry() -> None:
    seen, handler = answers(moving("0"), ok())
    transport = httpx.MockTransport(handler)
    c = dc.Client("http://domicile", "k", retry=dc.NO_RETRY, transport=transport)
    with c, pytest.raises(dc.SubjectMoving):
        c.placement("s")
    assert len(seen) == 1


@pytest.mark.anyio
async def test_the_async_client_retries_too() -> None:
    seen, handler = answers(moving("0"), moving("0"), ok())
    transport = httpx.MockTransport(handler)
    async with dc.AsyncClient("http://domicile", "k", retry=QUICK, transport=transport) as c:
        assert (await c.placement("s")).shard == "ru-msk-1"
    assert len(seen) == 3


def _pause_writes(target: Target, subject: str, seconds: float) -> threading.Timer:
    """Fence the subject as a move does during its write pause, and lift it after ``seconds``."""
    target.set_fence("ru-msk-1", subject, "moving_out")
    timer = threading.Timer(seconds, target.set_fence, ("ru-msk-1", subject, "home"))
    timer.start()
    return timer


def test_a_write_waits_out_a_move(target: Target, admin_key: str, subject: str) -> None:
    with dc.Client(target.url, api_key=admin_key) as c:
        c.register(subject, "RU")
        c.put_record(subject, "profile", "main", {"v": 1})

        with dc.Client(target.url, api_key=admin_key, retry=dc.NO_RETRY) as impatient:
            target.set_fence("ru-msk-1", subject, "moving_out")
            with pytest.raises(dc.SubjectMoving) as paused:
                impatient.put_record(subject, "profile", "main", {"v": 2})
            assert (paused.value.status, paused.value.retry_after) == (503, 1.0)
            assert c.get_record(subject, "profile", "main").data == {"v": 1}  # reads go on

        timer = _pause_writes(target, subject, 1.5)
        started = time.monotonic()
        meta = c.put_record(subject, "profile", "main", {"v": 2})
        timer.join()
        assert time.monotonic() - started >= 1.0
        assert meta.version == 2
        assert c.get_record(subject, "profile", "main").data == {"v": 2}


@pytest.mark.anyio
async def test_an_async_write_waits_out_a_move(
    target: Target, admin_key: str, subject: str
) -> None:
    async with dc.AsyncClient(target.url, api_key=admin_key) as c:
        await c.register(subject, "RU")
        timer = await asyncio.to_thread(_pause_writes, target, subject, 1.5)
        meta = await c.put_record(subject, "profile", "main", {"v": 1})
        timer.join()
        assert meta.version == 1
