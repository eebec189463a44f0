"""Reading uploaded masks (binary or Lookout for Vision's colours) and drawing stored ones."""

import io

import numpy as np
import pytest
from PIL import Image

from engine.images import ImageError
from projects.masks import (
    MaskClass,
    binary_png,
    color_png,
    decode_upload,
    encode_indices,
    overlay_png,
    read_stored,
)

CRACK = MaskClass(index=1, name="crack", color="#e6194b")
DENT = MaskClass(index=4, name="dent", color="#3cb44b")
CLASSES = [CRACK, DENT]


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array, mode=mode).save(out, format="PNG")
    return out.getvalue()


def two_defects() -> np.ndarray:
    indices = np.zeros((48, 64), dtype=np.uint8)
    indices[5:10, 5:20] = CRACK.index
    indices[20:30, 30:40] = DENT.index
    return indices


def decode(data: bytes, *, binary_class=None, classes=CLASSES) -> np.ndarray:
    return decode_upload(data, width=64, height=48, classes=classes, binary_class=binary_class)


def test_a_colour_mask_maps_each_class_colour_to_its_index():
    indices = two_defects()
    assert (decode(color_png(indices, CLASSES)) == indices).all()


def test_black_counts_as_background_in_a_colour_mask_as_white_does():
    rgb = np.zeros((48, 64, 3), dtype=np.uint8)
    rgb[5:10, 5:20] = (0xE6, 0x19, 0x4B)
    decoded = decode(png(rgb))
    assert decoded[7, 7] == CRACK.index and int((decoded > 0).sum()) == 5 * 15


def test_a_black_and_white_mask_marks_the_class_it_is_given():
    indices = two_defects()
    decoded = decode(binary_png(indices), binary_class=DENT)
    assert (decoded == np.where(indices > 0, DENT.index, 0)).all()


def test_any_grey_of_a_binary_mask_is_defect_as_before_classes_existed():
    grey = np.zeros((48, 64), dtype=np.uint8)
    grey[0:4, 0:4] = 1
    grey[10:12, 10:12] = 128
    decoded = decode(png(grey), binary_class=CRACK)
    assert int((decoded == CRACK.index).sum()) == 16 + 4


def test_a_binary_mask_in_a_project_with_several_classes_must_say_which_class():
    with pytest.raises(ImageError) as caught:
        decode(binary_png(two_defects()))
    assert caught.value.code == "class_required" and "“crack”, “dent”" in caught.value.message


def test_a_colour_that_matches_no_class_is_named_with_its_pixel_count():
    rgb = np.full((48, 64, 3), 255, dtype=np.uint8)
    rgb[0:3, 0:3] = (1, 2, 3)
    rgb[10:12, 10:12] = (0xE6, 0x19, 0x4B)
    with pytest.raises(ImageError) as caught:
        decode(png(rgb))
    assert caught.value.code == "unknown_color"
    assert "#010203 (9 pixels)" in caught.value.message and "crack (#e6194b)" in caught.value.message


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty"),
        (b"not a png", "not_an_image"),
        (binary_png(np.zeros((32, 32), dtype=np.uint8)), "wrong_size"),
        (binary_png(np.zeros((48, 64), dtype=np.uint8)), "empty_mask"),
        (color_png(np.zeros((48, 64), dtype=np.uint8), CLASSES), "empty_mask"),
        (png(np.full((48, 64), 90, dtype=np.uint8)), "no_background"),
    ],
)
def test_a_mask_that_cannot_be_used_is_refused_with_a_reason(data, code):
    with pytest.raises(ImageError) as caught:
        decode(data, binary_class=CRACK)
    assert caught.value.code == code and caught.value.message


def test_stored_masks_keep_their_indices_and_old_binary_ones_read_as_the_implicit_class():
    indices = two_defects()
    assert (read_stored(encode_indices(indices), binary=False, width=64, height=48, implicit_index=1) == indices).all()
    legacy = read_stored(binary_png(indices), binary=True, width=64, height=48, implicit_index=1)
    assert (legacy == (indices > 0)).all() and legacy.dtype == np.uint8


def test_the_colour_mask_is_white_where_there_is_no_defect():
    rgb = np.asarray(Image.open(io.BytesIO(color_png(two_defects(), CLASSES))).convert("RGB"))
    assert tuple(rgb[0, 0]) == (255, 255, 255)
    assert tuple(rgb[7, 7]) == (0xE6, 0x19, 0x4B) and tuple(rgb[25, 35]) == (0x3C, 0xB4, 0x4B)


def test_the_overlay_is_transparent_on_background_and_scales_without_blending():
    rgba = np.asarray(Image.open(io.BytesIO(overlay_png(two_defects(), CLASSES, size=(128, 96)))).convert("RGBA"))
    assert rgba.shape == (96, 128, 4)
    assert rgba[0, 0, 3] == 0
    assert tuple(rgba[15, 15]) == (0xE6, 0x19, 0x4B, 255)
    colours = {tuple(p) for p in rgba.reshape(-1, 4) if p[3]}
    assert colours == {(0xE6, 0x19, 0x4B, 255), (0x3C, 0xB4, 0x4B, 255)}
