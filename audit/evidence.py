"""The evidence statement's figures, computed by replaying signed log entries.

One `LogReplay` per log reads its entries in index order (streamed: it keeps what the shard
holds now, per subject, never the entries), and `figures` joins the logs' results. The pack's
writer and its verifier both compute the figures here, from the same entries, so a verifier
recomputes exactly what the statement claims.

Definitions (docs/auditing.md, "Answering a regulator"):

- A subject is held by a shard from its ``subject.registered`` or ``subject.moved_in`` entry to
  its ``subject.erased`` or ``subject.moved_out`` entry in that shard's log; its records are
  counted from ``record.put`` (version 1: a new record), ``record.deleted`` and the moves'
  ``records``.
- The policy in force in a log at a moment is the one its latest ``policy.changed`` entry
  declares; a held subject is compliant at a moment when that policy permits the log's region
  for its jurisdiction then (a scheduled rule's ``before`` regions until it takes effect).
- A violation period of a log runs while at least one held subject (of the jurisdiction asked
  about) is not compliant. ``compliant_since`` is the end of the last violation period of any
  log, or, without one, the moment from which every log has a policy on record; null while a
  violation period is open or a log declares no policy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from domicile.audit.events import (
    POLICY_CHANGED,
    RECORD_DELETED,
    RECORD_PUT,
    SUBJECT_ERASED,
    SUBJECT_MOVED_IN,
    SUBJECT_MOVED_OUT,
    SUBJECT_REGISTERED,
    rfc3339,
)
from domicile.audit.policy_record import (
    REGION_FACTS,
    Policy,
    effective_times,
    parse_time,
    permitted_regions,
    rule_of,
)

ARRIVALS = (SUBJECT_REGISTERED, SUBJECT_MOVED_IN)
DEPARTURES = (SUBJECT_ERASED, SUBJECT_MOVED_OUT)


@dataclass
class Volumes:
    """Distinct subjects per calendar year (UTC) and kind, across every log."""

    years: dict[str, dict[str, set[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(set))
    )

    def count(self, time: str, kind: str, subject: str) -> None:
        self.years[time[:4]][kind].add(subject)

    def figures(self) -> dict[str, dict[str, int]]:
        kinds = ("subjects_registered", "subjects_erased", "subjects_moved_abroad")
        return {
            year: {kind: len(self.years[year][kind]) for kind in kinds}
            for year in sorted(self.years)
        }


@dataclass
class LogReplay:
    """One log's entries, fed in index order."""

    log: str
    jurisdiction: str | None
    volumes: Volumes
    size: int = 0
    #: pseudonym -> [jurisdiction, records], of the subjects of the jurisdiction held now
    held: dict[str, list[Any]] = field(default_factory=dict)
    policy: Policy | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    policy_changes: list[dict[str, Any]] = field(default_factory=list)
    #: held subjects (of the jurisdiction) the policy in force does not permit here
    unpermitted: set[str] = field(default_factory=set)
    violation_periods: list[dict[str, Any]] = field(default_factory=list)
    holding_since: str | None = None
    _clock: datetime | None = None
    _upcoming: list[datetime] = field(default_factory=list)

    def concerns(self, jurisdiction: str | None) -> bool:
        return self.jurisdiction is None or jurisdiction == self.jurisdiction

    def feed(self, index: int, leaf: bytes) -> None:
        if index != self.size:
            raise ValueError(f"log {self.log}: entry {index} fed out of order")
        self.size += 1
        event = orjson.loads(leaf)
        kind, time = event["event"], event["time"]
        if self._upcoming:
            self._advance(time)
        if kind == RECORD_PUT:  # most entries: a new record counts, a new version does not
            if event.get("version") == 1 and (held := self.held.get(event["subject"])):
                held[1] += 1
        elif kind == POLICY_CHANGED:
            self._declare(index, time, event)
        elif kind in ARRIVALS:
            self._arrival(kind, time, event)
        elif kind in DEPARTURES:
            subject, jurisdiction = event["subject"], event["jurisdiction"]
            self._depart(subject, jurisdiction, time)
            if kind == SUBJECT_ERASED and self.concerns(jurisdiction):
                self.volumes.count(time, "subjects_erased", subject)
        elif kind == RECORD_DELETED and (held := self.held.get(event["subject"])):
            held[1] -= 1

    def _arrival(self, kind: str, time: str, event: Mapping[str, Any]) -> None:
        subject, jurisdiction = event["subject"], event["jurisdiction"]
        self._arrive(subject, jurisdiction, int(event.get("records", 0)), time)
        if not self.concerns(jurisdiction):
            return
        if kind == SUBJECT_REGISTERED:
            self.volumes.count(time, "subjects_registered", subject)
        elif event.get("country") != jurisdiction:
            self.volumes.count(time, "subjects_moved_abroad", subject)

    # -- compliance ------------------------------------------------------------------------------

    def _permitted(self, jurisdiction: str, at: str | datetime) -> bool:
        if self.policy is None:
            return True  # no policy on record yet: not judged (see compliant_since)
        rule = rule_of(self.policy, jurisdiction)
        if rule is None:
            return False
        if "effective" not in rule:  # the common case: no time to parse
            return self.facts["region"] in rule["store_in"]
        moment = parse_time(at) if isinstance(at, str) else at
        return self.facts["region"] in permitted_regions(self.policy, jurisdiction, moment)

    def _mark(self, subject: str, jurisdiction: str, at: str) -> None:
        was_clean = not self.unpermitted
        if self._permitted(jurisdiction, at):
            self.unpermitted.discard(subject)
        else:
            self.unpermitted.add(subject)
        self._period(was_clean, at)

    def _period(self, was_clean: bool, at: str | datetime) -> None:
        moment = at if isinstance(at, str) else rfc3339(at)
        if was_clean and self.unpermitted:
            self.violation_periods.append({"log": self.log, "from": moment, "until": None})
        elif not was_clean and not self.unpermitted:
            self.violation_periods[-1]["until"] = moment

    def _judge_all(self, at: str | datetime) -> None:
        was_clean = not self.unpermitted
        self.unpermitted = {
            subject
            for subject, (jurisdiction, _) in self.held.items()
            if not self._permitted(jurisdiction, at)
        }
        self._period(was_clean, at)

    def _advance(self, to: str | datetime) -> None:
        """Rules that took effect before ``to``: compliance changed then, with no entry."""
        if self._upcoming:
            moment = parse_time(to) if isinstance(to, str) else to
            while self._upcoming and self._upcoming[0] <= moment:
                self._judge_all(self._upcoming.pop(0))
        if isinstance(to, datetime):
            self._clock = to

    def _declare(self, index: int, time: str, event: Mapping[str, Any]) -> None:
        self.policy = event["policy"]
        self.facts = {fact: event.get(fact) for fact in REGION_FACTS}
        self.policy_changes.append(
            {"sha256": event["policy_sha256"], "since": time, "log": self.log, "index": index}
        )
        at = parse_time(time)
        self._upcoming = [t for t in effective_times(self.policy) if t > at]
        self._judge_all(time)

    def _arrive(self, subject: str, jurisdiction: str, records: int, time: str) -> None:
        if not self.concerns(jurisdiction):
            return  # kept only for the jurisdiction asked about: memory follows its subjects
        self.held[subject] = [jurisdiction, records]
        if len(self.held) == 1:
            self.holding_since = time
        self._mark(subject, jurisdiction, time)

    def _depart(self, subject: str, jurisdiction: str, time: str) -> None:
        if self.held.pop(subject, None) is None:
            return
        if not self.held:
            self.holding_since = None
        was_clean = not self.unpermitted
        self.unpermitted.discard(subject)
        self._period(was_clean, time)

    def finish(self, at: datetime) -> None:
        """Bring compliance up to ``at`` (the statement's time)."""
        self._advance(at)

    # -- figures ---------------------------------------------------------------------------------

    def location(self) -> dict[str, Any]:
        held = list(self.held.values())
        permitted = None
        if self.jurisdiction is not None and self.policy is not None and self._clock is not None:
            permitted = self._permitted(self.jurisdiction, self._clock)
        return {
            "shard": self.log,
            **{fact: self.facts.get(fact) for fact in REGION_FACTS},
            "permitted": permitted,
            "subjects": len(held),
            "records": sum(h[1] for h in held),
            "holding_since": self.holding_since,
        }

    def held_counts(self) -> dict[str, tuple[int, int]]:
        """jurisdiction -> (subjects, records) held now: what the shard's tables should hold."""
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for jurisdiction, records in self.held.values():
            counts[jurisdiction][0] += 1
            counts[jurisdiction][1] += records
        return {code: (n[0], n[1]) for code, n in sorted(counts.items())}

    def violations(self) -> list[dict[str, Any]]:
        return [
            {"shard": self.log, "subject": s, "jurisdiction": self.held[s][0]}
            for s in sorted(self.unpermitted)
        ]


def figures(replays: list[LogReplay], volumes: Volumes) -> dict[str, Any]:
    """The statement's computed figures from every log's replay (each finished)."""
    history = sorted(
        (c for r in replays for c in r.policy_changes),
        key=lambda c: (parse_time(c["since"]), c["log"], c["index"]),
    )
    current = history[-1]["sha256"] if history else None
    policy: dict[str, Any] | None = None
    if current is not None:
        latest = max(
            (r for r in replays if r.policy_changes),
            key=lambda r: parse_time(r.policy_changes[-1]["since"]),
        )
        policy = {
            "sha256": current,
            "rules": latest.policy,
            "in_force_since": _in_force_since(replays, current),
        }
    periods = sorted(
        (p for r in replays for p in r.violation_periods),
        key=lambda p: (parse_time(p["from"]), p["log"]),
    )
    return {
        "policy": policy,
        "policy_history": history,
        "locations": [r.location() for r in replays],
        "compliant_since": _compliant_since(replays, periods),
        "violation_periods": periods,
        "violations": [v for r in replays for v in r.violations()],
        "volumes": volumes.figures(),
    }


def _in_force_since(replays: list[LogReplay], sha256: str) -> str | None:
    """Since when every log declares ``sha256``: the latest start of its final run in any log;
    None when a log declares another."""
    starts: list[datetime] = []
    for replay in replays:
        changes = replay.policy_changes
        if not changes or changes[-1]["sha256"] != sha256:
            return None
        run = len(changes) - 1
        while run > 0 and changes[run - 1]["sha256"] == sha256:
            run -= 1
        starts.append(parse_time(changes[run]["since"]))
    return rfc3339(max(starts)) if starts else None


def _compliant_since(replays: list[LogReplay], periods: list[dict[str, Any]]) -> str | None:
    if any(not r.policy_changes for r in replays):
        return None
    if any(p["until"] is None for p in periods):
        return None
    on_record = max(parse_time(r.policy_changes[0]["since"]) for r in replays)
    ends = [parse_time(p["until"]) for p in periods]
    return rfc3339(max([on_record, *ends]))
