"""The per-cell head's arithmetic: what serving computes is what training fitted."""

import numpy as np

from engine.head import PixelHead, double, fit_head
from engine.model import head_inputs


def test_doubling_a_grid_interpolates_between_cell_centres():
    grid = np.array([[0.0, 4.0], [8.0, 12.0]], np.float32)[..., None]
    doubled = double(grid)[..., 0]
    assert doubled.shape == (4, 4)
    # Each new cell lies a quarter of a cell from its parent's centre; edges repeat.
    np.testing.assert_allclose(doubled[0], [0.0, 1.0, 3.0, 4.0])
    np.testing.assert_allclose(doubled[:, 0], [0.0, 2.0, 6.0, 8.0])
    np.testing.assert_allclose(doubled[1, 1], 0.75 * 0.75 * 0 + 0.75 * 0.25 * (4 + 8) + 0.25 * 0.25 * 12)


def test_a_stride_4_head_serves_the_logits_it_was_fitted_on_at_a_quarter_of_the_cost():
    rng = np.random.default_rng(0)
    features = rng.random((6, 5, 10), dtype=np.float32)
    distance = rng.random((6, 5), dtype=np.float32) + 0.1
    fine = rng.random((12, 10, 3), dtype=np.float32)
    rows = head_inputs(features, distance, fine)  # what training fits on
    assert rows.shape == (120, 3 + 10 + 1)
    targets = np.zeros((120, 2), np.float32)
    targets[np.arange(120), (rows[:, 0] > 0.5).astype(int)] = 1.0
    head = fit_head(rows, targets, seed=0, steps=50)
    coarse = np.concatenate([features, np.log(distance)[..., None]], axis=-1)
    np.testing.assert_allclose(head.fine_logits(fine, coarse), head.logits(rows), rtol=1e-4, atol=1e-4)


def test_the_head_round_trips_through_its_tensors():
    rng = np.random.default_rng(1)
    x = rng.random((200, 4), dtype=np.float32)
    targets = np.stack([x[:, 0] < 0.8, x[:, 0] >= 0.8], axis=1).astype(np.float32)
    head = fit_head(x, targets, seed=0, steps=100)
    again = PixelHead.from_tensors(head.to_tensors())
    np.testing.assert_array_equal(again.logits(x), head.logits(x))
    assert (head.probabilities(x)[:, 1] > 0.5).mean() > 0.1  # it learned the rare class
