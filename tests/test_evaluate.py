"""`anagram evaluate` on folders of known content, judged by the digits model's judge (the second digit
classifier, never a scorer), the shipped classifier by name, and the glyph judge."""

import csv
import re

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from anagram.cli import app
from anagram.evaluation import evaluate_folder
from anagram.outputs.atomic import write_json, write_png
from anagram.outputs.records import SampleRecord, sample_files
from anagram.testbed.data import load_split
from anagram.testbed.judge import digit_of_prompt


def write_sample(folder, stem, image01, prompts, views, seed=0):
    record = SampleRecord(prompts=prompts, full_prompts=prompts, views=[{"name": v} for v in views], seed=seed,
                          num_inference_steps=30, guidance_scale=3.0, model={"model": "digits"},
                          files=sample_files(stem))
    write_png(folder / f"{stem}.png", Image.fromarray((image01 * 255).round().astype(np.uint8), mode="L"))
    write_json(folder / f"{stem}.json", record.to_dict())


@pytest.fixture(scope="module")
def digits_by_class():
    split = load_split()
    images, labels = split.test_images, split.test_labels
    return {d: ((images[labels == d][0, 0].numpy() + 1) / 2) for d in range(10)}


def test_metrics_of_known_samples(tmp_path, digits_by_class):
    three = digits_by_class[3]
    write_sample(tmp_path, "right", three, ["a digit three", "a digit 3"], ["identity", "identity"])
    write_sample(tmp_path, "wrong", three, ["a digit three", "a digit seven"], ["identity", "identity"], seed=1)
    (tmp_path / "manifest.json").write_text("{}")  # non-sample JSON files are ignored
    result = evaluate_folder(tmp_path)
    assert result["judge"] == "digit_judge" and result["samples"] == 2  # the judge the digits model declares
    assert result["success_rate"] == 0.5 and "segregation_rate" not in result  # the digit judge cannot tell it
    rows = {row["stem"]: row for row in csv.DictReader(open(tmp_path / "metrics.csv"))}
    assert {row["judge"] for row in rows.values()} == {"digit_judge"}  # the csv names who judged it
    assert rows["right"]["success"] == "True" and rows["wrong"]["success"] == "False"
    assert float(rows["right"]["alignment"]) > 0.9 > float(rows["wrong"]["alignment"])
    # Two identical views cannot be told apart: concealment is 1/2 when both prompts name the same digit.
    assert float(rows["right"]["concealment_row"]) == pytest.approx(0.5, abs=1e-6)


def test_rotated_views_are_judged_in_their_own_frame(tmp_path, digits_by_class):
    seven = digits_by_class[7]
    upside_down_seven = seven[::-1, ::-1].copy()
    write_sample(tmp_path, "rot", upside_down_seven, ["a digit four", "a digit seven"], ["identity", "rotate_180"])
    evaluate_folder(tmp_path)
    row = next(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert float(row["score_view1"]) > 0.9  # view 2 (rotated back) is the seven


def test_evaluate_command_and_errors(tmp_path, digits_by_class):
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", str(tmp_path)])
    assert result.exit_code == 2 and "no samples" in " ".join(result.output.split())
    write_sample(tmp_path, "s", digits_by_class[1], ["a digit one"], ["identity"])
    result = runner.invoke(app, ["evaluate", str(tmp_path), "--sheet"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "contact_sheet.png").is_file()
    assert "alignment" in result.output and "success rate" in result.output
    with pytest.raises(ValueError, match="names no digit"):
        digit_of_prompt("a digit banana")
    assert digit_of_prompt("a digit [8] drawn badly") == 8


def test_a_sample_the_judge_cannot_score_is_listed_not_fatal(tmp_path, digits_by_class):
    write_sample(tmp_path, "fine", digits_by_class[3], ["a digit three"], ["identity"])
    write_sample(tmp_path, "cat", digits_by_class[3], ["a cat"], ["identity"], seed=1)
    result = evaluate_folder(tmp_path)
    assert result["samples"] == 1 and [s["stem"] for s in result["skipped"]] == ["cat"]
    assert "names no digit" in result["skipped"][0]["reason"]
    assert [row["stem"] for row in csv.DictReader(open(tmp_path / "metrics.csv"))] == ["fine"]
    output = " ".join(CliRunner().invoke(app, ["evaluate", str(tmp_path)], env={"COLUMNS": "200"}).output.split())
    assert "skipped 1 sample" in output and "cat: prompt 'a cat' names no digit" in output
    (tmp_path / "fine.json").unlink()
    with pytest.raises(ValueError, match="could score none"):
        evaluate_folder(tmp_path)


# -- the glyph testbed: the glyph judge (auto from the model's declared judge) and the segregation rate


def glyph_image(*placed):
    """Renders ``(glyph, centre, scale)`` combined on one canvas, ``(H, W)`` in [0, 1]."""
    from anagram.testbed.glyphs import Placement, render_glyph

    return np.maximum.reduce([((render_glyph(g, 0, Placement(scale=s, center=c))[0].numpy() + 1) / 2)
                              for g, c, s in placed])


def write_glyph_sample(folder, stem, image01, prompts, views, seed=0, model=None):
    record = SampleRecord(prompts=prompts, full_prompts=prompts, views=[{"name": v} for v in views], seed=seed,
                          num_inference_steps=30, guidance_scale=3.0, model=model or {"model": "glyphs"},
                          files=sample_files(stem))
    write_png(folder / f"{stem}.png", Image.fromarray((image01 * 255).round().astype(np.uint8), mode="L"))
    write_json(folder / f"{stem}.json", record.to_dict())


def test_glyph_samples_report_segregation(tmp_path):
    one_b = glyph_image(("b", (0.5, 0.5), 0.7))
    a_and_7 = glyph_image(("a", (0.25, 0.5), 0.42), ("7", (0.75, 0.5), 0.42))
    write_glyph_sample(tmp_path, "bq", one_b, ["a letter b", "a letter q"], ["identity", "rotate_180"])
    write_glyph_sample(tmp_path, "a7", a_and_7, ["a letter a", "a digit seven"], ["identity", "rotate_180"], seed=1)
    result = evaluate_folder(tmp_path)
    assert result["judge"] == "glyphs" and result["samples"] == 2
    assert result["segregation_rate"] == 0.5 and result["success_rate"] == 0.5
    rows = {row["stem"]: row for row in csv.DictReader(open(tmp_path / "metrics.csv"))}
    assert rows["bq"]["segregated"] == "False" and rows["bq"]["regions"] == "1" and rows["bq"]["success"] == "True"
    assert rows["a7"]["segregated"] == "True" and rows["a7"]["regions"] == "2" and rows["a7"]["success"] == "False"
    output = " ".join(CliRunner().invoke(app, ["evaluate", str(tmp_path)], env={"COLUMNS": "200"}).output.split())
    assert "judged by glyphs" in output and re.search(r"segregation rate\W+0\.500", output)


def test_the_glyph_judge_by_name_and_from_a_model_folder(tmp_path):
    from anagram.evaluation import declared_judge, make_judge
    from anagram.testbed import MODELS_DIR

    assert declared_judge({"model": "glyphs"}) == "glyphs"
    assert declared_judge({"model": "/elsewhere", "location": str(MODELS_DIR / "glyphs")}) == "glyphs"
    assert declared_judge({"model": "digits"}) == "digit_judge"  # the second classifier, never a scorer
    assert make_judge("auto", {"digits"}).name == "digit_judge"
    assert make_judge("auto", {"digits"}, [{"model": "digits", "location": "/moved/away"}]).name == "digit_judge"
    assert make_judge("glyphs", {"anything"}).name == "glyphs"
    with pytest.raises(ValueError, match="automatic judge"):
        make_judge("auto", {"digits", "glyphs"})
    # a copy of the glyph model elsewhere, named by its folder: its declared judge is found
    write_glyph_sample(tmp_path, "k", glyph_image(("k", (0.5, 0.5), 0.7)), ["a letter k"], ["identity"],
                       model={"model": "my/glyphs-copy", "location": str(MODELS_DIR / "glyphs")})
    result = evaluate_folder(tmp_path)
    assert result["judge"] == "glyphs" and result["success_rate"] == 1.0 and result["segregation_rate"] == 0.0


# -- which digit classifier judges: the declared second classifier, the shipped one by name, any folder


def test_evaluate_can_be_pointed_at_either_digit_classifier(tmp_path, digits_by_class):
    from anagram.testbed import CLASSIFIER_DIR, MODELS_DIR

    write_sample(tmp_path, "six", digits_by_class[6], ["a digit six", "a digit nine"], ["identity", "rotate_180"])
    names = {}
    for judge in ("auto", "digit_judge", "digits", f"digits:{CLASSIFIER_DIR}", f"digits:{MODELS_DIR / 'digit_judge'}"):
        result = evaluate_folder(tmp_path, judge)
        row = next(csv.DictReader(open(tmp_path / "metrics.csv")))
        assert row["judge"] == result["judge"] and float(row["score_view0"]) > 0.9  # both read a clean six
        names[judge] = result["judge"]
    assert names == {"auto": "digit_judge", "digit_judge": "digit_judge", "digits": "digits",
                     f"digits:{CLASSIFIER_DIR}": f"digits:{CLASSIFIER_DIR}",
                     f"digits:{MODELS_DIR / 'digit_judge'}": "digit_judge"}
    output = " ".join(CliRunner().invoke(app, ["evaluate", str(tmp_path), "--judge", "digit_judge"],
                                         env={"COLUMNS": "200"}).output.split())
    assert "judged by digit_judge" in output
    output = " ".join(CliRunner().invoke(app, ["evaluate", str(tmp_path), "--judge", "digits"],
                                         env={"COLUMNS": "200"}).output.split())
    assert "judged by digits" in output
    with pytest.raises(ValueError, match="no digit classifier folder"):
        evaluate_folder(tmp_path, f"digits:{tmp_path / 'nothing'}")
    with pytest.raises(ValueError, match="unknown judge"):
        evaluate_folder(tmp_path, "digit_judges")
