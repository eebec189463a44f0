"""The engine package imports lazily: a web process that checks uploads loads no inference runtime."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("onnxruntime", "safetensors", "torch", "timm")


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_importing_images_metrics_and_render_loads_no_onnxruntime():
    assert _loaded_after("import engine.images, engine.metrics, engine.render") == []
    assert _loaded_after("from engine import decode_image, thumbnail_jpeg, heatmap_png") == []


def test_the_package_still_offers_every_name_and_loads_the_runtime_only_then():
    assert _loaded_after("from engine import AnomalyModel, train") == ["onnxruntime", "safetensors"]


def test_an_unknown_name_is_an_attribute_error():
    import engine

    with pytest.raises(AttributeError, match="no_such_thing"):
        engine.no_such_thing  # noqa: B018
