"""What both clients' HTTP sessions share: the base URL, the key, the timeout."""

from __future__ import annotations

from typing import Any


def session_options(base_url: str, api_key: str, timeout: float) -> dict[str, Any]:
    return {
        "base_url": base_url.rstrip("/"),
        "headers": {"Authorization": f"Bearer {api_key}", "User-Agent": "domicile-client"},
        "timeout": timeout,
    }
