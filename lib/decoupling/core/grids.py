"""Which value of a hyperparameter grid the prequential blocks chose, and whether the grid's edge won.

A grid chosen among per block (`prequential.select_prequential`) is only a search if the values it picks
lie inside it: when an edge value wins most blocks, a value past that edge might have coded them in fewer
bits, and the code lengths (and every difference of them) carry how the grid was cut. `grid_use` counts
the choices per init (pretrained, random twin, reference, …) and flags a grid whose edge wins; the
experiments' grids say in a comment which counts they were sized on. Used by experiments.zoo_summary (the
leaderboard page); any chapter can call it with the chosen values of its records.
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Real
from typing import Hashable, Mapping, Sequence


@dataclass(frozen=True)
class GridUse:
    """How often each grid value was chosen: `counts` in the grid's order (ascending where the values are
    numbers), `blocks` choices in all, `top` the most chosen (the lower one on a tie), and `edge_wins`:
    an edge of the grid (its first or last value) was chosen at least as often as every interior value,
    so the choices do not show the best value inside the grid. A grid of one or two values has no
    interior: any choice made on it flags."""
    grid: tuple
    counts: tuple[int, ...]
    blocks: int
    top: Hashable
    edge_wins: bool

    def share(self, value) -> float:
        """The fraction of blocks that chose `value`."""
        return self.counts[self.grid.index(value)] / self.blocks if self.blocks else 0.0


def ordered(grid: Sequence) -> tuple:
    """The grid in the order its edges are read: ascending when every value is a number, else as given."""
    grid = tuple(grid)
    if len(set(grid)) != len(grid):
        raise ValueError(f"a grid lists each value once, got {grid}")
    return tuple(sorted(grid)) if all(isinstance(v, Real) for v in grid) else grid


def grid_use(chosen: Mapping[str, Sequence], grid: Sequence) -> dict[str, GridUse]:
    """Per init (a key of `chosen`: its chosen values, one per block that had a choice, pooled over runs
    and targets), how often each value of `grid` was chosen and whether an edge won. A block with nothing
    seen to choose on (the first coded block, always candidate 0) is not a choice: leave it out. A value
    not in the grid is refused (it would be counted nowhere)."""
    grid = ordered(grid)
    out = {}
    for init, values in chosen.items():
        values = list(values)
        stray = sorted({repr(v) for v in values if v not in grid})
        if stray:
            raise ValueError(f"{init}: chosen values outside the grid {grid}: {', '.join(stray)}")
        counts = tuple(sum(v == g for v in values) for g in grid)
        most = max(counts, default=0)
        top = grid[counts.index(most)] if values else None
        interior = counts[1:-1]
        edge = max(counts[0], counts[-1]) if grid else 0
        out[init] = GridUse(grid, counts, len(values), top,
                            bool(values) and (not interior or edge >= max(interior)))
    return out
