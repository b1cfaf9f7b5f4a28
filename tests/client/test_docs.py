"""The client's examples in docs/client.md and the README's tour, run against a real server:
what they print is what their comments say."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import textwrap
from pathlib import Path

import pytest

from tests.client.conftest import Target

REPO = Path(__file__).parents[2]


def _examples(doc: str = "docs/client.md") -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / doc).read_text(), re.S)


def _said(example: str) -> list[str]:
    """The comments of the lines that print: what the example says they print."""
    return [
        line.split("# ", 1)[1].strip()
        for line in example.splitlines()
        if "print(" in line and "# " in line
    ]


def _run(code: str, key: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {"KEY": key})  # noqa: S102 (the project's own documentation)
    return out.getvalue()


def test_the_sync_example(target: Target, admin_key: str) -> None:
    example = _examples()[0].replace("http://127.0.0.1:8000", target.url)
    printed = _run(example, admin_key).splitlines()
    said = _said(example)
    assert said == [p for p in printed if p in said]  # each, in order
    assert len(said) == 3


def test_the_readme_tour(target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    [example] = [e for e in _examples("README.md") if "domicile.client" in e]
    monkeypatch.setenv(
        "SERVICE_KEY", target.server.key("subjects:write", "records:read", "records:write")
    )
    printed = _run(example.replace("http://localhost:8000", target.url), "").splitlines()
    assert printed == ["main 2 {'city': 'Kazan'}", *_said(example)]


def test_the_async_example(target: Target, admin_key: str) -> None:
    example = _examples()[1].replace("http://127.0.0.1:8000", target.url)
    wrapped = "async def main():\n" + textwrap.indent(example, "    ")
    namespace: dict[str, object] = {"KEY": admin_key}
    exec(wrapped, namespace)  # noqa: S102 (the project's own documentation)
    asyncio.run(namespace["main"]())  # type: ignore[operator]
