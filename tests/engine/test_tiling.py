"""Tiling: strips and very large photos are cut into tiles at the scale their training photos
suggest, so that a defect does not shrink below a feature cell (engine.training.tile_scale_for,
engine.features.tile_grid). Line-scan strips are made of the cookie fixtures laid side by side."""

import numpy as np
import pytest

import engine.training
from engine import Sample, decode_image, train
from engine.features import MAX_SIDE_FOR_THREAD_SESSIONS, MAX_TILES, FeatureExtractor, tile_grid
from engine.training import tile_scale_for
from tests.datasets import COOKIES


def blank(height: int, width: int) -> np.ndarray:
    return np.zeros((height, width, 3), np.uint8)


def test_only_strips_and_very_large_photos_are_tiled():
    assert tile_scale_for([blank(576, 768)], 256) is None  # cookies
    assert tile_scale_for([blank(460, 1130)], 288) is None  # ball_screw
    assert tile_scale_for([blank(1520, 2200)], 544) is None  # aliens at full size: 4.04x, nothing to gain
    assert tile_scale_for([blank(256, 4096)], 1024) == 1.0  # a line-scan strip keeps its pixels
    assert tile_scale_for([blank(4000, 6000)], 1024) == 0.25  # shrunk 4x, not 6x
    assert tile_grid(256, 4096, 1024, 1.0) == (1, 4, 256, 1024)
    assert tile_grid(4000, 6000, 1024, 0.25) == (1, 2, 1008, 752)
    rows, cols, _, _ = tile_grid(256, 100_000, 1024, 1.0)  # a very long strip: the scale gives way
    assert rows * cols <= MAX_TILES


def test_tiles_are_stitched_into_the_grid_of_the_whole_photo():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (256, 2048, 3), dtype=np.uint8)
    tiled = FeatureExtractor("lite0", 1024, tile_scale=1.0).extract(photo)
    whole = FeatureExtractor("lite0", 1024)  # each 256x1024 half fits its input as it is
    halves = [whole.extract(np.ascontiguousarray(photo[:, x : x + 1024])) for x in (0, 1024)]
    np.testing.assert_allclose(tiled[0], np.concatenate([h[0] for h in halves], axis=1), atol=1e-4)
    if tiled[1] is not None:
        np.testing.assert_allclose(tiled[1], np.concatenate([h[1] for h in halves], axis=1), atol=1e-4)


def test_a_tiled_extractor_refuses_a_photo_already_at_its_input_size():
    tiled = FeatureExtractor("lite0", 1024, tile_scale=1.0)
    with pytest.raises(ValueError, match="tiled"):
        tiled.extract_input(np.zeros((256, 1024, 3), np.uint8))


def test_only_small_untiled_inputs_get_a_session_of_their_own_for_more_threads():
    # A second session's memory arena holds a whole batch's activations (+465 MB for a tiled
    # strip): tiled and large inputs run a lone call's features on their one session. Three
    # threads, since the default session's may be two.
    small = FeatureExtractor("lite0", 256)
    assert small._session(3) is not small.session and small._session(3) is small._session(3)
    for large in (
        FeatureExtractor("lite0", 1024, tile_scale=1.0),
        FeatureExtractor("lite0", MAX_SIDE_FOR_THREAD_SESSIONS + 32),
    ):
        assert large._session(3) is large.session
        photo = np.random.default_rng(0).integers(0, 255, (256, 2048, 3), dtype=np.uint8)
        for mine, default in zip(large.extract(photo, threads=3), large.extract(photo)):
            np.testing.assert_array_equal(mine, default)


@pytest.fixture(scope="module")
def strips():
    """Strips of 8 cookies (320 x 1920 px): 8 to train on, 4 normal and 4 with a 16 px speck to test."""
    cookies = [decode_image(p.read_bytes()) for p in sorted((COOKIES / "normal").iterdir())]
    rng = np.random.default_rng(0)

    def strip():
        return np.concatenate([cookies[i] for i in rng.choice(len(cookies), 8, replace=False)], axis=1)

    training = [Sample(key=f"strip-{i}", image=strip(), label=0) for i in range(8)]
    normal = [strip() for _ in range(4)]
    specks = []
    for damaged in [strip() for _ in range(4)]:
        x = int(rng.integers(100, damaged.shape[1] - 100))
        damaged[150:166, x : x + 16] = (200, 30, 30)
        specks.append((damaged, x))
    return training, normal, specks


def speck_found(model, normal_scores, damaged, x) -> tuple[bool, bool]:
    """(the photo scores clearly above every normal one with its map's peak on the speck, the
    model flags it)."""
    found = model.predict(damaged)
    peak_y, peak_x = np.unravel_index(np.argmax(found.anomaly_map), found.anomaly_map.shape)
    cell = damaged.shape[1] / found.anomaly_map.shape[1]
    on_speck = abs((peak_x + 0.5) * cell - (x + 8)) < 1.5 * cell
    return on_speck and found.score > max(normal_scores) + 0.1, found.is_anomalous


def test_a_tiled_strip_finds_a_small_defect_that_the_strip_shrunk_whole_misses(strips, monkeypatch):
    training, normal, specks = strips
    tiled = train(train=training).model
    assert tiled.tile_scale == 0.8  # the strip's short side keeps 256 px of input
    normal_scores = [tiled.predict(s).score for s in normal]
    found = [speck_found(tiled, normal_scores, damaged, x) for damaged, x in specks]
    assert all(seen for seen, _ in found) and any(flagged for _, flagged in found), found

    # Shrunk whole (1920 px of strip to 480 px of input), the speck is 4 px: half a cell.
    monkeypatch.setattr(engine.training, "tile_scale_for", lambda images, long_side: None)
    whole = train(train=training).model
    assert whole.tile_scale is None
    normal_scores = [whole.predict(s).score for s in normal]
    found = [speck_found(whole, normal_scores, damaged, x) for damaged, x in specks]
    assert not any(flagged for _, flagged in found) and not all(seen for seen, _ in found), found
