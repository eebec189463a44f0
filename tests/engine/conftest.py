"""Fixtures for the engine tests: real photos (tests/datasets.py), shrunk to keep tests fast."""

import numpy as np
from PIL import Image

from engine import Sample, decode_image, decode_mask
from tests.datasets import COOKIES, shared_set


def shrink(image: np.ndarray, long_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = long_side / max(h, w)
    return np.asarray(Image.fromarray(image).resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR))


def load_set(name: str, *, normal: int, anomaly: int, long_side: int = 256, offset: int = 0) -> list[Sample]:
    """`normal` + `anomaly` samples of a data set, at most `long_side` px, masks attached.

    cookies come from the fixtures; any other set is a full shared one (mark the test `shared_data`).
    """
    folder = COOKIES if name == "cookies" else shared_set(name)
    samples = []
    for label, sub, count in ((0, "normal", normal), (1, "anomaly", anomaly)):
        for path in sorted((folder / sub).iterdir())[offset : offset + count]:
            image = decode_image(path.read_bytes())
            mask_path = folder / "mask" / f"{path.stem}.png"
            mask = None
            if mask_path.exists():
                mask = decode_mask(mask_path.read_bytes(), width=image.shape[1], height=image.shape[0])
                mask = shrink(mask.astype(np.uint8) * 255, long_side) > 127
            samples.append(Sample(key=f"{sub}/{path.name}", image=shrink(image, long_side), label=label, mask=mask))
    return samples
