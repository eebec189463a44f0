"""Defect masks: reading what people upload, storing class indices, drawing them in colour.

A stored mask is a class-index PNG: one 8-bit channel, 0 for background and k for the project's
anomaly class with index k (projects.models.AnomalyClass). Uploads come in either of two
conventions, told apart by their colours:

- binary: black background, any other grey is defect of one class (what most tools and the
  shared data sets write);
- colour: Lookout for Vision's colour maps, each class in its own colour on a white background
  (black is accepted as background too).

Plain functions of arrays and bytes: the services pass the project's classes in.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from engine.images import ImageError, decode_image, decode_mask

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
# Unknown colours named in an error, at most; the rest are counted.
MAX_COLOURS_NAMED = 4


@dataclass(frozen=True)
class MaskClass:
    """What reading and drawing a mask needs to know about one anomaly class."""

    index: int  # 1..255, the pixel value in stored masks
    name: str
    color: str  # "#rrggbb"

    @property
    def rgb(self) -> tuple[int, int, int]:
        return parse_color(self.color)


def parse_color(text: str) -> tuple[int, int, int]:
    """ "#rrggbb" (either case) -> (r, g, b); ValueError for anything else."""
    if len(text) != 7 or text[0] != "#":
        raise ValueError(f"not a #rrggbb colour: {text!r}")
    return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)


def _pack(rgb) -> int:
    r, g, b = rgb
    return (int(r) << 16) | (int(g) << 8) | int(b)


def _hex(packed: int) -> str:
    return f"#{packed:06x}"


def decode_upload(
    data: bytes, *, width: int, height: int, classes: Sequence[MaskClass], binary_class: MaskClass | None
) -> np.ndarray:
    """The bytes of an uploaded mask -> (H, W) uint8 class indices, checked against the image.

    `classes` are the project's classes (or its one implicit class); `binary_class` is the class
    a black-and-white mask marks, None when the project cannot tell (several classes and no
    choice given). Raises ImageError with a message for people: an empty file, a file that is
    not an image, a size other than the image's, a colour that matches no class, a mask that
    marks no defect.
    """
    if not data:
        raise ImageError("empty", "The mask file is empty (0 bytes). Export the mask again and upload it.")
    rgb = decode_image(data)  # (H, W, 3) uint8; transparent pixels come out white (background)
    if rgb.shape[:2] != (height, width):
        raise ImageError(
            "wrong_size",
            f"The mask is {rgb.shape[1]}x{rgb.shape[0]} pixels but its image is {width}x{height}; "
            "they must be the same size.",
        )
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    colours, inverse, counts = np.unique(packed, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(height, width)
    by_colour = {_pack(c.rgb): c.index for c in classes}
    grey = [(int(c) >> 16) == (int(c) & 0xFF) == ((int(c) >> 8) & 0xFF) for c in colours]

    if not any(int(c) in by_colour for c in colours) and all(grey):
        indices = _binary(colours, inverse, width=width, height=height, binary_class=binary_class, classes=classes)
    else:
        background = {_pack(WHITE), _pack(BLACK)}
        unknown = [
            (int(c), int(n)) for c, n in zip(colours, counts) if int(c) not in by_colour and int(c) not in background
        ]
        if unknown:
            raise ImageError("unknown_color", _unknown_colours_message(unknown, classes))
        lut = np.array([by_colour.get(int(c), 0) for c in colours], dtype=np.uint8)
        indices = lut[inverse]
    if not indices.any():
        raise ImageError(
            "empty_mask",
            "The mask marks no defect (it is all background). Paint or upload the defect, or remove the "
            "image's mask instead.",
        )
    return indices


def _binary(colours, inverse, *, width, height, binary_class, classes) -> np.ndarray:
    """A grey mask: black is background, every other grey the one class it marks."""
    levels = np.asarray(colours, dtype=np.uint32) & 0xFF
    if levels.min() > 0:
        if len(levels) == 1 and levels[0] == 255:
            raise ImageError(
                "empty_mask",
                "The mask is all white. In a colour mask white is background, so it marks no defect; in a "
                "black-and-white mask the defect is white on black.",
            )
        raise ImageError(
            "no_background",
            "Every pixel of this mask is marked as defect. A black-and-white mask is black where the product "
            "is fine and white where the defect is.",
        )
    if binary_class is None:
        names = ", ".join(f"“{c.name}”" for c in classes)
        raise ImageError(
            "class_required",
            f"This project has several anomaly classes ({names}): say which one this black-and-white mask "
            "marks, or upload a colour mask with each class in its colour on white.",
        )
    lut = np.where(levels > 0, binary_class.index, 0).astype(np.uint8)
    return lut[inverse].reshape(height, width)


def _unknown_colours_message(unknown: list[tuple[int, int]], classes: Sequence[MaskClass]) -> str:
    unknown.sort(key=lambda item: -item[1])
    named = ", ".join(f"{_hex(c)} ({n:,} pixel{'s' if n != 1 else ''})" for c, n in unknown[:MAX_COLOURS_NAMED])
    more = f" and {len(unknown) - MAX_COLOURS_NAMED} more" if len(unknown) > MAX_COLOURS_NAMED else ""
    known = ", ".join(f"{c.name} ({c.color})" for c in classes)
    return (
        f"The mask has colours that match no anomaly class of this project: {named}{more}. Its classes are "
        f"{known}; white or black is background. Paint each class in exactly its colour (no smoothed edges), "
        "or create a class for the colour first."
    )


def classes_used(indices: np.ndarray) -> list[int]:
    """The class indices (1..K) that (H, W) uint8 indices hold, ascending; background left out."""
    return [int(i) for i in np.flatnonzero(np.bincount(indices.ravel(), minlength=1)[1:]) + 1]


def encode_indices(indices: np.ndarray) -> bytes:
    """(H, W) uint8 class indices -> the stored mask: a one-channel PNG holding the indices."""
    return _png(Image.fromarray(np.ascontiguousarray(indices, dtype=np.uint8), mode="L"))


def read_stored(data: bytes, *, binary: bool, width: int, height: int, implicit_index: int) -> np.ndarray:
    """A stored mask's bytes -> (H, W) uint8 class indices.

    `binary`: a mask stored before classes existed (the upload itself, any format), whose
    non-zero pixels all are class `implicit_index`.
    """
    if binary:
        return decode_mask(data, width=width, height=height).astype(np.uint8) * np.uint8(implicit_index)
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("L") if image.mode != "L" else image).copy()


def _palette(classes: Sequence[MaskClass], *, background: tuple[int, int, int]) -> list[int]:
    """A 256-entry PIL palette: each class's colour at its index, `background` everywhere else."""
    entries = [background] * 256
    for c in classes:
        entries[c.index] = c.rgb
    return [v for rgb in entries for v in rgb]


def color_png(indices: np.ndarray, classes: Sequence[MaskClass]) -> bytes:
    """Lookout for Vision's colour mask: each class in its colour on white, the image's size.

    Indices of no listed class are drawn as background. A palette PNG: small, quick to encode,
    and exactly the colours listed (no colour management applies to it).
    """
    image = Image.fromarray(np.ascontiguousarray(indices, dtype=np.uint8), mode="P")
    image.putpalette(_palette(classes, background=WHITE))
    return _png(image)


def overlay_png(indices: np.ndarray, classes: Sequence[MaskClass], *, size: tuple[int, int] | None = None) -> bytes:
    """A transparent overlay to lay over the photo: each class in its colour, background clear.

    `size` (width, height) resizes first, nearest-neighbour, so that classes never blend.
    """
    image = Image.fromarray(np.ascontiguousarray(indices, dtype=np.uint8), mode="L")
    if size is not None and image.size != size:
        image = image.resize(size, Image.Resampling.NEAREST)
    image = Image.frombytes("P", image.size, image.tobytes())  # the same bytes, read as palette indices
    image.putpalette(_palette(classes, background=WHITE))
    listed = {c.index for c in classes}
    alpha = bytes(255 if i in listed and i != 0 else 0 for i in range(256))
    return _png(image, transparency=alpha)


def binary_png(indices: np.ndarray) -> bytes:
    """A black-and-white mask: 255 on any class, 0 on background (the format most tools read)."""
    return _png(Image.fromarray((np.asarray(indices) > 0).astype(np.uint8) * 255, mode="L"))


def _png(image: Image.Image, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", **options)
    return out.getvalue()
