"""Every error class of every package has its answer (HTTP status, CLI exit code), so no request
ends in a 500 and no command in a traceback because an error was forgotten."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

from domicile.audit.errors import AuditError
from domicile.router.errors import ANSWERS, ApiError, RouterError, answer_of
from domicile.shards.errors import DomicileError

PACKAGES = ("domicile.router", "domicile.shards", "domicile.audit")
BASES = (DomicileError, AuditError, RouterError)


def _every_error() -> list[type[BaseException]]:
    # Importing every module defines every subclass, wherever it was written.
    for name in PACKAGES:
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, f"{name}."):
            if not module.name.endswith(".__main__"):  # running it is what it does
                importlib.import_module(module.name)
    found: list[type[BaseException]] = []
    todo: list[type[BaseException]] = list(BASES)
    while todo:
        kind = todo.pop()
        found.append(kind)
        todo.extend(kind.__subclasses__())
    return found


ERRORS = [kind for kind in _every_error() if kind not in BASES and kind is not ApiError]


@pytest.mark.parametrize("error", ERRORS, ids=lambda kind: f"{kind.__module__}.{kind.__name__}")
def test_every_error_has_an_answer(error: type[BaseException]) -> None:
    answer = answer_of(error)
    assert answer is not None, f"{error.__name__} is missing from router.errors.ANSWERS"
    assert answer.exit_code in (1, 2)
    assert 400 <= answer.status < 600


def test_the_bases_have_no_answer_of_their_own() -> None:
    assert not set(BASES) & set(ANSWERS)
