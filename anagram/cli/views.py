"""`anagram views`: every available view and its properties, readable in an 80-column terminal.

It answers without importing torch: the built-in views' descriptions are read from
``views_table.json`` (written from `anagram.views.describe` by `write_table`, and kept equal to it
by tests/test_cli_speed.py, which says how to rewrite it); only when a package adds views through the ``anagram.views``
entry-point group is the registry itself imported to describe them.
"""

from __future__ import annotations

import json
import re
import shutil
from importlib import metadata
from pathlib import Path

TABLE_FILE = Path(__file__).with_name("views_table.json")
WIDE = 120  # from this many columns on, each property gets a column of its own


def view_rows() -> list[dict]:
    """`anagram.views.describe()`: from the shipped table unless a plug-in adds views."""
    if TABLE_FILE.is_file() and not metadata.entry_points(group="anagram.views"):
        return json.loads(TABLE_FILE.read_text())
    from ..views import describe

    return describe()


def _plain(text: str) -> str:
    return re.sub(r"``?([^`]+)``?", r"\1", text or "")


def _parameters(row: dict) -> str:
    required = set(row.get("required") or ())
    return ", ".join(name if name in required else f"{name}={value!r}"
                     for name, value in (row.get("parameters") or {}).items())


def _spaces(row: dict) -> str:
    return " + ".join(row["spaces"])


def list_views():
    """List every available view and its properties."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    width = console.width or shutil.get_terminal_size().columns
    rows = view_rows()
    table = Table(title="views (parameters after a colon: jigsaw:4,seed=3)", box=box.SIMPLE_HEAD, pad_edge=False,
                  title_justify="left")
    table.add_column("name", no_wrap=True, style="bold")
    if width >= WIDE:
        for column in ("orthogonal", "spaces", "square only", "factorized"):
            table.add_column(column, no_wrap=True)
    else:
        table.add_column("properties")
    table.add_column("parameters")
    table.add_column("description", ratio=1)
    for row in rows:
        if width >= WIDE:
            properties = ["yes" if row["orthogonal"] else "no", _spaces(row), "yes" if row["square_only"] else "no",
                          "yes" if row["factorized"] else "no"]
        else:
            flags = [_spaces(row)] + [label for key, label in (("orthogonal", "orthogonal"), ("square_only",
                     "square only"), ("factorized", "factorized")) if row[key]]
            properties = [", ".join(flags)]
        table.add_row(row["name"], *properties, _parameters(row), _plain(row.get("description", "")))
    console.print(table)


def write_table() -> Path:
    """Write the built-in views' descriptions (run after adding or changing a view)."""
    from ..views import describe

    TABLE_FILE.write_text(json.dumps(describe(), indent=1) + "\n")
    return TABLE_FILE
