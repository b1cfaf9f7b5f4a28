"""Residency topology: regions, shards and the policy that says which regions may hold whom.

Pure data, built once from the configuration. "Where a subject's data may live" is answered
here; "which shard holds it now" is the directory's business (see ``shards.directory``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import pycountry

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


@dataclass(frozen=True)
class Rule:
    """One policy entry: the regions permitted for a jurisdiction (or group, or ``default``)."""

    key: str
    store_in: tuple[str, ...]
    law: str | None = None


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
        rule = self.rule_for(jurisdiction)
        return rule.store_in if rule is not None else ()

    def permitted_shards(self, jurisdiction: str) -> tuple[ShardSpec, ...]:
        regions = set(self.permitted_regions(jurisdiction))
        return tuple(s for s in self.shards.values() if s.region in regions)

    def is_permitted(self, jurisdiction: str, shard: str) -> bool:
        # Asked on every write: a set lookup rather than resolving the rule each time.
        spec = self.shards.get(shard)
        return spec is not None and jurisdiction in self._held_by_region[spec.region]

    @cached_property
    def _held_by_region(self) -> Mapping[str, frozenset[str]]:
        held: dict[str, set[str]] = {name: set() for name in self.regions}
        for code in ISO_CODES:
            for region in self.permitted_regions(code):
                held[region].add(code)
        return {name: frozenset(codes) for name, codes in held.items()}

    def jurisdictions_for_shard(self, shard: str) -> frozenset[str]:
        """Every jurisdiction a shard may hold: what its residency guard lets in."""
        return self._held_by_region[self.shards[shard].region]

    def region_of(self, shard: str) -> Region:
        return self.regions[self.shards[shard].region]


def group_members(groups: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    merged = dict(BUILTIN_GROUPS)
    merged.update({name: frozenset(codes) for name, codes in groups.items()})
    return merged
