"""Score images with a packaged Kenpin model: no Kenpin server, no Django, no torch.

    pip install -r requirements.txt
    python kenpin_detect.py photo.jpg [more.png ...] [--threshold 0.6] [--masks DIR]

Prints one JSON object a line per image, with Lookout for Vision's DetectAnomalies fields
(IsAnomalous, Confidence, Anomalies) plus the anomaly Score (0..1, the model flags an image
when Score >= threshold). The scores are those of the Kenpin server that made the package: the
same model files, the same backbone graph and the same code (engine/), run by onnxruntime.
`--masks DIR` writes each image's anomaly mask there, as DetectAnomalies' AnomalyMask PNG.
"""

import argparse
import io
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL_DIR = HERE / "model"
# The model carries its backbone graph (backbone.onnx); a model saved before that finds the
# graph in the engine's cache folder, which is this package's own copy: nothing is exported.
os.environ["KENPIN_CACHE_DIR"] = str(MODEL_DIR)
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from engine.images import ImageError, decode_image  # noqa: E402
from engine.model import AnomalyModel  # noqa: E402

PACKAGE = json.loads((HERE / "package.json").read_text())
COLORS = PACKAGE["mask_colors"]  # {"background": "#FFFFFF", "anomaly": "#FF0000"}
# A segmentation model's classes, [{"name", "color"}] in the model's order; empty: classification.
CLASSES = PACKAGE.get("classes", [])


def load_model() -> AnomalyModel:
    names = ("model.safetensors", "model.json", "backbone.onnx")
    files = {name: (MODEL_DIR / name).read_bytes() for name in names if (MODEL_DIR / name).exists()}
    return AnomalyModel.from_files(files)


def mask_png(mask: np.ndarray) -> bytes:
    """(H, W) class ids (0 background) -> AnomalyMask's PNG, each class in its colour on white."""
    palette = [COLORS["background"], *([c["color"] for c in CLASSES] or [COLORS["anomaly"]])]
    image = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    image.putpalette([int(c[i : i + 2], 16) for c in palette for i in (1, 3, 5)])
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def detect(model: AnomalyModel, data: bytes, threshold: float) -> tuple[dict, np.ndarray]:
    prediction = model.predict(decode_image(data), threshold=threshold)
    anomalies = [
        {
            "Name": "background",
            "PixelAnomaly": {"TotalPercentageArea": 1.0 - prediction.anomalous_fraction, "Color": COLORS["background"]},
        }
    ]
    if CLASSES:
        # Every class the model knows, found or not, as the hosted segmentation model answers.
        anomalies += [
            {
                "Name": c["name"],
                "PixelAnomaly": {
                    "TotalPercentageArea": float(prediction.class_fractions.get(c["name"], 0.0)),
                    "Color": c["color"].upper(),
                },
            }
            for c in CLASSES
        ]
    elif prediction.anomalous_fraction > 0:
        anomalies.append(
            {
                "Name": "anomaly",
                "PixelAnomaly": {"TotalPercentageArea": prediction.anomalous_fraction, "Color": COLORS["anomaly"]},
            }
        )
    result = {
        "IsAnomalous": bool(prediction.is_anomalous),
        "Confidence": float(prediction.confidence),
        "Score": float(prediction.score),
        "Anomalies": anomalies,
    }
    return result, prediction.class_mask if CLASSES else prediction.mask


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Score images with this packaged Kenpin model.")
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument(
        "--threshold",
        type=float,
        default=PACKAGE["threshold"],
        help=f"decision threshold, 0..1 (default: {PACKAGE['threshold']:.4f}, the version's when packaged)",
    )
    parser.add_argument("--masks", type=Path, help="write each image's anomaly mask (PNG) into this folder")
    args = parser.parse_args(argv)
    model = load_model()
    if args.masks:
        args.masks.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in args.images:
        try:
            result, mask = detect(model, path.read_bytes(), args.threshold)
        except (OSError, ImageError) as exc:
            print(json.dumps({"File": str(path), "Error": getattr(exc, "message", str(exc))}), flush=True)
            failed += 1
            continue
        if args.masks:
            (args.masks / f"{path.stem}.png").write_bytes(mask_png(mask))
        print(json.dumps({"File": str(path), **result}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
