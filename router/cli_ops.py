"""SRE operations: online moves, ``comply``, topology changes."""

from __future__ import annotations
