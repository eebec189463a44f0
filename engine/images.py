"""Decoding of uploaded image bytes into arrays the engine can use.

Everything a factory camera or a person's phone is likely to produce is accepted: JPEG, PNG,
BMP, TIFF, WebP, in RGB, RGBA, greyscale, palette, CMYK or 16-bit, with EXIF orientation
applied. What cannot be used raises `ImageError` with a message written for a person.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

try:
    import simplejpeg
except ImportError:  # a packaged model's runner (lookout/packaging.py) needs only Pillow: same pixels, slower
    simplejpeg = None

# What the upload page names and what a refusal lists: the same words.
ACCEPTED_FORMATS = "JPEG, PNG, BMP, TIFF or WebP"
MIN_SIDE = 32  # px; below this a 8x8 patch grid has nothing to look at
MAX_SIDE = 8192  # px
MAX_PIXELS = 40_000_000  # a 40 MP photo decodes to 120 MB of RGB; more is a mistake or a bomb

# The only decoders an upload reaches: Pillow would otherwise try every format it knows (EPS
# hands the file to Ghostscript where it is installed; ICO, QOI, JPEG 2000... are needless
# attack surface). A phone's multi-picture JPEG (MPO) opens through the JPEG decoder.
DECODERS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP")

# Pillow's own bomb guard warns at MAX_IMAGE_PIXELS and raises at twice that; we check the
# header size ourselves first so that the person gets our message, not Pillow's.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageError(ValueError):
    """An upload that cannot be used as an image; `code` is stable, `message` is for people."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ImageInfo:
    width: int  # px, after EXIF orientation
    height: int
    format: str  # "JPEG", "PNG", ...


def _open(data: bytes) -> Image.Image:
    if not data:
        raise ImageError("empty", "The file is empty.")
    try:
        image = Image.open(io.BytesIO(data), formats=DECODERS)
    except Image.DecompressionBombError:
        raise ImageError(
            "too_large",
            f"The image has far more pixels than the {MAX_PIXELS // 1_000_000} megapixels accepted "
            f"(and more than {MAX_SIDE} pixels on a side).",
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            "not_an_image", f"This file is not an image Kenpin can read (use {ACCEPTED_FORMATS})."
        ) from None
    except Exception as exc:  # Pillow raises many types on broken headers
        raise ImageError("corrupt", f"The image file is damaged and cannot be read ({exc}).") from exc
    width, height = image.size
    if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
        raise ImageError(
            "too_large",
            f"The image is {width}x{height} pixels; the largest accepted is {MAX_SIDE} pixels "
            f"on a side and {MAX_PIXELS // 1_000_000} megapixels.",
        )
    if min(width, height) < MIN_SIDE:
        raise ImageError("too_small", f"The image is {width}x{height} pixels; each side must be at least {MIN_SIDE}.")
    return image


def _load(data: bytes, *, draft: int | None = None) -> Image.Image:
    """Open and fully decode, so that truncated files fail here and not later in a worker.

    `draft`: a JPEG may be decoded straight to a smaller size whose long side is still at least
    this many pixels (libjpeg scales by 1/2, 1/4 or 1/8 while decoding, which costs less than
    decoding in full and shrinking). Its pixels differ from a full decode shrunk to that size,
    so only pictures for people use it, never the engine's input (docs/benchmarks.md).
    """
    image = _open(data)
    if draft is not None and image.format == "JPEG":
        scale = draft / max(image.size)
        image.draft(None, (math.ceil(image.width * scale), math.ceil(image.height * scale)))
    return _decode(image)


def _decode(image: Image.Image) -> Image.Image:
    """Decode an image `_open` accepted; damage found only now is "corrupt"."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            # In place: a photo that needs no turning is not copied (0.2 ms at 576x768 per call).
            ImageOps.exif_transpose(image, in_place=True)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError("corrupt", f"The image file is damaged or incomplete ({exc}).") from exc
    return image


# The EXIF orientations that `ImageOps.exif_transpose` turns a photo for.
_TURNED = frozenset(range(2, 9))


def _decode_plain_jpeg(data: bytes, image: Image.Image) -> np.ndarray | None:
    """The (H, W, 3) uint8 RGB pixels of a plain colour JPEG, decoded by simplejpeg, or None.

    simplejpeg's libjpeg-turbo decodes straight into the (H, W, 3) array, where Pillow decodes
    into its own 4-byte pixels and then copies them to numpy: 4.9 against 5.6 ms of CPU for a
    576x768 cookie in `detect_bench.py stages`. The pixels are the same: both use libjpeg-turbo's
    accurate integer IDCT and smooth chroma upsampling, and the arrays are identical for every
    JPEG of the shared sets and the fixtures, re-encoded variants included (docs/benchmarks.md). Only
    what Pillow would hand to libjpeg as it is takes this path: a JPEG (not MPO) of three
    YCbCr components, with no EXIF orientation to apply. `strict` makes every libjpeg warning
    an error (a truncated file warns "Premature end of JPEG file" and would come back padded
    with grey), so that Pillow then decodes as before, accepting what it accepted and refusing
    the rest with the same message. `image` is `_open`'s; reading its EXIF may leave it
    half-parsed, so after None the caller opens the data again.
    """
    try:
        if image.getexif().get(ExifTags.Base.Orientation, 1) in _TURNED:
            return None
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        if colorspace != "YCbCr" or (width, height) != image.size:
            return None
        return simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=False, fastupsample=False, strict=True)
    except Exception:  # broken EXIF (Pillow raises many types), libjpeg's errors and warnings
        return None


def probe_image(data: bytes) -> ImageInfo:
    """Validate `data` completely and return its size and format."""
    image = _load(data)
    fmt = Image.open(io.BytesIO(data), formats=DECODERS).format or "UNKNOWN"
    return ImageInfo(width=image.width, height=image.height, format=fmt)


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit and float greyscale: stretch the used range to 8 bits. A fixed /256 would turn
        # a 12-bit sensor's images almost black.
        array = np.asarray(image, dtype=np.float32)
        low, high = float(array.min()), float(array.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        array = ((array - low) * scale).clip(0, 255).astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        # Transparent pixels become white, as they look in a browser on a white page.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    # Already RGB (most photos): no copy.
    return image if mode == "RGB" else image.convert("RGB")


def decode_image(data: bytes) -> np.ndarray:
    """Bytes of any accepted image -> (H, W, 3) uint8 RGB, EXIF orientation applied."""
    image = _open(data)
    if simplejpeg is not None and image.format == "JPEG" and image.mode == "RGB":
        pixels = _decode_plain_jpeg(data, image)
        if pixels is not None:
            return pixels
        image = _open(data)
    return np.asarray(_to_rgb(_decode(image)))


def decode_mask(data: bytes, *, width: int, height: int) -> np.ndarray:
    """Bytes of a mask image -> (H, W) bool, True where the defect is.

    A mask must have the size of its image; any non-zero pixel counts as defect.
    """
    image = _load(data)
    if image.size != (width, height):
        raise ImageError(
            "wrong_size",
            f"The mask is {image.width}x{image.height} pixels but its image is {width}x{height}; "
            "they must be the same size.",
        )
    return np.asarray(_to_rgb(image).convert("L")) > 0


def thumbnail_jpeg(data: bytes, *, max_side: int = 320) -> bytes:
    """A small JPEG of the image for grids and lists."""
    return _thumbnail(_to_rgb(_load(data, draft=max_side)), max_side)


def thumbnail_jpeg_of_array(image: np.ndarray, *, max_side: int = 320) -> bytes:
    """A small JPEG of an (H, W, 3) uint8 RGB image already decoded (an inference worker's
    photo): no second decoding. Averaging whole blocks of pixels first (Image.reduce) before the
    Lanczos filter costs 3.2 ms for a 576x768 photo instead of 5.5."""
    picture = Image.fromarray(image)
    factor = max(picture.size) // max_side
    if factor > 1:
        picture = picture.reduce(factor)
    return _thumbnail(picture, max_side)


def _thumbnail(image: Image.Image, max_side: int) -> bytes:
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    # No optimize=True: its second pass for Huffman tables fitted to the picture cost 0.41 ms of
    # the 2.8 ms an anomalous detect call spends on its thumbnail, for files 1.8 % smaller, with
    # the same pixels (docs/benchmarks.md).
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()
