"""When to send a call again: on 503 with ``Retry-After`` (a shard restarting, a subject mid-move),
after at least the time the server asked for, growing exponentially while the answer stays the
same. Every call of this client is safe to repeat (``domicile.client.calls``); a 503 without
``Retry-After`` is not the API's own answer (a proxy's, say) and is raised at once."""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

from domicile.client.errors import retry_after


@dataclass(frozen=True)
class Retry:
    """``attempts``: tries in all, the first included; ``backoff``: the first wait when the
    server asks for less, doubled at each further try; ``max_wait``: the longest single wait,
    beyond which the error is raised instead (its ``retry_after`` says how long to wait)."""

    attempts: int = 5
    backoff: float = 0.25
    max_wait: float = 30.0

    def delay(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before try ``attempt + 1``, or None to give up with this answer."""
        if response.status_code != 503 or attempt >= self.attempts:
            return None
        asked = retry_after(response.headers)
        if asked is None:
            return None
        # Up to a tenth more, so that clients turned away together do not return together.
        wait = max(asked, self.backoff * 2 ** (attempt - 1)) * (1 + random.random() / 10)
        return wait if wait <= self.max_wait else None


#: Five tries over about 4 s when the server asks for a second each time: a move's write pause
#: and a shard's reconnect fit in it.
DEFAULT_RETRY = Retry()
#: No retries: the first answer is the result.
NO_RETRY = Retry(attempts=1)
