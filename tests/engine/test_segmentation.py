"""Segmentation models: a head learns from masks with named classes, on a synthetic product whose
defects are painted where the tests choose (tests/engine/synthetic.py)."""

import json

import numpy as np
import pytest

from engine import AnomalyModel, TrainingError, train, training
from engine.model import Guide, box_mean, guided_map, image_raw, upsample
from engine.patchcore import row_cuts
from engine.training import mask_iou, reduced_size, synthetic_defect

from .synthetic import samples

SCRATCH, STAIN = 1, 2


@pytest.fixture(scope="module")
def segmented():
    train_set = samples(0, normal=10, anomalous=8)
    test_set = samples(1, normal=4, anomalous=6, prefix="test-")
    return train(train=train_set, test=test_set, classes=("scratch", "stain")), test_set


def test_the_head_learns_from_masks_and_segments_a_painted_defect(segmented):
    result, _ = segmented
    metrics = result.metrics
    assert result.model.kind == metrics["model_kind"] == "segmentation"
    assert result.model.info["n_masked"] == 8 and 0 < result.model.pixel_threshold < 1
    assert metrics["roc_auc"] == 1.0 and metrics["pixel_auroc"] > 0.97
    assert metrics["mask_iou"] > 0.5 and metrics["mask_iou_images"] == 6
    assert metrics["per_class"]["stain"]["iou"] > 0.8  # a 30 px blob, several feature cells wide
    assert metrics["per_class"]["scratch"]["recall"] == 1.0  # 6 px wide: found, drawn thicker


def test_a_segmentation_model_scores_an_image_by_the_mean_of_its_highest_cells(segmented):
    result, test_set = segmented
    model = result.model
    assert model.pool == training.POOL == 0.01
    for sample in test_set[-2:]:
        raw, _ = model.maps(*model.extractor.extract(sample.image))
        # 1 % of the cells: a 64x64 stride-4 map's 41 highest.
        top = np.sort(raw.ravel())[-int(np.ceil(0.01 * raw.size)) :]
        assert model.predict(sample.image).score == pytest.approx(float(model.calibration(top.mean())), abs=1e-6)
    assert image_raw(np.arange(200.0).reshape(10, 20), 0.01) == 198.5
    assert image_raw(np.arange(200.0).reshape(10, 20), None) == 199.0


def test_a_head_taught_by_masks_maps_cells_twice_as_fine_as_the_features(segmented):
    result, test_set = segmented
    model = result.model
    assert model.head_stride == 4
    image = test_set[-1].image
    features, fine = model.extractor.extract(image)
    assert fine.shape[:2] == (2 * features.shape[0], 2 * features.shape[1])
    assert model.predict(image).anomaly_map.shape == fine.shape[:2]
    with pytest.raises(ValueError, match="stride-4"):
        model.maps(features)


def test_classes_come_back_with_their_names_and_areas(segmented):
    result, test_set = segmented
    model = result.model
    assert model.classes == result.metrics["classes"] == ["scratch", "stain"]
    per_class = result.metrics["per_class"]
    assert set(per_class) == {"scratch", "stain"}
    assert per_class["stain"]["images"] == per_class["scratch"]["images"] == 3
    assert set(per_class["stain"]["ci"]) == {"precision", "recall", "f1", "iou"}
    for sample in test_set:
        p = model.predict(sample.image)
        assert p.class_mask.shape == sample.image.shape[:2] and p.class_mask.dtype == np.uint8
        np.testing.assert_array_equal(p.mask, p.class_mask > 0)
        assert set(p.class_fractions) == {"scratch", "stain"}
        assert sum(p.class_fractions.values()) == pytest.approx(p.anomalous_fraction)
        if sample.label == 1 and (sample.mask == STAIN).any():
            true_share = float((sample.mask == STAIN).mean())
            assert 0.7 * true_share < p.class_fractions["stain"] < 1.4 * true_share
            assert p.class_fractions["scratch"] < 0.1 * true_share
    by_key = {r.key: r for r in result.per_image}
    for sample in test_set:
        r = by_key[sample.key]
        assert r.class_map.shape == reduced_size(*sample.image.shape[:2])
        assert r.class_map.any() == r.is_anomalous
        assert set(r.class_fractions) == {"scratch", "stain"}


def test_a_segmentation_model_saves_and_loads_with_identical_masks(segmented):
    result, test_set = segmented
    model = result.model
    loaded = AnomalyModel.from_files(model.to_files())
    assert loaded.kind == "segmentation" and loaded.classes == model.classes
    assert loaded.pixel_threshold == model.pixel_threshold and loaded.pool == model.pool
    for sample in test_set[-3:]:
        a, b = model.predict(sample.image), loaded.predict(sample.image)
        assert a.score == b.score
        np.testing.assert_array_equal(a.class_mask, b.class_mask)
        assert a.class_fractions == b.class_fractions


def test_binary_masks_make_one_class_named_anomaly():
    train_set = samples(2, normal=8, anomalous=4, kinds=(STAIN,))
    for s in train_set:
        if s.mask is not None:
            s.mask = s.mask > 0  # (H, W) bool, as decode_mask returns
    result = train(train=train_set)
    assert result.model.kind == "segmentation" and result.model.classes == ["anomaly"]
    assert set(result.metrics["per_class"]) == {"anomaly"}
    flagged = [r for r in result.per_image if r.is_anomalous]
    assert flagged and all(set(np.unique(r.class_map)) <= {0, 1} for r in flagged)


def test_a_mask_with_a_class_that_has_no_name_is_a_training_error():
    train_set = samples(3, normal=3, anomalous=2)  # kinds 1 and 2 painted
    with pytest.raises(TrainingError) as error:
        train(train=train_set, classes=("scratch",))
    assert "class" in error.value.message


def test_a_single_masked_anomaly_is_not_enough_for_segmentation_so_the_labels_teach_the_head():
    train_set = samples(4, normal=4, anomalous=2, kinds=(STAIN,))
    train_set[-1].mask = None
    result = train(train=train_set)
    assert result.model.kind == "classification" and result.model.pixel_threshold is None
    assert result.model.head is not None and result.model.mix.weight >= 0.5
    assert result.metrics["per_class"] == {}


def test_an_unmasked_anomaly_among_masked_ones_gives_the_head_fewer_cells_than_image_labels_alone(monkeypatch):
    shares = []
    original = training.weak_cells

    def recording(distance, share=training.WEAK_SHARE):
        shares.append(share)
        return original(distance, share)

    monkeypatch.setattr(training, "weak_cells", recording)
    train_set = samples(5, normal=4, anomalous=3, kinds=(STAIN,))
    train_set[-1].mask = None
    assert train(train=train_set).model.kind == "segmentation"
    assert shares == [training.MIXED_WEAK_SHARE] and training.MIXED_WEAK_SHARE < training.WEAK_SHARE
    shares.clear()
    for sample in train_set:
        sample.mask = None
    assert train(train=train_set).model.kind == "classification"
    assert shares == [training.WEAK_SHARE] * 3


def test_image_labels_alone_teach_a_head_from_the_anomalies_and_synthetic_defects():
    train_set = samples(5, normal=10, anomalous=6, kinds=(STAIN,))
    for s in train_set:
        s.mask = None  # image labels only
    test_set = samples(6, normal=4, anomalous=4, kinds=(STAIN,), prefix="test-")
    result = train(train=train_set, test=test_set)
    model = result.model
    assert model.head is not None and model.kind == "classification" and model.pixel_threshold is None
    assert model.info["n_masked"] == 0 and model.info["synthetic_defects"] == 10
    assert result.metrics["roc_auc"] == 1.0 and result.metrics["per_class"] == {}
    for sample in test_set:
        p = model.predict(sample.image)
        assert p.is_anomalous == bool(sample.label)
        if sample.label:
            # Masks come from the calibrated map: they overlap the painted stain.
            assert np.count_nonzero(p.mask & (sample.mask > 0)) > 0.3 * np.count_nonzero(sample.mask)
    loaded = AnomalyModel.from_files(model.to_files())
    a, b = model.predict(test_set[-1].image), loaded.predict(test_set[-1].image)
    assert a.score == b.score
    np.testing.assert_array_equal(a.class_mask, b.class_mask)


def test_with_only_normal_images_the_model_is_the_unsupervised_one():
    train_set = samples(7, normal=8, anomalous=0)
    result = train(train=train_set)
    assert result.model.head is None and result.model.kind == "classification"
    assert result.metrics["threshold_method"] == "normal_only"


def test_a_synthetic_defect_changes_the_image_only_where_its_mask_says():
    rng = np.random.default_rng(0)
    image = samples(8, normal=1, anomalous=0)[0].image
    for _ in range(6):
        painted, mask = synthetic_defect(image, rng)
        assert painted.shape == image.shape and mask.shape == image.shape[:2] and mask.any()
        assert 0.0002 < mask.mean() < 0.05
        np.testing.assert_array_equal(painted[mask == 0], image[mask == 0])


def test_the_mask_rule_chosen_out_of_fold_drops_the_faint_blob_around_a_small_defects_sure_peak(monkeypatch):
    # A one-cell defect the head is sure of, inside a halo of 0.5; and a 3x3 defect it finds at
    # 0.45. No single threshold draws both; a pixel that must also reach 60 % of its image's peak does.
    small, large = np.full((16, 16), 0.05), np.full((16, 16), 0.05)
    small[4:7, 4:7], small[5, 5] = 0.5, 0.9
    large[10:13, 10:13] = 0.45
    truth_small, truth_large = np.zeros((16, 16), bool), np.zeros((16, 16), bool)
    truth_small[5, 5], truth_large[10:13, 10:13] = True, True
    maps, truths = [small, large], [truth_small, truth_large]

    def mean_iou(threshold, ratio):
        return np.mean([mask_iou(m >= max(threshold, ratio * m.max()), t) for m, t in zip(maps, truths)])

    threshold, ratio = training.choose_pixel_threshold(maps, truths)
    assert threshold <= 0.45 and 0.5 / 0.9 < ratio <= 0.8 and mean_iou(threshold, ratio) == 1.0
    monkeypatch.setattr(training, "PIXEL_RATIOS", (0.0,))  # the fixed threshold alone
    assert training.choose_pixel_threshold(maps, truths)[1] == 0.0
    assert mean_iou(*training.choose_pixel_threshold(maps, truths)) < 0.6


def test_a_segmentation_model_masks_by_its_pixel_ratio_and_keeps_it_when_saved(segmented):
    result, _ = segmented
    model = AnomalyModel.from_files(result.model.to_files())
    model.pixel_threshold, model.pixel_ratio = 0.3, 0.6
    model.guide = None  # the rule on the head's own map
    anomaly = np.full((16, 16), 0.05)
    anomaly[4:7, 4:7], anomaly[5, 5] = 0.5, 0.9
    probs = np.stack([1 - anomaly, anomaly * 0.5, anomaly * 0.5], axis=-1)  # background, scratch, stain
    raw = np.log(anomaly)
    mask = model.class_mask(raw, probs, (16, 16), 0.5) > 0
    assert mask[5, 5] and mask.sum() == 1
    model.pixel_ratio = 0.0
    assert (model.class_mask(raw, probs, (16, 16), 0.5) > 0).sum() == 9
    model.pixel_ratio = 0.6
    assert AnomalyModel.from_files(model.to_files()).pixel_ratio == 0.6


def test_a_guided_map_moves_a_blurred_blob_onto_the_dark_pit_in_the_photo():
    # A dark pit 11 px across in a grey photo; the head saw it as a soft blob, wider and 2 px off,
    # on a 4 px grid. No threshold draws the pit from the blob; filtered with the photo as guide,
    # 60 % of the map's peak draws it exactly.
    yy, xx = np.mgrid[:128, :128]
    pit = (yy - 50) ** 2 + (xx - 70) ** 2 <= 5**2
    photo = np.full((128, 128, 3), 170, np.uint8)
    photo[pit] = 60
    photo = np.clip(photo + np.random.default_rng(0).normal(0, 4, photo.shape), 0, 255).astype(np.uint8)
    cy, cx = np.mgrid[:32, :32] * 4 + 1.5
    head = (0.8 * np.exp(-((cy - 52) ** 2 + (cx - 72) ** 2) / (2 * 6.0**2))).astype(np.float32)
    plain = upsample(head, (128, 128))
    assert max(mask_iou(plain >= t, pit) for t in np.linspace(0.01, 0.8, 80)) < 0.55
    guided = guided_map(head, photo, training.GUIDE)
    assert guided.shape == (128, 128) and guided.dtype == np.float32 and 0 <= guided.min() <= guided.max() <= 1
    assert mask_iou(guided >= 0.6 * guided.max(), pit) > 0.95


def test_box_mean_averages_each_window_clipped_at_the_borders():
    x = np.random.default_rng(1).random((2, 9, 14)).astype(np.float32)
    for r in (1, 3, 6, 20):
        expected = np.empty_like(x)
        for i in range(9):
            for j in range(14):
                expected[:, i, j] = x[:, max(0, i - r) : i + r + 1, max(0, j - r) : j + r + 1].mean(axis=(1, 2))
        np.testing.assert_allclose(box_mean(x, r), expected, rtol=1e-5)


def test_a_segmentation_model_draws_its_masks_along_the_photo_and_keeps_its_guide_when_saved(segmented):
    result, test_set = segmented
    model = result.model
    assert model.guide == training.GUIDE
    loaded = AnomalyModel.from_files(model.to_files())
    assert loaded.guide == model.guide
    sample = next(s for s in test_set if s.label == 1)
    features, fine = model.extractor.extract(sample.image)
    raw, probs = model.maps(features, fine)
    with pytest.raises(ValueError, match="image="):
        model.prediction(raw, probs, sample.image.shape[:2], 0.0)
    # The guide is the model's input, which the backbone saw: on the map's finest grid already.
    seen = model.guide_image(sample.image)
    assert model.guides_on_input and seen.shape[:2] == (4 * probs.shape[0], 4 * probs.shape[1])
    np.testing.assert_array_equal(seen, model.extractor.resize(sample.image))
    anomaly = guided_map(1.0 - probs[..., 0], seen, model.guide)
    expected = upsample(anomaly, sample.image.shape[:2]) >= max(
        model.pixel_threshold, model.pixel_ratio * float(anomaly.max())
    )
    assert expected.any()
    np.testing.assert_array_equal(model.prediction(raw, probs, sample.image.shape[:2], 0.0, image=seen).mask, expected)
    np.testing.assert_array_equal(model.predict(sample.image, threshold=0.0).mask, expected)


def test_a_model_saved_before_guided_masks_draws_them_exactly_as_before(segmented):
    result, test_set = segmented
    files = result.model.to_files()
    meta = json.loads(files["model.json"])
    del meta["guide"]
    meta["format_version"] = 3
    old = AnomalyModel.from_files({**files, "model.json": json.dumps(meta).encode()})
    assert old.guide is None
    compared = 0
    for sample in test_set:
        features, fine = old.extractor.extract(sample.image)
        raw, probs = old.maps(features, fine)
        anomaly = 1.0 - probs[..., 0]
        # The rule before: the head's probabilities upsampled bilinearly, then thresholded.
        expected = upsample(anomaly, sample.image.shape[:2]) >= max(
            old.pixel_threshold, old.pixel_ratio * float(anomaly.max())
        )
        if expected.any():  # else the mask comes from the calibrated map, as it always did
            np.testing.assert_array_equal(old.prediction(raw, probs, sample.image.shape[:2], 0.0).mask, expected)
            np.testing.assert_array_equal(old.predict(sample.image, threshold=0.0).mask, expected)
            compared += 1
    assert compared >= 6


def test_a_model_saved_when_the_guide_was_the_photo_still_guides_by_the_photo_exactly(segmented):
    result, test_set = segmented
    files = result.model.to_files()
    meta = json.loads(files["model.json"])
    assert meta["format_version"] == 5 and meta["guide"]["on_input"] is True
    del meta["guide"]["on_input"]
    meta["format_version"] = 4
    old = AnomalyModel.from_files({**files, "model.json": json.dumps(meta).encode()})
    assert old.guide == Guide(radius=training.GUIDE.radius, eps=training.GUIDE.eps) and not old.guides_on_input
    compared = 0
    for sample in test_set:
        assert old.guide_image(sample.image) is sample.image
        features, fine = old.extractor.extract(sample.image)
        raw, probs = old.maps(features, fine)
        anomaly = guided_map(1.0 - probs[..., 0], sample.image, old.guide)  # the photo, resized to the map
        expected = upsample(anomaly, sample.image.shape[:2]) >= max(
            old.pixel_threshold, old.pixel_ratio * float(anomaly.max())
        )
        prediction = old.predict(sample.image, threshold=0.0)
        # Scores do not depend on where the guide comes from: the backbone sees the same input.
        assert prediction.score == result.model.predict(sample.image, threshold=0.0).score
        if expected.any():
            np.testing.assert_array_equal(prediction.mask, expected)
            compared += 1
    assert compared >= 6
    meta = json.loads(files["model.json"])
    meta["input"]["tile_scale"] = 0.5
    with pytest.raises(ValueError, match="tiled"):
        AnomalyModel.from_files({**files, "model.json": json.dumps(meta).encode()})


def test_only_a_model_guided_by_its_input_is_saved_as_format_5_so_an_engine_a_release_older_reads_the_others(
    segmented,
):
    result, test_set = segmented
    files = result.model.to_files()
    assert json.loads(files["model.json"])["format_version"] == 5
    sample = next(s for s in test_set if s.label == 1)
    for guide in (Guide(radius=training.GUIDE.radius, eps=training.GUIDE.eps), None):
        model = AnomalyModel.from_files(files)
        model.guide = guide  # guided by the photo, or not guided
        saved = model.to_files()
        meta = json.loads(saved["model.json"])
        assert meta["format_version"] == 4
        # Without on_input: a format-4 reader's Guide(**meta["guide"]) would refuse the key.
        assert meta["guide"] == (None if guide is None else {"radius": guide.radius, "eps": guide.eps})
        loaded = AnomalyModel.from_files(saved)
        assert loaded.guide == guide
        before, after = model.predict(sample.image, threshold=0.0), loaded.predict(sample.image, threshold=0.0)
        assert before.score == after.score
        np.testing.assert_array_equal(before.mask, after.mask)


def test_a_prediction_on_three_threads_is_the_one_threads_to_the_last_bit(segmented):
    result, test_set = segmented
    model = result.model
    for sample in test_set[-3:]:
        features, _ = model.extractor.extract(sample.image)
        assert len(row_cuts(features.shape[0] * features.shape[1], 3)) == 4  # the search is split in 3
        # Both counts explicit: two onnxruntime sessions, whatever KENPIN_THREADS and the cores make
        # the default (predict() alone would share the session of threads=2 on a 2-core machine).
        one, three = model.predict(sample.image, threads=1), model.predict(sample.image, threads=3)
        assert one.score == three.score and one.confidence == three.confidence
        for name in ("anomaly_map", "mask", "class_mask"):
            np.testing.assert_array_equal(getattr(one, name), getattr(three, name))
        assert one.class_fractions == three.class_fractions
