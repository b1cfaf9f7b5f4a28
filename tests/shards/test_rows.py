"""The typed rows are their tables' columns, in order and of the same types: a column added to
the schema without its row type (or the other way round) fails here, not in a move."""

from __future__ import annotations

import types
from typing import Any, get_args, get_type_hints

import pytest
from sqlalchemy import Table

from domicile.shards.rows import LookupRow, RecordRow, SubjectRow
from domicile.shards.schema import lookups, records, subjects


@pytest.mark.parametrize(
    ("row", "table"), [(SubjectRow, subjects), (RecordRow, records), (LookupRow, lookups)]
)
def test_row_fields_are_the_columns_in_order(row: Any, table: Table) -> None:
    assert row._fields == tuple(column.name for column in table.columns)
    hints = get_type_hints(row)
    for column in table.columns:
        hint = hints[column.name]
        optional = isinstance(hint, types.UnionType) and type(None) in get_args(hint)
        assert optional == column.nullable, column.name
        python_type = next(t for t in get_args(hint) if t is not type(None)) if optional else hint
        assert python_type is column.type.python_type, column.name
