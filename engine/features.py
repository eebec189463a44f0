"""Patch features of images, computed by the exported backbone graph in onnxruntime.

Training and inference both go through `FeatureExtractor`, so a model's scores at training time
and in production come from the same graph. Training exports the graph once per backbone into a
cache directory by a subprocess (engine.export), because importing torch here would cost a worker
~500 MB of memory; this module must never import torch. A saved model carries the graph's bytes,
so that a serving machine runs exactly the trained graph without torch, timm or an export.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from engine.backbones import BACKBONES, Backbone

# Bumped whenever engine.export changes what the graph computes, so that stale cached graphs are
# not reused. Stored in model.json; a model without its own graph refuses to run on another one.
# 3: a second output, the stride-4 stage; the first output is v2's, unchanged.
GRAPH_VERSION = 3
# Graph versions whose first output ("features") is the current one's: a model saved without its
# graph bytes by such a version runs on this engine's export.
SAME_FEATURES = (2, 3)
STRIDE = 8  # px of input per feature cell
FINE_STRIDE = 4  # px of input per cell of the second output (graph v3 on)
_ALIGN = 16  # input sides are multiples of the coarsest stage's stride

# By the graph's sha256 and intra-op threads: models of one graph share them.
_sessions: dict[tuple[str, int], ort.InferenceSession] = {}
_lock = threading.Lock()


class BackboneUnavailable(RuntimeError):
    """The backbone graph could not be exported (broken install); not a problem with the data."""


def cache_dir() -> Path:
    return Path(os.environ.get("KENPIN_CACHE_DIR") or Path.home() / ".cache" / "kenpin")


def graph_path(backbone: Backbone, directory: Path | None = None) -> Path:
    return (directory or cache_dir()) / f"{backbone.name}-v{GRAPH_VERSION}.onnx"


def ensure_graph(backbone: Backbone, directory: Path | None = None) -> Path:
    """Path of the backbone's ONNX graph, exporting it in a subprocess the first time.

    Only training needs this: a saved model carries the bytes of the graph it was trained with.
    """
    path = graph_path(backbone, directory)
    if path.exists():
        return path
    result = subprocess.run(
        [sys.executable, "-m", "engine.export", "--backbone", backbone.name, "--out", str(path)],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or not path.exists():
        raise BackboneUnavailable(f"exporting backbone {backbone.name} failed:\n{result.stderr[-4000:]}")
    return path


def graph_sha256(graph: bytes) -> str:
    return hashlib.sha256(graph).hexdigest()


def _threads() -> int:
    # A worker serves one image at a time; all cores go to that image unless the operator
    # shares the machine between several workers.
    return int(os.environ.get("KENPIN_THREADS") or os.cpu_count() or 1)


def session(graph: bytes, threads: int | None = None) -> ort.InferenceSession:
    """An onnxruntime session running `graph` (ONNX bytes) on `threads` intra-op threads (None:
    KENPIN_THREADS, else the cores), one per distinct graph and thread count per process.

    onnxruntime fixes a session's threads when it is made, so a caller that sometimes wants more
    threads than its default (a lone detect call, inference.worker) holds a second session."""
    threads = threads or _threads()
    key = (graph_sha256(graph), threads)
    with _lock:
        if key not in _sessions:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            # ORT's worker threads spin after each run waiting for more work; on a small shared
            # machine they then steal the cores from decoding and the neighbour search. Measured
            # end to end on a 768x576 JPEG: p50 82 -> 28 ms with other jobs running.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            _sessions[key] = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        return _sessions[key]


# How much more the short side may be scaled than the long one. Stretching photos of ordinary
# aspect (4:3, 3:2, 16:9) to a square input gives the short side more feature cells for the same
# long side: LFV-30 image AUROC on aliens (550x380) 0.995 -> 0.996 at 256 px, cookies 1.000 and
# the square solar cells unchanged (docs/benchmarks.md). Capped so that a long strip is not blown
# up into a huge, mostly interpolated square. 1.0 keeps the aspect ratio.
MAX_STRETCH = 2.0


def input_size(height: int, width: int, long_side: int, max_stretch: float = 1.0) -> tuple[int, int]:
    """(h, w) the image is resized to, sides multiples of 16.

    The long side becomes `long_side`; the short side is scaled by up to `max_stretch` times the
    long side's factor, but not past `long_side`.
    """
    scale = long_side / max(height, width)
    short = min(long_side, min(height, width) * scale * max_stretch)
    h, w = (long_side, short) if height >= width else (short, long_side)
    h = max(_ALIGN * 4, int(round(h / _ALIGN)) * _ALIGN)
    w = max(_ALIGN * 4, int(round(w / _ALIGN)) * _ALIGN)
    return h, w


# A tiled model (engine.training.tile_scale_for) scales every photo by its own factor and cuts it
# into tiles of at most its input's long side; beyond MAX_TILES tiles the scale gives way, so one
# photo costs at most MAX_TILES inputs of long_side x long_side (docs/benchmarks.md).
MAX_TILES = 16
# px: the longest untiled input that gets sessions of its own on other thread counts (`threads=`,
# a lone detect call's two threads). Each session keeps its own memory arena, as large as the
# activations of its largest batch: measured in an inference worker, a second session costs
# +41 MB for a 256 px cookie model, +491 MB for a 1024 px input and +465 MB for a tiled
# 4096x256 strip (docs/benchmarks.md). Larger or tiled models run such calls on their one
# session (only the neighbour search is split), so that a hosted model never doubles its memory.
MAX_SIDE_FOR_THREAD_SESSIONS = 384


def tile_grid(height: int, width: int, long_side: int, scale: float) -> tuple[int, int, int, int]:
    """(rows, cols, tile h, tile w) a photo is cut into at `scale` input px per photo px; tile
    sides are multiples of 16, so the scaled photo is cols * tile w by rows * tile h."""
    while math.ceil(height * scale / long_side) * math.ceil(width * scale / long_side) > MAX_TILES:
        scale *= 0.95
    rows, cols = math.ceil(height * scale / long_side), math.ceil(width * scale / long_side)
    tile_h = max(_ALIGN * 4, math.ceil(height * scale / rows / _ALIGN) * _ALIGN)
    tile_w = max(_ALIGN * 4, math.ceil(width * scale / cols / _ALIGN) * _ALIGN)
    return rows, cols, tile_h, tile_w


class FeatureExtractor:
    """Patch features of images by one backbone graph at one input size.

    `graph` is the ONNX bytes to run (a saved model's own); without it, this engine's current
    export of `backbone` is used, exporting it first if needed (which needs torch and timm).
    `tile_scale`: None to shrink each photo whole into the input; else input px per photo px at
    which photos are scaled and cut into tiles (tile_grid).
    """

    def __init__(
        self,
        backbone: str,
        long_side: int,
        max_stretch: float = 1.0,
        directory: Path | None = None,
        *,
        graph: bytes | None = None,
        tile_scale: float | None = None,
    ):
        self.backbone = BACKBONES[backbone]
        self.long_side = long_side
        self.max_stretch = max_stretch
        self.tile_scale = tile_scale
        self.graph = graph if graph is not None else ensure_graph(self.backbone, directory).read_bytes()
        self.session = session(self.graph)
        self._by_threads: dict[int, ort.InferenceSession] = {}  # sessions on other thread counts
        self.thread_sessions = tile_scale is None and long_side <= MAX_SIDE_FOR_THREAD_SESSIONS

    def _session(self, threads: int | None) -> ort.InferenceSession:
        if threads is None or not self.thread_sessions:
            return self.session
        if threads not in self._by_threads:  # held here: `session` hashes the graph (2 ms for 2.9 MB)
            self._by_threads[threads] = session(self.graph, threads)
        return self._by_threads[threads]

    def resize(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (h, w, 3) uint8 at the model's input size."""
        h, w = input_size(image.shape[0], image.shape[1], self.long_side, self.max_stretch)
        if (h, w) == image.shape[:2]:
            return image
        # Pillow's bilinear filter widens its support when shrinking, so thin defects are averaged
        # into the smaller image instead of being skipped between samples.
        return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (h/8, w/8, C) float32 patch features."""
        return self.extract(image)[0]

    def extract(self, image: np.ndarray, *, threads: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(H, W, 3) uint8 RGB -> ((h/8, w/8, C) patch features, (h/4, w/4, C4) stride-4 features
        or None when the graph predates them (v2)), float32. `threads`: onnxruntime's intra-op
        threads for this image (None: the session's default; ignored by tiled extractors and inputs
        longer than MAX_SIDE_FOR_THREAD_SESSIONS); the features are the same."""
        if self.tile_scale is None:
            return self.extract_input(self.resize(image), threads=threads)
        rows, cols, tile_h, tile_w = tile_grid(image.shape[0], image.shape[1], self.long_side, self.tile_scale)
        scaled = np.asarray(Image.fromarray(image).resize((cols * tile_w, rows * tile_h), Image.Resampling.BILINEAR))
        # (rows * cols, tile_h, tile_w, 3), row-major: one batch, as the graph takes any batch size.
        batch = scaled.reshape(rows, tile_h, cols, tile_w, 3).transpose(0, 2, 1, 3, 4).reshape(-1, tile_h, tile_w, 3)
        return self._run(batch, rows, cols, threads)

    def extract_input(self, resized: np.ndarray, *, threads: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """`extract` of a photo already at the model's input size (`resize`'s output; an untiled
        extractor only), for a caller that needs that image too."""
        if self.tile_scale is not None:
            raise ValueError("a tiled extractor cuts the photo itself: call extract with the photo")
        return self._run(resized[None], 1, 1, threads)

    def _run(
        self, batch: np.ndarray, rows: int, cols: int, threads: int | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        outputs = self._session(threads).run(
            None, {"image": np.ascontiguousarray(batch)}
        )  # (n, C, fh, fw)[, (n, C4, 2fh, 2fw)]
        features = _stitch(outputs[0], rows, cols)
        fine = _stitch(outputs[1], rows, cols) if len(outputs) > 1 else None
        return features, fine


def _stitch(tiles: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(rows * cols, C, fh, fw) feature grids of row-major tiles -> (rows * fh, cols * fw, C)."""
    n, c, fh, fw = tiles.shape
    grid = tiles.reshape(rows, cols, c, fh, fw).transpose(0, 3, 1, 4, 2).reshape(rows * fh, cols * fw, c)
    return np.ascontiguousarray(grid)
