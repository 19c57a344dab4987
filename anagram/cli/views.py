"""`anagram views`: every available view and its properties."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def list_views():
    """List every available view and its properties."""
    from ..views import describe

    table = Table(title="views")
    for column in ("name", "orthogonal", "spaces", "square only", "factorized", "parameters", "description"):
        table.add_column(column)
    for row in describe():
        params = ", ".join(f"{k}={v!r}" for k, v in (row.get("parameters") or {}).items())
        table.add_row(row["name"], "yes" if row["orthogonal"] else "no", ",".join(row["spaces"]),
                      "yes" if row["square_only"] else "no", "yes" if row["factorized"] else "no", params,
                      row.get("description", ""))
    Console().print(table)
