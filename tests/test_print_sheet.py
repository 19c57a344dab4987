"""Print sheets (`anagram.outputs.print_sheet`, `anagram print`): page size, pages, marks, cut lines."""

import re

import pytest
import torch
from PIL import Image
from pypdf import PdfReader
from typer.testing import CliRunner

from anagram.cli import app
from anagram.outputs.print_sheet import (CUT_COLOUR, PrintSheetError, paper_size, sheet_motion, sheet_pieces,
                                         write_print_sheet)
from anagram.outputs.records import SampleRecord, write_sample
from anagram.views import get_view, parse_view

MM = 72 / 25.4  # PDF points per millimetre


def make_sample(folder, stem, views, prompts, size=32):
    image = Image.fromarray((torch.rand(size, size, 3) * 255).to(torch.uint8).numpy())
    parsed = [parse_view(v) for v in views]
    record = SampleRecord(prompts=prompts, full_prompts=prompts, views=[v.config() for v in parsed], seed=0,
                          num_inference_steps=2, guidance_scale=3.0, model={"model": "digits", "location": "digits"})
    write_sample(folder, stem, image, [image for _ in parsed], record)
    return folder / f"{stem}.json"


def cut_segments(page):
    """(x, y) points (mm, from the top-left) of the paths stroked in the cut colour."""
    ops = page.get_contents().operations
    colour, points, found = None, [], []
    height = float(page.mediabox.height)
    for operands, op in ops:
        op = op.decode() if isinstance(op, bytes) else op
        if op == "RG":
            colour = tuple(round(float(v) * 255) for v in operands)
        elif op in ("m", "l"):
            points.append((float(operands[0]) / MM, (height - float(operands[1])) / MM))
        elif op in ("S", "s", "B", "b", "f", "n"):
            if colour == CUT_COLOUR and op in ("S", "s") and points:
                found.append(points)
            points = []
    return found


def test_sheet_has_paper_size_one_page_per_sample_and_jigsaw_cut_lines(tmp_path):
    flip = make_sample(tmp_path, "flip", ["identity", "rotate_180"], ["a digit six", "a digit nine"])
    jigsaw = make_sample(tmp_path, "jigsaw", ["identity", "jigsaw:4,seed=3"], ["a digit one", "a digit seven"])
    out = write_print_sheet([flip, jigsaw], tmp_path / "sheet.pdf", paper="A4", dpi=150)
    reader = PdfReader(out)
    assert len(reader.pages) == 2
    for page in reader.pages:
        assert float(page.mediabox.width) == pytest.approx(210 * MM, abs=0.5)
        assert float(page.mediabox.height) == pytest.approx(297 * MM, abs=0.5)
    assert cut_segments(reader.pages[0]) == []  # a rotation needs no cutting
    paths = cut_segments(reader.pages[1])
    assert len(paths) == 1 + 2 * 4 * 3  # the border and every internal edge of the 4x4 puzzle
    border = paths[0]
    left, top = min(x for x, _ in border), min(y for _, y in border)
    side = max(x for x, _ in border) - left
    # every internal edge starts and ends on the piece grid
    for path in paths[1:]:
        for x, y in (path[0], path[-1]):
            assert (x - left) / side * 4 == pytest.approx(round((x - left) / side * 4), abs=1e-3)
            assert (y - top) / side * 4 == pytest.approx(round((y - top) / side * 4), abs=1e-3)
    text = reader.pages[1].extract_text()
    assert all(str(k) in re.findall(r"\d+", text) for k in range(1, 17))  # piece numbers
    assert "a digit seven" in text and "cut along the lines" in text
    assert "upside down" in reader.pages[0].extract_text()


def test_embedded_image_has_the_stated_dpi(tmp_path):
    record = make_sample(tmp_path, "s", ["identity", "flip"], ["a", "b"])
    widest = {}
    for dpi in (100, 200):
        reader = PdfReader(write_print_sheet([record], tmp_path / f"s{dpi}.pdf", paper="A5", dpi=dpi))
        widest[dpi] = max(image.image.width for image in reader.pages[0].images)  # the main image
    # the same print size at both resolutions: twice the pixels at twice the dpi (to a pixel of rounding)
    assert abs(widest[200] - 2 * widest[100]) <= 2
    assert widest[200] > 400  # the 32-pixel image is embedded enlarged, not at 32 pixels


def test_views_that_move_the_sheet_are_found_from_the_view_itself():
    assert sheet_motion(get_view("identity")).up_edge == "top"
    assert sheet_motion(get_view("rotate_180")).up_edge == "bottom"
    assert sheet_motion(get_view("rotate_cw")).up_edge == "left"
    assert sheet_motion(get_view("rotate_ccw")).up_edge == "right"
    flip, hflip = sheet_motion(get_view("flip")), sheet_motion(get_view("hflip"))
    assert (flip.up_edge, flip.mirrored, hflip.up_edge, hflip.mirrored) == ("bottom", True, "top", True)
    assert sheet_motion(get_view("jigsaw")) is None and sheet_motion(get_view("negate")) is None
    pieces = sheet_pieces(get_view("jigsaw", grid=3, seed=1), 96)
    assert len(pieces.labels) == 9 and len(pieces.lines) == 1 + 2 * 3 * 2
    assert sheet_pieces(get_view("rotate_180"), 96) is None


def test_bad_paper_and_cli(tmp_path):
    with pytest.raises(PrintSheetError, match="unknown paper"):
        paper_size("B7")
    assert paper_size("A4", landscape=True) == (297.0, 210.0)
    record = make_sample(tmp_path, "s", ["identity", "rotate_cw"], ["a digit two", "a digit five"])
    runner = CliRunner()
    result = runner.invoke(app, ["print", str(record), "--out", str(tmp_path / "p.pdf"), "--paper", "Letter",
                                 "--dpi", "100"])
    assert result.exit_code == 0, result.output
    page = PdfReader(tmp_path / "p.pdf").pages[0]
    assert float(page.mediabox.width) == pytest.approx(215.9 * MM, abs=0.5)
    result = runner.invoke(app, ["print", str(record), "--out", str(tmp_path / "p.pdf"), "--dpi", "5"])
    assert result.exit_code == 2 and "dpi" in result.output
