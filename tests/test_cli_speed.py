"""`anagram --help`, `--version` and `views` answer at once: they import neither torch nor diffusers;
`anagram views` stays readable in an 80-column terminal."""

import json
import subprocess
import sys

from typer.testing import CliRunner

from anagram.cli import app
from anagram.cli.views import TABLE_FILE

PROBE = """
import sys
from typer.testing import CliRunner
from anagram.cli import app
result = CliRunner().invoke(app, {args!r})
assert result.exit_code == 0, result.output
heavy = sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


def heavy_imports(args):
    out = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_help_version_and_views_import_no_heavy_library():
    for args in (["--help"], ["--version"], ["views"], ["generate", "--help"], ["batch", "--help"]):
        assert heavy_imports(args) == "HEAVY=", args


def test_version():
    from anagram import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"anagram {__version__}"


def test_shipped_view_table_is_what_the_registry_describes():
    from anagram.views import describe

    expected = json.loads(json.dumps(describe()))
    assert json.loads(TABLE_FILE.read_text()) == expected, (
        "anagram/cli/views_table.json is stale: run "
        "python -c 'from anagram.cli.views import write_table; write_table()'")


def test_views_at_80_columns_show_every_name_whole():
    from anagram.views import available

    result = CliRunner().invoke(app, ["views"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    first_cells = {line.split()[0] for line in lines if line.strip()}
    assert set(available()) <= first_cells  # each name unbroken in its own column
    assert "orthogonal" in result.output and "square" in result.output  # the properties, wrapped as needed


def test_command_help_reads_at_80_columns_without_ragged_lines():
    """Typer kept the docstrings' line breaks, so at 80 columns `anagram batch --help` broke every
    100-character source line again: a full line, then a stub of a word or two."""
    result = CliRunner().invoke(app, ["batch", "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    prose = result.output.split("Arguments:")[0]  # the description, above the arguments and options
    lines = [line.strip() for line in prose.splitlines() if line.strip()][1:]  # after "Usage: ..."
    paragraph_ends = {i for i, line in enumerate(lines) if line.endswith((".", ")"))}
    stubs = [line for i, line in enumerate(lines) if len(line) < 40 and i not in paragraph_ends]
    assert not stubs, lines
    assert "(comma-separated specs)" in " ".join(lines)
    options = result.output.split("Options:")[1]
    assert "Output folder (also holds manifest.jsonl)." in options  # not cut to "Output…" in a squeezed column
    summary = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "80"}).output
    assert not [line for line in summary.splitlines()[1:] if line.rstrip().endswith("...")]
    assert "over every sample; writes metrics.csv." in summary  # the whole first paragraph
