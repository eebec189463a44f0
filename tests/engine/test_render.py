"""Heatmap overlays and mask PNGs."""

import io

import numpy as np
from PIL import Image

from engine import decode_mask, heatmap_png, mask_png


def test_the_heatmap_is_a_transparent_overlay_where_the_part_looks_normal():
    grid = np.zeros((6, 8), np.float32)
    grid[:, 4:] = 0.9  # right half well past the threshold
    image = Image.open(io.BytesIO(heatmap_png(grid, width=160, height=120)))
    assert image.format == "PNG" and image.mode == "RGBA" and image.size == (160, 120)
    rgba = np.asarray(image)
    assert (rgba[:, :60, 3] == 0).all()
    assert (rgba[:, 100:, 3] > 100).all() and (rgba[:, 100:, 0] > 200).all()


def test_a_mask_png_reads_back_as_the_same_mask():
    mask = np.zeros((50, 70), bool)
    mask[10:20, 30:40] = True
    data = mask_png(mask)
    assert Image.open(io.BytesIO(data)).mode == "L"
    np.testing.assert_array_equal(decode_mask(data, width=70, height=50), mask)
