"""The segregation detector on constructed glyph images (anagram.testbed.segregation), read by the shipped judge."""

import pytest
import torch

from anagram.testbed import glyphs
from anagram.testbed.glyphs import Placement, render_glyph
from anagram.testbed.segregation import ink_regions, normalise_glyph, segregation
from anagram.views import parse_view

IDENTITY = parse_view("identity")
ROT180 = parse_view("rotate_180")


def ink(glyph, font=0, **placement):
    """A render in [0, 1] (the sample-image range)."""
    return (render_glyph(glyph, font, Placement(**placement)) + 1) / 2


def side_by_side(left, right, font=0, scale=0.42):
    return torch.maximum(ink(left, font, scale=scale, center=(0.25, 0.5)), ink(right, font, scale=scale, center=(0.75, 0.5)))


def test_one_glyph_is_one_region_in_every_font_and_weight():
    """Dots of i and j, thin serif hairlines, small sizes: a single render is never split into regions."""
    for f, font in enumerate(glyphs.FONTS):
        for g in glyphs.CLASSES:
            for scale, w in ((0.35, 0), (0.6, len(font.weights) - 1), (0.9, 0), (0.9, 1)):
                _, labels = ink_regions(ink(g, f, scale=scale, weight=w))
                assert labels.max() == 1, (g, font.file, scale, w)


def test_one_glyph_read_two_ways_is_not_segregated():
    b = ink("b", scale=0.7)
    verdict = segregation(b, [IDENTITY, ROT180], ["a letter b", "a letter q"])
    assert not verdict.segregated and verdict.regions == 1


def test_two_separated_glyphs_of_the_two_prompts_are_segregated():
    image = side_by_side("a", "7")
    verdict = segregation(image, [IDENTITY, ROT180], ["a letter a", "a digit seven"])
    assert verdict.regions == 2 and verdict.components == 2
    assert verdict.segregated
    assert sorted(map(tuple, verdict.shows)) == [(0,), (1,)]
    # read in the view the region belongs to: the 7 drawn upside down, seen right way up under rotate_180
    flipped_seven = torch.maximum(ink("a", scale=0.42, center=(0.25, 0.5)),
                                  ink("7", scale=0.42, center=(0.25, 0.5)).flip(-1, -2))  # lands on the right
    assert segregation(flipped_seven, [IDENTITY, ROT180], ["a letter a", "a digit 7"]).segregated


def test_two_separated_glyphs_that_are_not_the_prompts_are_not_segregated():
    image = side_by_side("x", "3")
    verdict = segregation(image, [IDENTITY, ROT180], ["a letter a", "a digit seven"])
    assert verdict.regions == 2 and not verdict.segregated
    # one prompt shown in one region only is not segregation either
    assert not segregation(side_by_side("a", "x"), [IDENTITY, ROT180], ["a letter a", "a digit 7"]).segregated


def test_overlapping_glyphs_are_one_component_so_not_segregated():
    image = torch.maximum(ink("a", scale=0.6, center=(0.42, 0.5)), ink("7", scale=0.6, center=(0.58, 0.5)))
    verdict = segregation(image, [IDENTITY, ROT180], ["a letter a", "a digit seven"])
    assert verdict.components == 1 and verdict.regions == 1 and not verdict.segregated


def test_a_stray_speck_is_dropped():
    image = ink("a", scale=0.7)
    image[:, 1:3, 28:30] = 1.0  # a 2x2 speck in a corner
    components, labels = ink_regions(image)
    assert components == 2 and labels.max() == 1
    assert not segregation(image, [IDENTITY, ROT180], ["a letter a", "a letter o"]).segregated


def test_same_glyph_twice_is_not_segregation_and_errors_are_clear():
    image = side_by_side("o", "o")
    assert not segregation(image, [IDENTITY, ROT180], ["a letter o", "a letter o"]).segregated
    with pytest.raises(ValueError, match="names no glyph"):
        segregation(image, [IDENTITY, ROT180], ["a letter o", "a cat"])
    with pytest.raises(ValueError, match="2 views but 1 prompts"):
        segregation(image, [IDENTITY, ROT180], ["a letter o"])


def test_normalise_glyph_recentres_and_rescales():
    small = ink("k", scale=0.35, center=(0.2, 0.8))
    out = normalise_glyph(small)[0]
    ys, xs = torch.nonzero(out > 0.25, as_tuple=True)
    assert abs((ys.min() + ys.max()).item() / 2 - 15.5) <= 1.5 and abs((xs.min() + xs.max()).item() / 2 - 15.5) <= 1.5
    assert 0.5 * 32 <= ys.max() - ys.min() + 1 <= 0.7 * 32
