"""Decoding accepts what cameras and phones produce and refuses the rest with a readable error."""

import io

import numpy as np
import pytest
from PIL import Image

from engine import images
from engine.images import ImageError, decode_image, decode_mask, probe_image, thumbnail_jpeg
from tests.datasets import COOKIES, shared_set


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def gradient(width: int = 80, height: int = 60) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)
    r = np.broadcast_to(x[None, :], (height, width))
    g = np.broadcast_to(y[:, None], (height, width))
    return np.stack([r, g, 255 - r], axis=-1).astype(np.uint8)


def test_it_decodes_rgb_jpeg_to_uint8_rgb():
    out = decode_image(encode(Image.fromarray(gradient()), "JPEG", quality=95))
    assert out.shape == (60, 80, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - gradient().astype(int)).mean() < 4


def test_it_turns_greyscale_into_three_equal_channels():
    grey = gradient()[..., 0]
    out = decode_image(encode(Image.fromarray(grey, mode="L")))
    assert out.shape == (60, 80, 3)
    assert (out[..., 0] == grey).all() and (out[..., 1] == grey).all() and (out[..., 2] == grey).all()


def test_it_stretches_16_bit_images_that_use_only_12_bits():
    twelve_bit = (np.linspace(0, 4095, 80 * 60).reshape(60, 80)).astype(np.uint16)
    out = decode_image(encode(Image.fromarray(twelve_bit)))  # Pillow: mode I;16
    assert out.shape == (60, 80, 3)
    assert out.max() == 255 and out.min() == 0  # a fixed /256 would have left it at most 15


def test_it_puts_transparent_pixels_on_white():
    rgba = np.zeros((60, 80, 4), np.uint8)
    rgba[:, :40] = (255, 0, 0, 255)  # opaque red left half, fully transparent right half
    out = decode_image(encode(Image.fromarray(rgba, mode="RGBA")))
    assert (out[:, :40] == (255, 0, 0)).all()
    assert (out[:, 40:] == 255).all()


def test_it_decodes_palette_images():
    palette = Image.fromarray(gradient()).quantize(colors=16)
    assert palette.mode == "P"
    out = decode_image(encode(palette))
    assert out.shape == (60, 80, 3)
    assert np.abs(out.astype(int) - gradient().astype(int)).mean() < 20


def test_it_applies_exif_orientation():
    image = Image.fromarray(gradient(80, 60))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = encode(image, "JPEG", quality=95, exif=exif.tobytes())
    assert decode_image(data).shape == (80, 60, 3)
    assert probe_image(data).width == 60


def test_it_accepts_small_and_large_photos():
    assert decode_image(encode(Image.fromarray(gradient(64, 64)))).shape == (64, 64, 3)
    big = Image.new("RGB", (4096, 3072), (90, 120, 30))
    assert decode_image(encode(big, "JPEG", quality=80)).shape == (3072, 4096, 3)


@pytest.mark.parametrize(
    "data, code",
    [
        (b"", "empty"),
        (b"this is a text file, not a photo", "not_an_image"),
        (encode(Image.new("RGB", (16, 16))), "too_small"),
    ],
)
def test_it_refuses_what_is_not_a_usable_image(data, code):
    with pytest.raises(ImageError) as error:
        decode_image(data)
    assert error.value.code == code
    assert error.value.message


def test_it_refuses_a_truncated_file():
    data = encode(Image.fromarray(gradient(400, 300)), "JPEG", quality=95)
    with pytest.raises(ImageError) as error:
        decode_image(data[: len(data) // 2])
    assert error.value.code == "corrupt"


def test_a_mask_must_match_its_image():
    mask = np.zeros((60, 80), np.uint8)
    mask[10:20, 30:50] = 255
    decoded = decode_mask(encode(Image.fromarray(mask)), width=80, height=60)
    assert decoded.dtype == bool and decoded.sum() == 200
    with pytest.raises(ImageError) as error:
        decode_mask(encode(Image.fromarray(mask)), width=60, height=80)
    assert error.value.code == "wrong_size"


def test_thumbnails_are_small_jpegs():
    thumb = Image.open(io.BytesIO(thumbnail_jpeg(encode(Image.fromarray(gradient(800, 600))), max_side=100)))
    assert thumb.format == "JPEG" and max(thumb.size) == 100


def test_a_jpeg_thumbnail_is_decoded_at_a_reduced_size_but_looks_the_same():
    # libjpeg decodes straight to 1/2 here (384x288, still >= 320): half the work of a full decode.
    photo = gradient(768, 576)
    thumb = Image.open(io.BytesIO(thumbnail_jpeg(encode(Image.fromarray(photo), "JPEG", quality=95))))
    assert thumb.format == "JPEG" and thumb.size == (320, 240)
    full = np.asarray(Image.fromarray(photo).resize((320, 240), Image.Resampling.LANCZOS), dtype=np.float32)
    assert np.abs(np.asarray(thumb, dtype=np.float32) - full).mean() < 3


def test_a_truncated_jpeg_is_refused_when_thumbnailed_too():
    data = encode(Image.fromarray(gradient(768, 576)), "JPEG", quality=95)
    with pytest.raises(ImageError) as error:
        thumbnail_jpeg(data[: len(data) // 2])
    assert error.value.code == "corrupt"


def test_a_thumbnail_of_a_decoded_photo_looks_like_the_thumbnail_of_its_file():
    from engine.images import thumbnail_jpeg_of_array

    photo = gradient(768, 576)
    data = encode(Image.fromarray(photo), "JPEG", quality=95)
    of_array = Image.open(io.BytesIO(thumbnail_jpeg_of_array(decode_image(data))))
    of_file = Image.open(io.BytesIO(thumbnail_jpeg(data)))
    assert of_array.format == "JPEG" and of_array.size == of_file.size == (320, 240)
    assert np.abs(np.asarray(of_array, dtype=np.float32) - np.asarray(of_file, dtype=np.float32)).mean() < 3


# simplejpeg decodes plain colour JPEGs; Pillow decodes everything else and is the reference.


def pillow_decode(monkeypatch, data: bytes) -> np.ndarray:
    with monkeypatch.context() as m:
        m.setattr(images, "simplejpeg", None)
        return decode_image(data)


def pillow_refusal(monkeypatch, data: bytes) -> ImageError:
    with monkeypatch.context() as m:
        m.setattr(images, "simplejpeg", None)
        with pytest.raises(ImageError) as error:
            decode_image(data)
    return error.value


def plain_jpegs() -> list[tuple[str, bytes]]:
    """The fixture cookies and the JPEG variants a camera may write, all of them plain YCbCr."""
    cases = [(path.name, path.read_bytes()) for path in sorted(COOKIES.glob("*/*.jpg"))]
    photo = Image.open(COOKIES / "normal" / "train-normal-1.jpg")
    odd = photo.crop((1, 3, 236, 313))  # sizes that are no multiple of the 8 or 16 px blocks
    for name, picture in (("full", photo), ("odd size", odd)):
        for subsampling in (0, 1, 2):  # 4:4:4, 4:2:2, 4:2:0
            cases.append((f"{name} subsampling {subsampling}", encode(picture, "JPEG", subsampling=subsampling)))
        cases.append((f"{name} progressive", encode(picture, "JPEG", progressive=True, quality=90)))
        cases.append((f"{name} restart markers", encode(picture, "JPEG", restart_marker_blocks=4)))
        cases.append((f"{name} optimized", encode(picture, "JPEG", optimize=True, quality=50)))
    return cases


def test_a_plain_jpeg_takes_simplejpeg_and_gets_pillows_pixels_exactly(monkeypatch):
    decoded = []
    monkeypatch.setattr(images.simplejpeg, "decode_jpeg", spy(images.simplejpeg.decode_jpeg, decoded))
    for name, data in plain_jpegs():
        before = len(decoded)
        out = decode_image(data)
        assert len(decoded) == before + 1, f"{name}: not decoded by simplejpeg"
        expected = pillow_decode(monkeypatch, data)
        assert out.dtype == expected.dtype and np.array_equal(out, expected), name


def test_other_images_keep_pillows_decoder(monkeypatch):
    decoded = []
    monkeypatch.setattr(images.simplejpeg, "decode_jpeg", spy(images.simplejpeg.decode_jpeg, decoded))
    photo = Image.open(COOKIES / "normal" / "train-normal-1.jpg")
    turned = Image.Exif()
    turned[0x0112] = 6
    for data in (
        encode(photo, "JPEG", exif=turned.tobytes()),  # EXIF orientation: Pillow turns it
        encode(photo.convert("L"), "JPEG"),
        encode(photo.convert("CMYK"), "JPEG"),
        encode(photo, "JPEG", keep_rgb=True),  # RGB components, no YCbCr
        encode(photo),  # PNG
    ):
        assert np.array_equal(decode_image(data), pillow_decode(monkeypatch, data))
    assert decoded == []


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.999])
def test_a_truncated_jpeg_is_refused_as_corrupt_as_before(monkeypatch, cut):
    data = (COOKIES / "normal" / "train-normal-1.jpg").read_bytes()
    data = data[: int(len(data) * cut)]
    with pytest.raises(ImageError) as error:
        decode_image(data)
    expected = pillow_refusal(monkeypatch, data)
    assert (error.value.code, error.value.message) == (expected.code, expected.message)
    assert error.value.code == "corrupt"


def test_a_damaged_jpeg_is_decoded_or_refused_as_pillow_did(monkeypatch):
    # libjpeg only warns about most damaged entropy data (Pillow decodes such a file) and stops at
    # some: simplejpeg refuses both, and Pillow decides as before. Seeded: the same bytes each run.
    rng = np.random.default_rng(0)
    data = (COOKIES / "anomaly" / "test-anomaly-1.jpg").read_bytes()
    outcomes = set()
    for _ in range(40):
        damaged = bytearray(data)
        for at in rng.integers(len(data) // 4, len(data), size=3):
            damaged[at] = rng.integers(256)
        damaged = bytes(damaged)
        try:
            out = decode_image(damaged)
        except ImageError as error:
            expected = pillow_refusal(monkeypatch, damaged)
            assert (error.code, error.message) == (expected.code, expected.message)
            outcomes.add("refused")
        else:
            assert np.array_equal(out, pillow_decode(monkeypatch, damaged))
            outcomes.add("decoded")
    assert "decoded" in outcomes


@pytest.mark.shared_data
def test_every_jpeg_of_the_shared_sets_decodes_to_pillows_pixels(monkeypatch):
    paths = sorted(p for name in ("cookies", "ball_screw") for p in shared_set(name).rglob("*.jpg"))
    assert len(paths) >= 452
    for path in paths:
        data = path.read_bytes()
        assert np.array_equal(decode_image(data), pillow_decode(monkeypatch, data)), path


def spy(function, calls: list):
    def spied(*args, **kwargs):
        calls.append(args)
        return function(*args, **kwargs)

    return spied
