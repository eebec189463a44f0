"""Training, calibration, evaluation and prediction on real photos: most on the shared aliens set,
the rest on the cookie fixtures (those run on a fresh clone)."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from engine import AnomalyModel, TrainingError, train, training
from engine.discriminant import Discriminant, pooled
from engine.features import input_size
from engine.model import image_raw
from engine.training import long_side_for

from .conftest import load_set


@pytest.fixture(scope="module")
def aliens():
    """10 normal + 5 anomalous training images, and 6 + 6 unseen ones."""
    return load_set("aliens", normal=10, anomaly=5), load_set("aliens", normal=6, anomaly=6, offset=20)


@pytest.fixture(scope="module")
def trained(aliens):
    stages = []
    result = train(train=aliens[0], progress=lambda stage, fraction: stages.append((stage, fraction)))
    return result, stages


@pytest.mark.shared_data
def test_cross_validation_scores_every_training_image_once(trained, aliens):
    result, _ = trained
    assert result.evaluation == "cross_validation"
    assert sorted(r.key for r in result.per_image) == sorted(s.key for s in aliens[0])
    m = result.metrics
    assert m["n_normal"] == 10 and m["n_anomaly"] == 5
    assert sum(m["confusion_matrix"].values()) == 15
    assert m["threshold"] == 0.5 and m["pixel_auroc"] is None
    assert m["model_kind"] == "classification" and m["classes"] == ["anomaly"] and m["per_class"] == {}
    assert m["evaluated_images"] == 15 and m["mask_iou"] is None
    assert set(m["ci"]) == {"precision", "recall", "f1", "roc_auc", "average_precision", "mask_iou"}
    for key in ("precision", "recall", "f1", "roc_auc", "average_precision"):
        assert m["ci"][key][0] <= m[key] <= m["ci"][key][1], key
    assert m["roc_curve"]["fpr"][0] == 0.0 and m["roc_curve"]["tpr"][-1] == 1.0
    json.dumps(m)  # stored as JSON on the model version


@pytest.mark.shared_data
def test_it_tells_held_out_defects_from_normal_parts(trained, aliens):
    model = trained[0].model
    predictions = [(model.predict(s.image), s.label) for s in aliens[1]]
    normal = [p.score for p, label in predictions if label == 0]
    anomalous = [p.score for p, label in predictions if label == 1]
    assert min(anomalous) > np.median(normal)
    correct = sum(p.is_anomalous == bool(label) for p, label in predictions)
    assert correct >= 10, [(round(p.score, 3), label) for p, label in predictions]


@pytest.mark.shared_data
def test_predictions_are_consistent(trained, aliens):
    model = trained[0].model
    image = aliens[1][-1].image
    p = model.predict(image)
    assert 0.0 <= p.score <= 1.0 and 0.5 <= p.confidence <= 1.0
    assert p.score == pytest.approx(float(p.anomaly_map.max()))
    assert p.mask.shape == image.shape[:2] and p.mask.dtype == bool
    h, w = input_size(*image.shape[:2], model.long_side, model.max_stretch)
    assert p.anomaly_map.dtype == np.float32 and p.anomaly_map.shape == (h // 8, w // 8)
    assert p.anomalous_fraction == pytest.approx(p.mask.mean())
    assert p.mask.any() == p.is_anomalous


@pytest.mark.shared_data
def test_moving_the_threshold_changes_verdicts_not_scores(trained, aliens):
    model = trained[0].model
    image = aliens[1][-1].image
    default = model.predict(image)
    below, above = default.score - 0.01, default.score + 0.01
    flagged, passed = model.predict(image, threshold=below), model.predict(image, threshold=above)
    assert default.score == flagged.score == passed.score
    assert flagged.is_anomalous and not passed.is_anomalous
    assert flagged.confidence == pytest.approx(0.5 + 0.5 * 0.01 / (1 - below))
    assert passed.confidence == pytest.approx(0.5 + 0.5 * 0.01 / above)
    assert model.threshold == 0.5


@pytest.mark.shared_data
def test_progress_runs_through_the_stages_in_order(trained):
    stages = trained[1]
    assert [s for s, _ in stages] == sorted((s for s, _ in stages), key=["features", "fitting", "evaluating"].index)
    for stage in ("features", "fitting", "evaluating"):
        fractions = [f for s, f in stages if s == stage]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0 and all(0 < f <= 1 for f in fractions)


@pytest.mark.shared_data
def test_saved_models_score_identically_and_never_unpickle(trained, aliens):
    model = trained[0].model
    files = model.to_files()
    assert set(files) == {"model.safetensors", "model.json", "backbone.onnx"}
    meta = json.loads(files["model.json"])
    assert meta["backbone"] == "lite0" and meta["threshold"] == 0.5
    assert meta["input"]["mean"] == [0.5, 0.5, 0.5] and "onnxruntime" in meta["libraries"]
    assert meta["graph_sha256"] == hashlib.sha256(files["backbone.onnx"]).hexdigest()
    tensors = load_tensors(files["model.safetensors"])
    # The head learned from the 5 anomalies' image labels and synthetic defects (no masks).
    assert set(tensors) == {"bank", "defects", "familiarity_embeddings"} | {
        f"head.{n}" for n in ("mean", "scale", "w1", "b1", "w2", "b2")
    }
    assert tensors["defects"].shape[0] >= 5 * 4  # each of the 5 anomalies gave its worst patches
    loaded = AnomalyModel.from_files(files)
    for sample in aliens[1][:2] + aliens[1][-2:]:
        a, b = model.predict(sample.image), loaded.predict(sample.image)
        assert a.score == b.score
        np.testing.assert_array_equal(a.anomaly_map, b.anomaly_map)
        np.testing.assert_array_equal(a.mask, b.mask)


def _without_torch(tmp_path: Path) -> dict:
    """Environment of a serving-only machine: torch and timm cannot be imported, no cached graph."""
    for name in ("torch", "timm"):
        (tmp_path / "blocked" / name).mkdir(parents=True)
        (tmp_path / "blocked" / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed')\n")
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(tmp_path / "blocked"),
        "KENPIN_CACHE_DIR": str(tmp_path / "empty-cache"),
    }


SERVE = """
import json, sys
from pathlib import Path
import numpy as np
from engine import AnomalyModel
folder = Path(sys.argv[1])
files = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "image.npy"}
try:
    model = AnomalyModel.from_files(files)
    score = model.predict(np.load(folder / "image.npy")).score
except Exception as exc:
    print(json.dumps({"error": str(exc)}))
else:
    print(json.dumps({"score": score, "torch": "torch" in sys.modules}))
"""


def _serve_elsewhere(files: dict, image: np.ndarray, tmp_path: Path) -> dict:
    folder = tmp_path / "model"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    np.save(folder / "image.npy", image)
    result = subprocess.run(
        [sys.executable, "-c", SERVE, str(folder)],
        cwd=Path(__file__).resolve().parents[2],
        env=_without_torch(tmp_path),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.shared_data
def test_a_saved_model_serves_without_torch_or_an_exported_graph(trained, aliens, tmp_path):
    model = trained[0].model
    image = aliens[1][-1].image
    served = _serve_elsewhere(model.to_files(), image, tmp_path)
    assert served == {"score": model.predict(image).score, "torch": False}


@pytest.mark.shared_data
def test_a_model_saved_without_its_graph_says_why_it_cannot_serve_without_torch(trained, aliens, tmp_path):
    files = trained[0].model.to_files()
    del files["backbone.onnx"]
    served = _serve_elsewhere(files, aliens[1][0].image, tmp_path)
    assert "without its backbone graph" in served["error"] and "Retrain" in served["error"]


@pytest.mark.shared_data
def test_a_graph_that_is_not_the_trained_one_is_refused(trained):
    files = trained[0].model.to_files()
    files["backbone.onnx"] = files["backbone.onnx"][:-1] + b"\0"
    with pytest.raises(ValueError, match="sha256"):
        AnomalyModel.from_files(files)


@pytest.mark.shared_data
def test_a_model_saved_before_stretching_and_defect_banks_scores_as_it_was_trained(trained, aliens):
    # Such a model has no backbone.onnx either: where the training install is, the graph is exported.
    model = trained[0].model
    files = model.to_files()
    meta = json.loads(files["model.json"])
    del meta["input"]["max_stretch"]
    del meta["graph_sha256"]
    del meta["mix"]  # nor a head
    old = {"model.json": json.dumps(meta).encode(), "model.safetensors": save_tensors({"bank": model.bank})}
    loaded = AnomalyModel.from_files(old)
    assert loaded.max_stretch == 1.0 and loaded.defects.shape[0] == 0
    image = aliens[1][0].image  # 256x176: kept at its aspect ratio, as such models were trained
    assert loaded.predict(image).anomaly_map.shape == (176 // 8, 256 // 8)
    assert loaded.to_files()["backbone.onnx"] == files["backbone.onnx"]


def _v2_graph(graph: bytes) -> bytes:
    """The graph as engine.export wrote it before v3: the same first output, no stride-4 one."""
    onnx = pytest.importorskip("onnx")
    proto = onnx.load_from_string(graph)
    kept = [o for o in proto.graph.output if o.name == "features"]
    del proto.graph.output[:]
    proto.graph.output.extend(kept)
    return proto.SerializeToString()


@pytest.mark.shared_data
def test_a_model_saved_with_a_v2_graph_and_a_stride_8_head_scores_as_it_was_trained(aliens, monkeypatch):
    # Models trained before graph v3 carry a graph with one output and a head on the stride-8
    # cells; they must score with their own graph exactly as they did.
    monkeypatch.setattr(training, "WEAK_HEAD_STRIDE", 8)
    model = train(train=aliens[0][:8] + aliens[0][-3:]).model
    assert model.head is not None and model.head_stride == 8
    files = model.to_files()
    meta = json.loads(files["model.json"])
    del meta["head_stride"]
    meta["graph_version"] = 2
    files["backbone.onnx"] = _v2_graph(files["backbone.onnx"])
    meta["graph_sha256"] = hashlib.sha256(files["backbone.onnx"]).hexdigest()
    files["model.json"] = json.dumps(meta).encode()
    loaded = AnomalyModel.from_files(files)
    assert loaded.head_stride == 8 and loaded.extractor.extract(aliens[1][0].image)[1] is None
    for sample in aliens[1][:2] + aliens[1][-2:]:
        a, b = model.predict(sample.image), loaded.predict(sample.image)
        assert a.score == b.score and a.anomaly_map.shape == b.anomaly_map.shape
        np.testing.assert_array_equal(a.mask, b.mask)


def test_calibration_records_the_threshold_rule_it_used():
    # The fitted rule needs 3 images of each class with some spread; below that the best-F1 cut
    # is used, and threshold_method must say so rather than "expected_f1".
    normal = np.array([-0.3, -0.1, 0.0, 0.1, 0.4])
    calibration, how = training.calibrate(normal, np.array([2.0, 3.0, 5.0]))
    assert how == "expected_f1" and 0.4 < calibration.raw_threshold < 2.0
    calibration, how = training.calibrate(normal, np.array([2.0, 3.0]))
    assert how == "best_f1" and calibration.raw_threshold == pytest.approx(1.2)
    assert training.calibrate(normal, np.array([2.0, 2.0, 2.0]))[1] == "best_f1"
    assert training.calibrate(normal, np.array([]))[1] == "normal_only"


@pytest.mark.shared_data
def test_a_changed_threshold_is_saved_with_the_model(trained):
    model = AnomalyModel.from_files(trained[0].model.to_files())
    model.threshold = 0.7
    assert AnomalyModel.from_files(model.to_files()).threshold == 0.7


@pytest.mark.shared_data
def test_with_only_normal_images_new_normals_pass_and_a_gross_defect_is_flagged(aliens):
    normal_only = [s for s in aliens[0] if s.label == 0]
    result = train(train=normal_only)
    assert result.metrics["threshold_method"] == result.model.info["threshold_method"] == "normal_only"
    assert result.metrics["n_anomaly"] == 0 and result.metrics["roc_auc"] is None
    assert result.model.defects.shape == (0, result.model.bank.shape[1])  # no known defects
    unseen_normals = [s.image for s in aliens[1] if s.label == 0]
    flagged = sum(result.model.predict(image).is_anomalous for image in unseen_normals)
    assert flagged <= 1
    damaged = unseen_normals[0].copy()
    h, w = damaged.shape[:2]
    damaged[h // 3 : h // 3 + h // 6, w // 3 : w // 3 + w // 6] = (20, 20, 20)  # a dark hole in the part
    assert result.model.predict(damaged).is_anomalous


def test_a_test_dataset_is_evaluated_with_the_final_model_and_masks_give_pixel_auroc():
    # Cookie anomalies from train-anomaly-1 on have masks; the test-anomaly-* files sort first.
    train_set = load_set("cookies", normal=8, anomaly=3)
    test_set = load_set("cookies", normal=4, anomaly=4, offset=10)
    assert any(s.mask is not None for s in test_set)
    result = train(train=train_set, test=test_set)
    assert result.evaluation == "test_dataset"
    assert [r.key for r in result.per_image] == [s.key for s in test_set]
    assert result.metrics["n_normal"] == 4 and result.metrics["n_anomaly"] == 4
    assert result.metrics["pixel_auroc"] > 0.7
    for r, s in zip(result.per_image, test_set):
        assert r.score == pytest.approx(result.model.predict(s.image).score, abs=1e-6)


@pytest.mark.shared_data
def test_images_of_different_sizes_train_together():
    samples = load_set("solar_cell_mono", normal=6, anomaly=0, long_side=200)
    samples += load_set("solar_cell_mono", normal=6, anomaly=3, long_side=300, offset=6)
    result = train(train=samples)
    assert {r.anomaly_map.shape for r in result.per_image} == {(32, 32)}  # one input size for all
    assert result.metrics["n_normal"] == 12


@pytest.mark.shared_data
def test_large_photos_get_a_larger_input_so_small_defects_survive():
    assert long_side_for([np.zeros((576, 768, 3), np.uint8)]) == 256
    assert long_side_for([np.zeros((3072, 4096, 3), np.uint8)]) == 1024
    # Aliens photographed at 2200x1520: a 40 px defect is 0.05 % of the photo and would be
    # 5 px, less than one feature cell, at a 256 px input.
    result = train(train=load_set("aliens", normal=12, anomaly=4, long_side=2200))
    model = result.model
    assert model.long_side == 544
    side = 40
    for sample in load_set("aliens", normal=4, anomaly=0, long_side=2200, offset=31):
        clean = sample.image
        h, w = clean.shape[:2]
        damaged = clean.copy()
        damaged[h // 2 : h // 2 + side, w // 2 : w // 2 + side] = (200, 30, 30)  # a red speck
        p = model.predict(damaged)
        assert p.is_anomalous and p.score > model.predict(clean).score + 0.3
        # The mask finds it (its edge follows the map mixed from distance and head: ~0.89 of it).
        assert p.mask[h // 2 : h // 2 + side, w // 2 : w // 2 + side].mean() > 0.8
        assert p.anomalous_fraction < 0.005


def test_ordinary_photos_are_stretched_to_a_square_input_and_long_strips_are_not():
    assert input_size(380, 550, 256, 2.0) == (256, 256)  # aliens
    assert input_size(576, 768, 256, 2.0) == (256, 256)  # cookies, portrait or landscape alike
    assert input_size(768, 576, 256, 2.0) == (256, 256)
    assert input_size(200, 1600, 256, 2.0) == (64, 256)  # 8:1 strip: short side scaled 2x, no more
    assert input_size(380, 550, 256, 1.0) == (176, 256)  # aspect kept


@pytest.mark.shared_data
def test_a_4096_px_photo_is_scored_with_a_full_size_mask(trained, aliens):
    model = trained[0].model
    photo = np.asarray(Image.fromarray(aliens[1][0].image).resize((4096, 2830)))
    p = model.predict(photo)
    assert p.mask.shape == (2830, 4096)
    h, w = input_size(2830, 4096, model.long_side, model.max_stretch)
    assert p.anomaly_map.shape == (h // 8, w // 8)
    assert not p.is_anomalous  # the same normal photo as at its own size


def test_no_normal_images_is_a_training_error():
    anomalies = load_set("cookies", normal=0, anomaly=4)
    with pytest.raises(TrainingError) as error:
        train(train=anomalies)
    assert "normal" in error.value.message


def test_a_mask_of_the_wrong_size_is_a_training_error():
    samples = load_set("cookies", normal=3, anomaly=1)
    samples[-1].mask = np.zeros((10, 10), bool)
    with pytest.raises(TrainingError) as error:
        train(train=samples)
    assert "mask" in error.value.message


def test_a_cancelling_progress_callback_stops_training():
    class Cancelled(Exception):
        pass

    def cancel(stage, fraction):
        if stage == "fitting":
            raise Cancelled

    with pytest.raises(Cancelled):
        train(train=load_set("cookies", normal=4, anomaly=0), progress=cancel)


@pytest.mark.shared_data
def test_a_whole_image_discriminant_adds_its_term_to_the_score_and_is_saved_with_the_model(trained, aliens):
    plain = AnomalyModel.from_files(trained[0].model.to_files())
    plain.discriminant = None
    with_term = AnomalyModel.from_files(plain.to_files())
    labels = np.array([s.label for s in aliens[0]])
    vectors = np.stack([pooled(with_term.extractor.extract(s.image)[0]) for s in aliens[0]])
    with_term.discriminant = Discriminant.fit(vectors, labels)
    with_term.discriminant.offset, with_term.discriminant.gain = 0.5, 0.25
    files = with_term.to_files()
    meta = json.loads(files["model.json"])
    assert meta["format_version"] >= 3 and meta["discriminant"] == {
        "pools": ["mean", "std"],
        "offset": 0.5,
        "gain": 0.25,
    }
    assert {"discriminant.centre", "discriminant.direction"} <= set(load_tensors(files["model.safetensors"]))
    loaded = AnomalyModel.from_files(files)
    for sample in aliens[1][:2] + aliens[1][-2:]:
        features, fine = with_term.extractor.extract(sample.image)
        raw, probs = with_term.maps(features, fine)
        term = with_term.whole_image(features)
        assert term != 0 and term == loaded.whole_image(features)
        score = with_term.predict(sample.image).score
        assert score == loaded.predict(sample.image).score
        assert score == float(with_term.calibration(image_raw(raw, with_term.pool) + term))
        assert plain.predict(sample.image).score == float(plain.calibration(image_raw(raw, plain.pool)))
        with pytest.raises(ValueError, match="whole"):
            with_term.prediction(raw, probs, sample.image.shape[:2], 0.5)
    # A model saved before the discriminant (format 2) loads without one and scores as it did.
    meta = json.loads(plain.to_files()["model.json"])
    del meta["discriminant"]
    meta["format_version"] = 2
    old = AnomalyModel.from_files({**plain.to_files(), "model.json": json.dumps(meta).encode()})
    assert old.discriminant is None
    assert old.predict(aliens[1][-1].image).score == plain.predict(aliens[1][-1].image).score
