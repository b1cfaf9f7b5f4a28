"""The effective policy as ``policy.changed`` entries log it, and what it permits at a moment.

The policy is every jurisdiction's rule as the router resolves it: a key per jurisdiction with a
rule of its own or through a group (groups expanded), and ``default`` for every other one; each
rule ``{"store_in": [regions], "law"?, "effective"?, "before"?}``. Its RFC 8785 JSON's SHA-256
(hex) names it. Both the evidence pack and its verifier judge compliance by these functions, so
the statement's figures mean the same thing on either side.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import rfc8785

#: The rule of every jurisdiction without one of its own.
DEFAULT = "default"
#: What a ``policy.changed`` entry declares about its shard's region, besides the policy.
REGION_FACTS = ("region", "country", "provider", "address", "legal_entity")

Policy = Mapping[str, Mapping[str, Any]]


def policy_sha256(policy: Policy) -> str:
    return hashlib.sha256(bytes(rfc8785.dumps(dict(policy)))).hexdigest()


def parse_time(value: str) -> datetime:
    """An RFC 3339 time as the logs write it (``Z`` or an offset)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def rule_of(policy: Policy, jurisdiction: str) -> Mapping[str, Any] | None:
    return policy.get(jurisdiction) or policy.get(DEFAULT)


def permitted_regions(policy: Policy, jurisdiction: str, at: datetime) -> frozenset[str]:
    """The regions that may hold the jurisdiction's data at ``at``: a scheduled rule's
    ``before`` regions as well as its ``store_in`` until it takes effect."""
    rule = rule_of(policy, jurisdiction)
    if rule is None:
        return frozenset()
    regions = set(rule["store_in"])
    effective = rule.get("effective")
    if effective is not None and at < parse_time(effective):
        regions.update(rule.get("before", ()))
    return frozenset(regions)


def effective_times(policy: Policy) -> list[datetime]:
    """When the policy's scheduled rules take effect, earliest first: compliance can change
    then without any entry."""
    return sorted({parse_time(r["effective"]) for r in policy.values() if r.get("effective")})
