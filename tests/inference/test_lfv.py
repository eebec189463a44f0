import io

import numpy as np
from PIL import Image

from inference.lfv import lfv_mask_png


def test_a_mask_is_a_palette_png_of_the_image_size_in_the_class_colours():
    mask = np.zeros((48, 64), dtype=np.uint8)
    mask[10:20, 30:40] = 2
    png = Image.open(io.BytesIO(lfv_mask_png(mask, ["#00FF00", "#0000FF"])))
    assert png.size == (64, 48) and png.mode == "P"
    rgb = np.asarray(png.convert("RGB"))
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[15, 35]) == (0, 0, 255)


def test_a_mask_without_defect_pixels_is_encoded_once_per_size_and_answers_the_same_bytes():
    blank = np.zeros((48, 64), dtype=bool)
    first = lfv_mask_png(blank)
    assert lfv_mask_png(blank) is first  # cached: normal photos cost no PNG encoding
    assert lfv_mask_png(np.zeros((64, 48), dtype=bool)) != first  # another size, another PNG
    png = Image.open(io.BytesIO(first))
    assert png.size == (64, 48) and not np.asarray(png).any()
    one = np.zeros((48, 64), dtype=bool)
    one[0, 0] = True
    assert lfv_mask_png(one) != first
