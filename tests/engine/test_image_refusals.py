"""Only JPEG, PNG, BMP, TIFF and WebP reach a decoder, and a pixel bomb is called too large."""

import io

import pytest
from PIL import Image

from engine.images import ImageError, probe_image


def encoded(fmt: str, size=(64, 64), mode="RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "TIFF", "WEBP"])
def test_the_five_photo_formats_are_decoded(fmt):
    assert probe_image(encoded(fmt)).format == fmt


@pytest.mark.parametrize("fmt", ["ICO", "GIF", "JPEG2000", "QOI", "EPS", "PPM", "TGA"])
def test_every_other_format_is_refused_without_reaching_its_decoder(fmt):
    try:
        data = encoded(fmt)
    except (KeyError, OSError):
        pytest.skip(f"this Pillow cannot write {fmt}")
    with pytest.raises(ImageError) as refused:
        probe_image(data)
    assert refused.value.code == "not_an_image" and "JPEG, PNG, BMP, TIFF or WebP" in refused.value.message


def test_a_20000_pixel_square_png_is_too_large_not_damaged():
    bomb = encoded("PNG", size=(20_000, 20_000), mode="1")  # 48 KB of file, 400 megapixels
    with pytest.raises(ImageError) as refused:
        probe_image(bomb)
    assert refused.value.code == "too_large" and "40 megapixels" in refused.value.message
