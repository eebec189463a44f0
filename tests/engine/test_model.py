import numpy as np

from engine.model import class_fractions


def test_the_share_of_each_class_is_its_pixels_over_the_image_with_one_class_or_several():
    rng = np.random.default_rng(0)
    for classes in (["anomaly"], ["crack", "chip", "stain"]):
        mask = rng.integers(0, len(classes) + 1, size=(48, 64)).astype(np.uint8)
        mask[:10] = 0
        shares = class_fractions(mask, classes)
        assert list(shares) == classes
        for k, name in enumerate(classes, start=1):
            assert shares[name] == np.count_nonzero(mask == k) / mask.size
    assert class_fractions(np.zeros((48, 64), np.uint8), ["anomaly"]) == {"anomaly": 0.0}
