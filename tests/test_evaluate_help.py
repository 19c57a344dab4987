"""`anagram evaluate --help` names every judge `make_judge` accepts and the one `auto` picks for digits."""

from typer.testing import CliRunner

from anagram.cli import app
from anagram.evaluation.judges import JUDGES


def test_the_judge_help_names_every_judge_and_the_digits_default():
    result = CliRunner().invoke(app, ["evaluate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for name in (*JUDGES, "digits:<classifier folder>", "clip:<CLIP id or folder>"):
        assert name in text, name
    # auto takes the digits model's declared judge (its anagram_defaults.json), the second classifier
    assert "digit_judge for --model digits" in text
