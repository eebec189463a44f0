"""A synthetic product for engine tests: a textured part whose defects are painted where we choose,
so that the true masks and classes are known exactly."""

import numpy as np
from PIL import Image, ImageDraw

from engine import Sample

SIZE = (192, 256)  # (H, W) px


def part(rng: np.random.Generator, size: tuple[int, int] = SIZE) -> np.ndarray:
    """(H, W, 3) uint8: brushed grey metal with a little random texture and lighting."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    grain = np.sin(x / 3.0 + rng.uniform(0, 6)) * 6 + np.sin((x + y) / 11.0 + rng.uniform(0, 6)) * 4
    light = 120 + 40 * np.sin(y / h * np.pi + rng.uniform(-0.2, 0.2))
    grey = light + grain + rng.normal(0, 3, (h, w))
    rgb = np.stack([grey, grey * 0.98, grey * 0.95], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def paint(image: np.ndarray, mask: np.ndarray, kind: int, rng: np.random.Generator) -> None:
    """Paint one defect of `kind` (1 scratch, 2 stain) into image and mask, in place."""
    h, w = mask.shape
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy = rng.integers(w // 5, 4 * w // 5), rng.integers(h // 5, 4 * h // 5)
    if kind == 1:  # a dark scratch, 6 px wide and 50-80 px long
        length, angle = rng.uniform(50, 80), rng.uniform(0, np.pi)
        dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
        draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=255, width=6)
        colour = np.array([25, 25, 30])
    else:  # an orange stain, an ellipse of 14-20 px radius
        rx, ry = rng.uniform(14, 20), rng.uniform(14, 20)
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
        colour = np.array([230, 120, 20])
    where = np.asarray(canvas) > 0
    image[where] = colour
    mask[where] = kind


def samples(seed: int, *, normal: int, anomalous: int, kinds=(1, 2), prefix: str = "") -> list[Sample]:
    """`normal` clean parts and `anomalous` parts with one defect each, kinds taken in turn."""
    rng = np.random.default_rng(seed)
    out = [Sample(f"{prefix}normal-{i}", part(rng), 0) for i in range(normal)]
    for i in range(anomalous):
        image = part(rng)
        mask = np.zeros(image.shape[:2], np.uint8)
        paint(image, mask, kinds[i % len(kinds)], rng)
        out.append(Sample(f"{prefix}anomaly-{i}", image, 1, mask))
    return out
