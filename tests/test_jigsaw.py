"""The jigsaw view: pieces tile the image, the shuffle is a seeded bijection that fits every piece
exactly into its new slot, at every size divisible by the piece grid (attention maps included)."""

from __future__ import annotations

import pytest
import torch

from anagram.views import ViewError, get_view
from anagram.views.jigsaw import JigsawView, make_puzzle, ownership
from anagram.views.permutation import is_permutation

scipy_ndimage = pytest.importorskip("scipy.ndimage")

SIZES = [(4, 16), (4, 32), (4, 64), (4, 256), (4, 20), (3, 63), (3, 21), (2, 14), (5, 40), (8, 64)]


@pytest.mark.parametrize("grid, size", SIZES)
def test_permutation_is_a_bijection(grid, size):
    perm = JigsawView(grid, seed=7).permutation(size, size)
    assert perm.shape == (size * size,) and is_permutation(perm)
    assert torch.equal(torch.sort(perm).values, torch.arange(size * size))


@pytest.mark.parametrize("grid, size", SIZES)
def test_every_piece_lands_exactly_on_its_new_slot(grid, size):
    """The owner (home slot) of each output pixel is the target of the piece that moved there."""
    view = JigsawView(grid, seed=3)
    owner = view.pieces(size, size).flatten()
    target, _ = view.puzzle()
    perm = view.permutation(size, size)
    assert torch.equal(owner, target[owner[perm]])


@pytest.mark.parametrize("grid, size", [(4, 64), (3, 63), (4, 256), (5, 40)])
def test_pieces_tile_the_image_and_look_like_pieces(grid, size):
    side = size // grid
    owner = JigsawView(grid).pieces(size, size)
    assert owner.shape == (size, size)
    counts = torch.bincount(owner.flatten(), minlength=grid * grid)
    assert counts.sum() == size * size and (counts > 0).all()  # every pixel owned once, every piece present
    assert ((counts > 0.5 * side**2) & (counts < 1.6 * side**2)).all()
    for piece in range(grid * grid):
        _, components = scipy_ndimage.label((owner == piece).numpy())
        assert components == 1, f"piece {piece} is in {components} parts"
    # Knobs: even pieces stick out of their cell, odd ones have holes (checkerboard).
    row, col = torch.arange(grid * grid) // grid, torch.arange(grid * grid) % grid
    interior = (row > 0) & (row < grid - 1) & (col > 0) & (col < grid - 1)
    even = (row + col) % 2 == 0
    assert (counts[interior & even] > side**2).all() and (counts[interior & ~even] < side**2).all()


def test_knob_shape_is_symmetric_so_turned_pieces_fit():
    owner_row, owner_col = ownership(4, 16)
    piece = ((owner_row == 1) & (owner_col == 1)).int()  # an even interior piece: 4 knobs
    window = piece[4:44, 4:44]  # cell (1, 1) spans 16..31: the window is centred on it
    assert torch.equal(window, torch.rot90(window, 1)) and torch.equal(window, window.flip(0))


def test_puzzle_keeps_classes_and_flat_sides_on_the_border():
    grid = 5
    target, turns = make_puzzle(grid, seed=11)
    assert sorted(target.tolist()) == list(range(grid * grid))
    row, col = torch.arange(grid * grid) // grid, torch.arange(grid * grid) % grid
    border = (row == 0).int() + (row == grid - 1).int() + (col == 0).int() + (col == grid - 1).int()
    assert torch.equal((row + col) % 2, (target // grid + target % grid) % 2)  # parity kept
    assert torch.equal(border, border[target])  # corners to corners, edges to edges
    assert ((turns >= 0) & (turns < 4)).all()


def test_same_seed_same_puzzle_different_seeds_differ():
    perms = [JigsawView(4, seed=seed).permutation(64, 64) for seed in range(8)]
    assert torch.equal(perms[0], JigsawView(4, seed=0).permutation(64, 64))
    assert torch.equal(perms[0], get_view("jigsaw", seed=0).permutation(64, 64))
    assert len({tuple(p[::97].tolist()) for p in perms}) == len(perms)


def test_same_puzzle_rebuilds_at_coarser_map_sizes():
    view = JigsawView(4, seed=5)
    target, turns = view.puzzle()
    for size in (64, 32, 16, 8, 4):
        perm = view.permutation(size, size)
        owner = view.pieces(size, size).flatten()
        assert is_permutation(perm) and torch.equal(owner, target[owner[perm]])
        maps = torch.rand(1, 2, size, size)
        assert torch.equal(view.inverse_map(view.view(maps)), maps)
    # at a whole-piece resolution the puzzle is a plain slot permutation
    slots = view.permutation(4, 4)
    assert torch.equal(target[slots], torch.arange(16))
    with pytest.raises(ViewError, match="multiple of 4"):
        view.permutation(18, 18)


def test_pieces_travel_in_animation_frames():
    view = JigsawView(4, seed=1)
    image = torch.rand(3, 32, 32)
    middle = view.make_frame(image, 0.5)
    assert not torch.allclose(middle, image) and not torch.allclose(middle, view.view_image(image))
    assert torch.equal(view.make_frame(image, 0), image) and torch.equal(view.make_frame(image, 1), view.view_image(image))
