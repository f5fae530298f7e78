"""Set-based statements for PostgreSQL: a batch's rows travel as one array per column.

`INSERT … SELECT … FROM unnest(:a_col1, :a_col2, …)` has one text whatever the number of rows, so it is
compiled by SQLAlchemy and prepared by PostgreSQL once, instead of a multi-row VALUES list whose text (and
thousands of bind parameters) changes with every batch size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY


def unnest_select(table: sa.Table, names: Sequence[str]) -> sa.Select[Any]:
    """`SELECT col1, col2, … FROM unnest(:a_col1, :a_col2, …)`, typed like `table`'s columns."""
    arrays = [
        sa.cast(sa.bindparam(f"a_{name}", type_=ARRAY(table.c[name].type)), ARRAY(table.c[name].type))
        for name in names
    ]
    rows = sa.func.unnest(*arrays).table_valued(*names).render_derived()
    return sa.select(*(rows.c[name] for name in names))


def column_arrays(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, list[Any]]:
    """The parameters of an `unnest_select`: one list per column, rows in order."""
    return {f"a_{name}": [row[name] for row in rows] for name in names}
