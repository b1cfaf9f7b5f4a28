"""A process killed (SIGKILL) between claiming a lookup value in the catalog and activating it:
the value is never blocked. Killed before its home shard's write committed, or in a registration
that never completed, the claim is taken over by the next claimant at once (its owner is dead)
and whatever the dead request wrote is removed; killed after the write of a subject that exists,
the write stands and the claim is activated for that subject."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from domicile.router.runtime import open_runtime
from domicile.shards.errors import LookupTaken, SubjectNotFound
from tests.support.deployment import Deployment, query_shard
from tests.support.shards import ACTOR

pytestmark = pytest.mark.anyio

#: Runs one registration or lookup change in its own process and SIGKILLs that process at
#: ``step``: inside the home shard's transaction (before it commits), once it has committed but
#: before the registration's placement is activated, or before the claim's activation.
KILLED_AT = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path

    from domicile.router.config import load_settings
    from domicile.router.runtime import open_runtime
    from domicile.shards import directory, lookup_index, store
    from domicile.audit.events import Actor

    config, step, action, subject, jurisdiction, value = sys.argv[1:]

    async def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if step == "shard-write":
        store.write_lookups = die
    elif step == "release":
        lookup_index.LookupIndex.release = die
    elif step == "placement":
        directory.Directory.activate = die
    else:
        lookup_index.LookupIndex.activate_all = die

    async def main():
        async with open_runtime(load_settings(Path(config))) as rt:
            if action == "register":
                await rt.store.register(subject, jurisdiction, Actor(), {"email": value})
            elif action == "erase":
                await rt.store.erase(subject, Actor())
            else:
                await rt.store.set_lookup(subject, "email", value, Actor())

    asyncio.run(main())
    """
)


def killed(dep: Deployment, step: str, action: str, subject: str, value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", KILLED_AT, str(dep.config), step, action, subject, "RU", value],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()


@pytest.mark.parametrize(
    ("step", "action"),
    [("shard-write", "register"), ("shard-write", "set"), ("placement", "register")],
)
async def test_a_crashed_claim_leaves_the_value_claimable(
    deployment: Deployment, step: str, action: str
) -> None:
    settings = deployment.settings()
    if action == "set":
        async with open_runtime(settings) as rt:
            await rt.store.register("victim", "RU", ACTOR)
    killed(deployment, step, action, "victim", "crash@example.ru")

    async with open_runtime(settings) as rt:
        await rt.store.register("heir", "DE", ACTOR, {"email": "Crash@example.ru"})
        found = await rt.lookups.find("email", "crash@example.ru")
        assert (found.subject_id, found.shard) == ("heir", "eu-fra-1")
    # What the killed request wrote on its shard, if anything, went with it.
    assert await query_shard(deployment, "ru-msk-1", "SELECT count(*) FROM lookups") == [(0,)]


@pytest.mark.parametrize("action", ["register", "set"])
async def test_a_write_that_committed_before_the_crash_stands(
    deployment: Deployment, action: str
) -> None:
    settings = deployment.settings()
    if action == "set":
        async with open_runtime(settings) as rt:
            await rt.store.register("victim", "RU", ACTOR)
    killed(deployment, "activation", action, "victim", "kept@example.ru")

    async with open_runtime(settings) as rt:
        with pytest.raises(LookupTaken):
            await rt.store.register("heir", "DE", ACTOR, {"email": "kept@example.ru"})
        assert (await rt.lookups.find("email", "kept@example.ru")).subject_id == "victim"


async def test_an_erasure_killed_before_the_catalog_frees_the_value(deployment: Deployment) -> None:
    settings = deployment.settings()
    async with open_runtime(settings) as rt:
        await rt.store.register("victim", "RU", ACTOR, {"email": "gone@example.ru"})
    killed(deployment, "release", "erase", "victim", "-")

    async with open_runtime(settings) as rt:
        with pytest.raises(SubjectNotFound):
            await rt.lookups.find("email", "gone@example.ru")
        await rt.store.register("heir", "DE", ACTOR, {"email": "gone@example.ru"})
        assert (await rt.lookups.find("email", "gone@example.ru")).subject_id == "heir"
        assert await rt.store.erase("victim", ACTOR) == 0  # the retry completes the erasure
        with pytest.raises(SubjectNotFound):
            await rt.store.placement("victim")
        assert (await rt.lookups.find("email", "gone@example.ru")).subject_id == "heir"
