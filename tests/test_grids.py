"""core.grids on choices with known counts: an edge that wins is flagged, an interior winner is not, and a
grid with no interior flags whatever it chose."""
from __future__ import annotations

import pytest

from decoupling.core.grids import grid_use, ordered


def test_counts_follow_the_grid_in_ascending_order_and_an_edge_winner_is_flagged():
    use = grid_use({"pretrained": [0.05, 0.05, 0.01, 0.25, 0.05]}, grid=(0.05, 0.01, 0.25))["pretrained"]
    assert use.grid == (0.01, 0.05, 0.25) and use.counts == (1, 3, 1) and use.blocks == 5
    assert use.top == 0.05 and not use.edge_wins and use.share(0.05) == pytest.approx(0.6)
    top = grid_use({"twin": [0.01] * 7 + [0.05] * 2}, grid=(0.01, 0.05, 0.25))["twin"]
    assert top.counts == (7, 2, 0) and top.top == 0.01 and top.edge_wins


def test_a_tie_between_an_edge_and_the_interior_flags_and_inits_are_counted_apart():
    uses = grid_use({"a": [1, 1, 10, 10], "b": [10, 10, 10, 100]}, grid=[1, 10, 100])
    assert uses["a"].counts == (2, 2, 0) and uses["a"].top == 1 and uses["a"].edge_wins  # 1 is as good a guess
    assert uses["b"].counts == (0, 3, 1) and uses["b"].top == 10 and not uses["b"].edge_wins


def test_a_grid_without_interior_always_flags_and_nothing_chosen_flags_nothing():
    assert grid_use({"x": [1.0, 10.0, 10.0]}, (1.0, 10.0))["x"].edge_wins  # two values: no interior to win
    assert grid_use({"x": [2e-3]}, (2e-3,))["x"].edge_wins
    empty = grid_use({"x": []}, (1, 10, 100))["x"]
    assert empty.blocks == 0 and empty.top is None and not empty.edge_wins and empty.share(10) == 0.0


def test_names_keep_their_order_and_values_off_the_grid_or_repeated_are_refused():
    assert ordered(["low", "mid", "high"]) == ("low", "mid", "high")
    use = grid_use({"x": ["mid", "high", "high"]}, ["low", "mid", "high"])["x"]
    assert use.counts == (0, 1, 2) and use.edge_wins
    with pytest.raises(ValueError, match="outside the grid"):
        grid_use({"x": [0.5]}, (1.0, 10.0))
    with pytest.raises(ValueError, match="once"):
        grid_use({"x": [1.0]}, (1.0, 1.0, 10.0))
