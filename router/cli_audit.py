"""``domicile audit …``: verifier key, verification, residency log and report."""

from __future__ import annotations

import click


@click.group()
def audit() -> None:
    """Residency audit: keys, verification, log, report."""
