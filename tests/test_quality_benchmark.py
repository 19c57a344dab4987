"""The quality benchmark's rules: how glyph cases are chosen and split, and that no judge is a scorer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import glyph_quality_cases as gq  # noqa: E402
import quality  # noqa: E402

from anagram.method import MultiTask  # noqa: E402


def _screen(rates: dict[str, float], seeds: int = 16) -> dict:
    return {name: {"failures": round(rate * seeds), "seeds": seeds} for name, rate in rates.items()}


def test_case_names_and_prompts_round_trip():
    case = gq.Case.parse("rotate_180:6/9")
    assert case.name == "rotate_180:6/9"
    assert case.prompts == ["a digit six", "a digit nine"]
    assert case.views == ["identity", "rotate_180"]
    assert gq.Case.parse("jigsaw:a/b").prompts == ["a letter a", "a letter b"]
    with pytest.raises(ValueError):
        gq.Case.parse("rotate_180")
    names = [c.name for c in gq.CANDIDATES]
    assert len(names) == len(set(names)) >= 20


def test_choose_cases_thresholds_split_and_caps():
    names = [c.name for c in gq.CANDIDATES]
    rates = {n: [0.0, 0.25, 0.3125, 0.5, 1.0][i % 5] for i, n in enumerate(names)}
    chosen = gq.choose_cases(_screen(rates))
    assert set(chosen["hard"]) == {n for n in names if rates[n] >= 0.5}
    assert set(chosen["easy"]) == {n for n in names if rates[n] <= 0.25}
    assert not set(chosen["hard"]) & set(chosen["easy"])  # 0.3125 is in neither
    assert not set(chosen["tuning"]) & set(chosen["heldout"])
    assert set(chosen["tuning"]) | set(chosen["heldout"]) <= set(chosen["hard"])
    assert len(chosen["tuning"]) == len(chosen["heldout"]) == gq.MAX_HARD
    assert set(chosen["easy_used"]) <= set(chosen["easy"]) and len(chosen["easy_used"]) == gq.MAX_EASY
    # a pure function of the numbers and the seed; another seed gives another split
    assert gq.choose_cases(_screen(rates)) == chosen
    assert gq.choose_cases(_screen(rates), split_seed=99)["tuning"] != chosen["tuning"]


def test_choose_cases_small_screen_halves():
    rates = {"rotate_180:a/k": 1.0, "flip:r/s": 0.75, "jigsaw:a/b": 0.5, "hflip:b/d": 0.0}
    chosen = gq.choose_cases(_screen(rates))
    assert sorted(chosen["tuning"] + chosen["heldout"]) == sorted(["rotate_180:a/k", "flip:r/s", "jigsaw:a/b"])
    assert len(chosen["tuning"]) == 2 and len(chosen["heldout"]) == 1
    assert chosen["easy_used"] == ["hflip:b/d"]


def test_committed_case_file_follows_the_rule():
    if not gq.CASES_FILE.exists():
        pytest.skip("the screen has not been run")
    payload = gq.load_cases()
    again = gq.choose_cases(payload["screen"])
    for key in ("hard", "easy", "tuning", "heldout", "easy_used"):
        assert payload[key] == again[key]
    assert not set(payload["screen_seeds"]) & set(range(16)), "the screen's seeds must not be the table's"


def test_default_method_scorer_is_not_a_judge():
    glyph_clip = quality.GLYPH_CLIP
    declared = glyph_clip  # what the glyph model declares (anagram_defaults.json "clip:../glyph_clip")
    assert quality.scorer_of("mtl", declared) == glyph_clip
    assert quality.scorer_of("baseline", declared) is None
    assert quality.scorer_of(MultiTask(balance=False), declared) is None
    assert quality.scorer_of(MultiTask(scorer="attention"), declared) == "attention"
    for name, method in quality.GLYPH_METHODS.items():
        scorer = quality.scorer_of(method, declared)
        assert not quality.same_network(scorer, "glyphs"), name
    # the CLIP column is left out exactly where the CLIP judge is the scorer (paths compared resolved)
    folder = quality.GLYPH_CLIP_DIR
    other_spelling = f"clip:{folder.parent}/../{folder.parent.name}/{folder.name}"
    assert quality.same_network(glyph_clip, other_spelling)
    assert not quality.same_network("attention", glyph_clip)
    assert not quality.same_network(None, glyph_clip)


def test_glyph_model_declares_the_clip_the_benchmark_names():
    from anagram.pipelines.loading import read_declared_scorer
    from anagram.testbed import MODELS_DIR

    declared = read_declared_scorer(MODELS_DIR / "glyphs")
    assert quality.same_network(declared, quality.GLYPH_CLIP)


def test_mean_and_standard_error():
    mean, se = quality.mean_se(torch.tensor([0.0, 1.0, 0.0, 1.0]))
    assert mean == 0.5
    assert se == pytest.approx(torch.tensor([0.0, 1.0, 0.0, 1.0]).std().item() / 2)


def test_judging_rendered_glyphs():
    """A typeset b read upside down is a q (success); a b beside a q is segregated (a failure)."""
    from anagram.testbed.glyph_judge import GLYPH_JUDGE_DIR

    if not (GLYPH_JUDGE_DIR / "model.safetensors").exists():
        pytest.skip("the glyph judge is not shipped yet")
    from anagram.evaluation.judges import GlyphJudge
    from anagram.testbed import glyphs

    b = (glyphs.render_glyph("b") + 1) / 2  # (1, 32, 32) in [0, 1]
    scores = quality.judge_glyph_samples(b[None], ["identity", "rotate_180"], ["a letter b", "a letter q"],
                                         GlyphJudge())
    assert scores["success"].tolist() == [1.0] and scores["segregated"].tolist() == [0.0]
    wrong = quality.judge_glyph_samples(b[None], ["identity", "rotate_180"], ["a letter b", "a letter k"],
                                        GlyphJudge())
    assert wrong["failure"].tolist() == [1.0] and wrong["misread"].tolist() == [1.0]
    left = glyphs.render_glyph("b", placement=glyphs.Placement(scale=0.4, center=(0.25, 0.5)))
    right = glyphs.render_glyph("q", placement=glyphs.Placement(scale=0.4, center=(0.75, 0.5)))
    pair = (torch.maximum(left, right) + 1) / 2
    apart = quality.judge_glyph_samples(pair[None], ["identity", "hflip"], ["a letter b", "a letter q"], GlyphJudge())
    assert apart["segregated"].tolist() == [1.0] and apart["failure"].tolist() == [1.0]


def test_second_digit_judge_is_trained_apart(tmp_path):
    """The digits table's second judge: the shipped classifier's training code with another seed and widths."""
    from anagram.testbed import train_digit_judge
    from anagram.testbed.classifier import load_classifier, train_classifier

    model, _ = train_classifier(tmp_path / "judge", epochs=1, seed=train_digit_judge.JUDGE_SEED, progress=False,
                                channels=(8, 16, 24), extra={"role": "judge (never a scorer)"})
    loaded = load_classifier(tmp_path / "judge")
    assert loaded.config["channels"] == [8, 16, 24]
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    torch.testing.assert_close(loaded(x), model.eval()(x))
    assert train_digit_judge.JUDGE_CHANNELS != (32, 64, 96) and train_digit_judge.JUDGE_SEED != 0


def test_table_pairs_rows_with_the_baseline_and_a_chosen_reference(capsys):
    cases = [gq.Case.parse("rotate_180:b/q"), gq.Case.parse("flip:a/e")]
    rows = {"baseline": [1.0, 1.0, 0.0, 0.0], "mtl (default)": [1.0, 1.0, 1.0, 0.0], "other": [0.0, 1.0, 1.0, 0.0]}
    per = {}
    for name, failure in rows.items():
        for i, case in enumerate(cases):
            f = torch.tensor(failure[2 * i: 2 * i + 2])
            per[(name, "tuning", case.name)] = {"failure": f, "misread": f, "segregated": torch.zeros(2),
                                                "alignment": 1 - f, "concealment": torch.ones(2)}
    results = {"seeds": [0, 1], "methods": {name: {"seconds_per_sample": None} for name in rows}}
    quality.print_glyph_table(results, per, {"tuning": cases}, list(rows), versus="mtl (default)")
    other = results["groups"]["tuning"]["other"]
    assert other["failure_vs baseline"][0] == pytest.approx(0.0)
    assert other["failure_vs mtl (default)"][0] == pytest.approx(-0.25)  # paired over the same four samples
    assert "failure_vs mtl (default)" not in results["groups"]["tuning"]["mtl (default)"]
    assert "vs mtl (default): failure -0.250" in capsys.readouterr().out


def test_row_names_can_be_given_to_methods():
    # --methods is comma-separated: a name with a comma could never be chosen
    for name in [*quality.GLYPH_METHODS, *quality.DIGIT_METHODS]:
        assert "," not in name, name
    assert quality.glyph_methods("clip:/x")["balancing (glyph CLIP)"].scorer == "clip:/x"
    assert quality.glyph_methods("clip:/x")["mtl (default)"] == "mtl"
