"""Residency topology: regions, shards and the policy that says which regions may hold whom.

Pure data, built once from the configuration. "Where a subject's data may live" is answered
here; "which shard holds it now" is the directory's business (see ``shards.directory``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

import pycountry

from domicile.shards.tls import BY_HOST, Tls

#: Every officially assigned ISO 3166-1 alpha-2 code.
ISO_CODES: frozenset[str] = frozenset(c.alpha_2 for c in pycountry.countries)

#: The 27 member states of the European Union, available as the group ``EU``.
EU_MEMBER_STATES: frozenset[str] = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "HR",
        "CY",
        "CZ",
        "DK",
        "EE",
        "FI",
        "FR",
        "DE",
        "GR",
        "HU",
        "IE",
        "IT",
        "LV",
        "LT",
        "LU",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SK",
        "SI",
        "ES",
        "SE",
    ]
)

BUILTIN_GROUPS: Mapping[str, frozenset[str]] = {"EU": EU_MEMBER_STATES}

DEFAULT_RULE = "default"

#: Defaults of a database's ``connect_timeout`` and ``statement_timeout`` (seconds): a silent
#: server holds a request a few seconds at most.
CONNECT_TIMEOUT = 3.0
STATEMENT_TIMEOUT = 10.0


def is_jurisdiction(code: str) -> bool:
    return code in ISO_CODES


@dataclass(frozen=True)
class Region:
    name: str
    country: str
    provider: str | None = None
    address: str | None = None
    legal_entity: str | None = None


@dataclass(frozen=True)
class ShardSpec:
    name: str
    region: str
    url: str
    #: False while a shard is being drained: it keeps serving its subjects but receives no new ones.
    accepts_new_subjects: bool = True
    #: Seconds (PostgreSQL): to open a connection, and for one statement.
    connect_timeout: float = CONNECT_TIMEOUT
    statement_timeout: float = STATEMENT_TIMEOUT
    tls: Tls = BY_HOST


@dataclass(frozen=True)
class Rule:
    """One policy entry: the regions permitted for a jurisdiction (or group, or ``default``).

    A rule may take effect later: until ``effective``, new subjects are placed in ``store_in``
    and existing ones may also stay in ``before``; from ``effective`` on, only ``store_in``
    holds. ``store_in`` is where ``comply`` moves subjects either way."""

    key: str
    store_in: tuple[str, ...]
    law: str | None = None
    effective: datetime | None = None
    before: tuple[str, ...] = ()

    def scheduled(self, now: datetime) -> bool:
        """Whether the rule is yet to take effect at ``now``."""
        return self.effective is not None and now < self.effective

    def regions_at(self, now: datetime) -> tuple[str, ...]:
        """The regions a subject's data may be held in at ``now``."""
        if self.scheduled(now):
            return tuple(dict.fromkeys((*self.store_in, *self.before)))
        return self.store_in


@dataclass(frozen=True)
class Topology:
    regions: Mapping[str, Region]
    shards: Mapping[str, ShardSpec]
    rules: Mapping[str, Rule]
    groups: Mapping[str, frozenset[str]] = field(default_factory=lambda: dict(BUILTIN_GROUPS))

    def rule_for(self, jurisdiction: str) -> Rule | None:
        """The rule that governs ``jurisdiction``: its own, else its group's, else ``default``."""
        own = self.rules.get(jurisdiction)
        if own is not None:
            return own
        for group, members in self.groups.items():
            if jurisdiction in members and group in self.rules:
                return self.rules[group]
        return self.rules.get(DEFAULT_RULE)

    def permitted_regions(self, jurisdiction: str) -> tuple[str, ...]:
        """The rule's target regions (``store_in``): where new subjects are placed and where
        ``comply`` moves the others, whether or not the rule is in effect yet."""
        rule = self.rule_for(jurisdiction)
        return rule.store_in if rule is not None else ()

    def permitted_shards(self, jurisdiction: str) -> tuple[ShardSpec, ...]:
        regions = set(self.permitted_regions(jurisdiction))
        return tuple(s for s in self.shards.values() if s.region in regions)

    def is_target(self, jurisdiction: str, shard: str) -> bool:
        """Whether ``shard`` is in the rule's target regions (what ``comply`` aims at)."""
        # Asked on every write: a set lookup rather than resolving the rule each time.
        spec = self.shards.get(shard)
        return spec is not None and jurisdiction in self._held_by_region[spec.region]

    def is_permitted(self, jurisdiction: str, shard: str, now: datetime | None = None) -> bool:
        """Whether ``shard`` may hold the jurisdiction's data at ``now`` (default: now): its
        target regions, and a scheduled rule's ``before`` regions until it takes effect."""
        if self.is_target(jurisdiction, shard):
            return True
        if not self.scheduled_rules:
            return False
        rule = self.rule_for(jurisdiction)
        spec = self.shards.get(shard)
        return (
            rule is not None
            and spec is not None
            and rule.scheduled(now or datetime.now(UTC))
            and spec.region in rule.before
        )

    @cached_property
    def scheduled_rules(self) -> tuple[Rule, ...]:
        """Rules with an effective time (past or future), earliest first."""
        timed = [r for r in self.rules.values() if r.effective is not None]
        return tuple(sorted(timed, key=lambda r: (r.effective, r.key)))

    def next_change(self, now: datetime) -> datetime | None:
        """When the earliest rule yet to take effect does."""
        upcoming = [r.effective for r in self.scheduled_rules if r.scheduled(now)]
        return min((t for t in upcoming if t is not None), default=None)

    @cached_property
    def _held_by_region(self) -> Mapping[str, frozenset[str]]:
        held: dict[str, set[str]] = {name: set() for name in self.regions}
        for code in ISO_CODES:
            for region in self.permitted_regions(code):
                held[region].add(code)
        return {name: frozenset(codes) for name, codes in held.items()}

    def jurisdictions_for_shard(self, shard: str, now: datetime | None = None) -> frozenset[str]:
        """Every jurisdiction a shard may hold at ``now``: what its residency guard lets in."""
        region = self.shards[shard].region
        held = set(self._held_by_region[region])
        when = now or datetime.now(UTC)
        for code in ISO_CODES - held if self.scheduled_rules else ():
            rule = self.rule_for(code)
            if rule is not None and rule.scheduled(when) and region in rule.before:
                held.add(code)
        return frozenset(held)

    def region_of(self, shard: str) -> Region:
        return self.regions[self.shards[shard].region]


def group_members(groups: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    merged = dict(BUILTIN_GROUPS)
    merged.update({name: frozenset(codes) for name, codes in groups.items()})
    return merged
