"""The jigsaw view: interlocking puzzle pieces, generated procedurally and shuffled (seeded).

Geometry. A square image is cut into a ``grid x grid`` array of cells of side ``P = N / grid``.
Every internal edge carries one round knob: a disc of radius `KNOB_RADIUS` x P whose centre lies
on the edge's perpendicular bisector, `KNOB_OFFSET` x P past the edge, so it has a neck narrower
than its head. A checkerboard decides who owns the knob: pieces with (row + col) even have knobs
out on all their internal edges, odd pieces have holes, so every edge has one knob and one hole.
Border edges are flat. Pixels belong to a piece by their centres.

Shuffle. Pieces fall in classes (parity, corner/edge/interior); the seeded puzzle sends each piece
to a slot of its class, turned so that flat sides stay on the border (interior pieces get a seeded
random turn). Because the knob is symmetric and defined relative to the piece, a turned piece
covers its new slot exactly; because turns by multiples of 90 degrees about a cell centre map the
pixel grid onto itself (for odd and even P alike), the view is an exact permutation. Membership is
computed in integer half-pixel offsets, evaluated in each side's own rotated frame, so a pixel and
its turned image get bit-identical tests.

The same puzzle (grid, seed, knob shape in piece units) rasterises at any size divisible by the
grid, which is what moving attention maps between views needs.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import ViewError, divisibility_problem
from .permutation import PermutationView, rigid_piece_frame

KNOB_RADIUS = 0.18  # knob disc radius, in piece sides
KNOB_OFFSET = 0.12  # distance of the knob's centre past the edge, in piece sides

CORNER, EDGE, INTERIOR = "corner", "edge", "interior"


def _slot_kind(row: int, col: int, grid: int) -> tuple[str, int]:
    """``(kind, orientation)`` of a slot: orientation counts the clockwise quarter turns that take
    the canonical piece of its kind (corner: top-left; edge: top) to this slot's border sides."""
    top, bottom, left, right = row == 0, row == grid - 1, col == 0, col == grid - 1
    if (top or bottom) and (left or right):
        return CORNER, {(True, True): 0, (True, False): 1, (False, False): 2, (False, True): 3}[(top, left)]
    for orientation, on_side in enumerate((top, right, bottom, left)):
        if on_side:
            return EDGE, orientation
    return INTERIOR, 0


def make_puzzle(grid: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The seeded shuffle: ``(target_slot, turns)``, both ``(grid*grid,)`` int64 indexed by piece.

    Piece ``i`` (its home slot in raster order) goes to slot ``target_slot[i]``, turned by
    ``turns[i]`` clockwise quarter turns about its centre.
    """
    generator = torch.Generator().manual_seed(int(seed))
    slots = [(r, c) for r in range(grid) for c in range(grid)]  # a loop over pieces, not pixels
    kinds = [_slot_kind(r, c, grid) for r, c in slots]
    classes: dict[tuple[int, str], list[int]] = {}
    for index, ((r, c), (kind, _)) in enumerate(zip(slots, kinds)):
        classes.setdefault(((r + c) % 2, kind), []).append(index)
    target = torch.arange(grid * grid)
    turns = torch.zeros(grid * grid, dtype=torch.long)
    for key in sorted(classes):
        members = torch.tensor(classes[key])
        destinations = members[torch.randperm(len(members), generator=generator)]
        target[members] = destinations
        if key[1] == INTERIOR:
            turns[members] = torch.randint(0, 4, (len(members),), generator=generator)
        elif grid > 1:
            orientation = torch.tensor([kinds[i][1] for i in range(grid * grid)])
            turns[members] = (orientation[destinations] - orientation[members]) % 4
    return target, turns


def _turn(a: torch.Tensor, b: torch.Tensor, quarter_turns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn integer offsets ``(a, b)`` (x right, y down) clockwise by ``quarter_turns`` (0..3), exactly."""
    q = quarter_turns % 4
    new_a = torch.where(q == 0, a, torch.where(q == 1, -b, torch.where(q == 2, -a, b)))
    new_b = torch.where(q == 0, b, torch.where(q == 1, a, torch.where(q == 2, -b, -a)))
    return new_a, new_b


def _in_top_knob(a: torch.Tensor, b: torch.Tensor, side: int) -> torch.Tensor:
    """Whether half-pixel offsets ``(a, b)`` from a cell's centre lie in the knob entering the cell
    through its top edge (the edge is at ``b = -side``; everything is in half-pixel units)."""
    centre = -side + 2 * KNOB_OFFSET * side
    radius = 2 * KNOB_RADIUS * side
    a, b = a.double(), b.double()
    return a * a + (b - centre) ** 2 < radius * radius


def ownership(grid: int, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(owner_row, owner_col)``, each ``(N, N)``: the home slot of the piece owning every pixel."""
    size = grid * side
    y = torch.arange(size)[:, None].expand(size, size)
    x = torch.arange(size)[None, :].expand(size, size)
    row, col = y // side, x // side
    a, b = 2 * (x - col * side) + 1 - side, 2 * (y - row * side) + 1 - side
    odd = (row + col) % 2 == 1  # odd cells have holes: the even neighbours' knobs reach into them
    owner_row, owner_col = row.clone(), col.clone()
    # Each side tested in its own frame, rotated so that the side is on top (exact integer turns).
    sides = (
        ((a, b), -1, 0, row > 0),
        ((b, -a), 0, 1, col < grid - 1),
        ((-a, -b), 1, 0, row < grid - 1),
        ((-b, a), 0, -1, col > 0),
    )
    for (side_a, side_b), d_row, d_col, has_neighbour in sides:
        taken = odd & has_neighbour & _in_top_knob(side_a, side_b, side)
        owner_row = torch.where(taken, row + d_row, owner_row)
        owner_col = torch.where(taken, col + d_col, owner_col)
    return owner_row, owner_col


class JigsawView(PermutationView):
    """Shuffle interlocking jigsaw pieces of a ``grid x grid`` puzzle (seeded); square images.

    Works at any size divisible by ``grid`` (and rebuilds the same puzzle at coarser map sizes).
    """

    name = "jigsaw"
    square_only = True
    positional = ("grid", "seed")

    def __init__(self, grid: int = 4, seed: int = 0):
        if int(grid) < 1:
            raise ViewError(f"jigsaw needs grid >= 1 (pieces per side), got {grid}")
        self.grid, self.seed = int(grid), int(seed)

    def params(self) -> dict[str, Any]:
        return {"grid": self.grid, "seed": self.seed}

    def size_problem(self, height: int, width: int, multiple: int = 1) -> str | None:
        return super().size_problem(height, width) or divisibility_problem(
            height, width, self.grid, self.grid, "piece grid", multiple
        )

    def puzzle(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(target_slot, turns)`` per piece; see `make_puzzle`."""
        cached = self.__dict__.get("_puzzle")
        if cached is None:
            cached = self.__dict__["_puzzle"] = make_puzzle(self.grid, self.seed)
        return cached

    def pieces(self, height: int, width: int) -> torch.Tensor:
        """``(H, W)`` int64: the piece (its home slot, raster order) that owns every pixel."""
        self.check(height, width, self.spaces[0])
        owner_row, owner_col = ownership(self.grid, height // self.grid)
        return owner_row * self.grid + owner_col

    def _build_permutation(self, height: int, width: int) -> torch.Tensor:
        grid, side = self.grid, height // self.grid
        owner_row, owner_col = ownership(grid, side)
        y = torch.arange(height)[:, None]
        x = torch.arange(width)[None, :]
        # Half-pixel offsets from the owning piece's home centre (knob pixels reach past +-side).
        a, b = 2 * (x - owner_col * side) + 1 - side, 2 * (y - owner_row * side) + 1 - side
        target, turns = self.puzzle()
        piece = owner_row * grid + owner_col
        new_a, new_b = _turn(a, b, turns[piece])
        new_x = (new_a + side - 1) // 2 + (target[piece] % grid) * side
        new_y = (new_b + side - 1) // 2 + (target[piece] // grid) * side
        destination = (new_y * width + new_x).flatten()
        perm = torch.empty_like(destination)
        perm[destination] = torch.arange(height * width)  # output `destination` shows input pixel i
        return perm

    def make_frame(self, image: torch.Tensor, s: float) -> torch.Tensor:
        """Pieces travel in straight lines to their slots, turning the short way as they go."""
        if s <= 0 or s >= 1:
            return super().make_frame(image, s)
        height, width = image.shape[-2:]
        grid, side = self.grid, height // self.grid
        owner = self.pieces(height, width)
        target, turns = self.puzzle()
        home = torch.arange(grid * grid)
        short_turns = torch.where(turns == 3, -1, turns).double()
        return rigid_piece_frame(
            image, s, owner, _slot_centres(home, grid, side), _slot_centres(target, grid, side), short_turns
        )


def _slot_centres(slots: torch.Tensor, grid: int, side: int) -> torch.Tensor:
    """``(n, 2)`` ``(y, x)`` pixel coordinates of the centres of slots (raster indices)."""
    return torch.stack([(slots // grid + 0.5) * side - 0.5, (slots % grid + 0.5) * side - 0.5], 1).double()


__all__ = ["JigsawView", "KNOB_OFFSET", "KNOB_RADIUS", "make_puzzle", "ownership"]
