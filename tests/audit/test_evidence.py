"""The evidence statement's figures from entries alone: holdings, compliance under a policy that
changes and a rule that takes effect later, volumes per year."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from domicile.audit.events import (
    POLICY_CHANGED,
    SUBJECT_ERASED,
    SUBJECT_MOVED_IN,
    SUBJECT_MOVED_OUT,
    SUBJECT_REGISTERED,
    SYSTEM,
    LogSite,
    make_leaf,
)
from domicile.audit.evidence import LogReplay, Volumes, figures
from domicile.audit.policy_record import policy_sha256

EU = LogSite("eu-fra-1", "eu-fra", "DE")
RU = LogSite("ru-msk-1", "ru-msk", "RU")
ABROAD_OK = {"RU": {"store_in": ["eu-fra"]}, "default": {"store_in": ["eu-fra"]}}
SCHEDULED = {
    "RU": {"store_in": ["ru-msk"], "effective": "2025-06-01T00:00:00Z", "before": ["eu-fra"]},
    "default": {"store_in": ["eu-fra"]},
}


def at(day: str) -> datetime:
    return datetime.fromisoformat(f"{day}T00:00:00+00:00")


def declared(site: LogSite, policy: dict[str, Any], day: str) -> bytes:
    facts = {"provider": None, "address": None, "legal_entity": None}
    return make_leaf(
        site,
        POLICY_CHANGED,
        SYSTEM,
        time=at(day),
        keep_null=frozenset(facts),
        policy=policy,
        policy_sha256=policy_sha256(policy),
        **facts,
    )


def event(site: LogSite, kind: str, subject: str, day: str, **fields: Any) -> bytes:
    return make_leaf(site, kind, SYSTEM, subject=subject, jurisdiction="RU", time=at(day), **fields)


def replay(site: LogSite, leaves: list[bytes], volumes: Volumes) -> LogReplay:
    log = LogReplay(site.log, "RU", volumes)
    for index, leaf in enumerate(leaves):
        log.feed(index, leaf)
    log.finish(at("2026-01-01"))
    return log


def test_a_rule_taking_effect_opens_a_violation_period_that_a_move_closes() -> None:
    volumes = Volumes()
    eu = replay(
        EU,
        [
            declared(EU, SCHEDULED, "2024-01-01"),
            event(EU, SUBJECT_REGISTERED, "p1", "2024-02-01"),
            event(EU, SUBJECT_MOVED_OUT, "p1", "2025-07-01", to_shard="ru-msk-1"),
        ],
        volumes,
    )
    ru = replay(
        RU,
        [
            declared(RU, SCHEDULED, "2024-01-01"),
            event(RU, SUBJECT_MOVED_IN, "p1", "2025-06-30", records=2, from_shard="eu-fra-1"),
        ],
        volumes,
    )
    stated = figures([eu, ru], volumes)
    assert stated["violation_periods"] == [
        {
            "log": "eu-fra-1",
            "from": "2025-06-01T00:00:00.000000Z",
            "until": "2025-07-01T00:00:00.000000Z",
        }
    ]
    assert stated["compliant_since"] == "2025-07-01T00:00:00.000000Z"
    assert stated["violations"] == []
    locations = {loc["shard"]: loc for loc in stated["locations"]}
    assert (locations["ru-msk-1"]["subjects"], locations["ru-msk-1"]["records"]) == (1, 2)
    assert locations["ru-msk-1"]["holding_since"] == "2025-06-30T00:00:00.000000Z"
    assert locations["eu-fra-1"]["holding_since"] is None
    assert (locations["ru-msk-1"]["permitted"], locations["eu-fra-1"]["permitted"]) == (True, False)
    assert stated["volumes"] == {
        "2024": {"subjects_registered": 1, "subjects_erased": 0, "subjects_moved_abroad": 0},
    }  # the move home is not abroad: 2025 counts nothing


def test_a_new_policy_makes_held_subjects_violations_until_they_leave() -> None:
    volumes = Volumes()
    eu = replay(
        EU,
        [
            declared(EU, ABROAD_OK, "2024-01-01"),
            event(EU, SUBJECT_REGISTERED, "p1", "2024-02-01"),
            event(EU, SUBJECT_REGISTERED, "p2", "2024-02-02"),
            declared(EU, SCHEDULED | {"RU": {"store_in": ["ru-msk"]}}, "2025-01-01"),
            event(EU, SUBJECT_ERASED, "p1", "2025-02-01", records=0),
        ],
        volumes,
    )
    stated = figures([eu], volumes)
    assert stated["compliant_since"] is None
    assert stated["violations"] == [{"shard": "eu-fra-1", "subject": "p2", "jurisdiction": "RU"}]
    assert [c["sha256"] for c in stated["policy_history"]] == [
        policy_sha256(ABROAD_OK),
        stated["policy"]["sha256"],
    ]
    assert stated["policy"]["in_force_since"] == "2025-01-01T00:00:00.000000Z"
    assert stated["volumes"]["2025"]["subjects_erased"] == 1


def test_moves_abroad_and_entries_out_of_order() -> None:
    volumes = Volumes()
    replay(
        EU,
        [
            declared(EU, ABROAD_OK, "2024-01-01"),
            event(EU, SUBJECT_MOVED_IN, "p1", "2024-03-01", records=1, from_shard="ru-msk-1"),
        ],
        volumes,
    )
    assert volumes.figures()["2024"]["subjects_moved_abroad"] == 1
    log = LogReplay("eu-fra-1", None, Volumes())
    with pytest.raises(ValueError, match="out of order"):
        log.feed(1, declared(EU, ABROAD_OK, "2024-01-01"))
