"""LFV-30 in one process with cached backbone features: for trying engine defaults quickly.

Same splits, training and scoring as `python -m bench` (bench.benchmark.lfv30_split, engine.train,
bench.benchmark.score), but each test image is scored in this process (model.maps + prediction,
no serving subprocess, no latency) and backbone features are cached on disk by image content,
so a second run with other defaults costs only the fitting. Not a benchmark of speed.

    OPENBLAS_NUM_THREADS=1 python scripts/engine_experiment.py ball_screw,cookies 0,1,2 --masks \\
        --kw steps=800 --kw batch=512 --set engine.training.WEAK_MIX_WEIGHTS="(0.5, 0.75, 1.0)"

--set MODULE.NAME=VALUE replaces a module constant read at call time; --kw NAME=VALUE replaces a
default argument of engine.head.fit_head; --ls N fixes the input long side.
"""

import argparse
import ast
import hashlib
import importlib
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import engine.features as F  # noqa: E402
import engine.head as H  # noqa: E402
import engine.model as M  # noqa: E402
import engine.training as T  # noqa: E402
from bench.benchmark import _masks, _sample, lfv30_split, score  # noqa: E402
from engine.metrics import roc_auc  # noqa: E402

DATASETS = Path(os.environ.get("KENPIN_DATASETS", "../shared/datasets"))
CACHE = Path(os.environ.get("KENPIN_FEATURE_CACHE", "/tmp/kenpin-feature-cache"))


class CachedExtractor(F.FeatureExtractor):
    def extract(self, image):
        key = hashlib.sha1(image.tobytes()).hexdigest()[:20]
        stem = f"{key}_{self.backbone.name}_{self.long_side}_{self.max_stretch}_{image.shape[0]}x{image.shape[1]}"
        paths = CACHE / f"{stem}.npy", CACHE / f"{stem}_fine.npy"
        if all(p.exists() for p in paths):
            return tuple(np.load(p) for p in paths)
        outputs = super().extract(image)
        for path, array in zip(paths, outputs):
            # Written under a temporary name and renamed: runs in parallel share the cache.
            partial = path.with_suffix(f".{os.getpid()}.partial.npy")
            np.save(partial, array)
            partial.replace(path)
        return outputs


def _diagnostics(model, features, raw, probs) -> dict:
    """Image scores other than the raw map's peak: top-k means, each part of the mix alone."""
    out = {"max": float(raw.max())}
    flat = np.sort(raw.ravel())[::-1]
    for share in (0.005, 0.01, 0.03):
        out[f"top{share}"] = float(flat[: max(1, int(share * flat.size))].mean())
    distance = model.scorer.distance_map(features, model.sigma)
    out["u"] = float(distance.max())
    out["u_raw"] = float(model.scorer.distance_map(features, 0.0).max()) if model.sigma else out["u"]
    if probs is not None:
        anomaly = 1.0 - probs[..., 0]
        out["h"] = float(anomaly.max())
        out["h_area"] = float(anomaly.mean())
        out["h_top1%"] = float(np.sort(anomaly.ravel())[::-1][: max(1, anomaly.size // 100)].mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", help="comma-separated data set folder names")
    parser.add_argument("seeds", help="comma-separated seeds")
    parser.add_argument("--masks", action="store_true")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--kw", action="append", default=[])
    parser.add_argument("--ls", type=int)
    parser.add_argument("--tag", default="")
    parser.add_argument("--diag", action="store_true", help="also print test AUROCs of other image scores")
    parser.add_argument(
        "--dump",
        type=Path,
        help="folder: per (set, seed) an .npz of the out-of-fold and test raw image scores with labels, and "
        "each anomalous test image's mask IoU if flagged, to try threshold rules offline",
    )
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    T.FeatureExtractor = M.FeatureExtractor = CachedExtractor
    for item in args.set:
        name, value = item.split("=", 1)
        module, constant = name.rsplit(".", 1)
        setattr(importlib.import_module(module), constant, ast.literal_eval(value))
    for item in args.kw:
        name, value = item.split("=", 1)
        H.fit_head.__kwdefaults__[name] = ast.literal_eval(value)
    if args.ls:
        T.long_side_for = lambda images: args.ls
    calibrated = {}
    if args.dump:
        args.dump.mkdir(parents=True, exist_ok=True)
        calibrate = T.calibrate

        def recording(normal, anomalous):
            calibrated.update(normal=np.array(normal), anomalous=np.array(anomalous))
            return calibrate(normal, anomalous)

        T.calibrate = recording
    for name in args.sets.split(","):
        rows = []
        for seed in [int(s) for s in args.seeds.split(",")]:
            train_items, test = lfv30_split(DATASETS / name, seed)
            truths = _masks(test)
            samples = [_sample(i, with_mask=args.masks) for i in train_items]
            started, cpu = time.perf_counter(), time.process_time()
            model = T.train(train=samples, seed=seed).model
            fit, cpu = time.perf_counter() - started, time.process_time() - cpu
            served = {"scores": [], "maps": [], "masks": [], "threshold": model.threshold}
            served |= {"times_ms": [0.0], "peak_rss_mb": 0.0}
            diag, dumped = [], {"raw": [], "iou": []}
            for item in test:
                image = _sample(item, with_mask=False).image
                features, fine = model.extractor.extract(image)
                raw, probs = model.maps(features, fine)
                if args.diag:
                    diag.append(_diagnostics(model, features, raw, probs))
                p = model.prediction(
                    raw,
                    probs,
                    image.shape[:2],
                    model.threshold,
                    whole=model.whole_image(features),
                    image=model.guide_image(image),
                )
                served["scores"].append(p.score)
                served["maps"].append(p.anomaly_map)
                served["masks"].append(p.class_mask)
                if args.dump:
                    # The raw image score (the threshold compares it with the calibration's raw
                    # threshold) and the IoU its mask would have if the image were flagged.
                    dumped["raw"].append(M.image_raw(raw, model.pool) + (model.whole_image(features) or 0.0))
                    truth = truths[len(dumped["iou"])]
                    iou = np.nan
                    if item.label == 1 and truth is not None:
                        drawn = model.class_mask(raw, probs, image.shape[:2], model.threshold, model.guide_image(image))
                        iou = T.mask_iou(drawn > 0, truth)
                    dumped["iou"].append(iou)
            r = score(served, test, truths, fit)
            if args.dump:
                np.savez(
                    args.dump / f"{name}_{'masks' if args.masks else 'labels'}_s{seed}.npz",
                    oof_normal=calibrated["normal"],
                    oof_anomalous=calibrated["anomalous"],
                    test_raw=np.array(dumped["raw"]),
                    test_labels=np.array([i.label for i in test]),
                    test_iou=np.array(dumped["iou"]),
                    raw_threshold=model.calibration.raw_threshold,
                )
            rows.append(r)
            if diag:
                labels = np.array([item.label for item in test])
                aurocs = {k: round(roc_auc(np.array([d[k] for d in diag]), labels), 3) for k in diag[0]}
                print(f"{args.tag} {name} s{seed} diag: {aurocs}", flush=True)
            info = {
                k: model.info.get(k)
                for k in ("mix_weight", "pixel_threshold", "pixel_ratio", "n_masked", "discriminant_auroc")
            }
            print(
                f"{args.tag} {name} s{seed}: auroc={r['auroc']:.3f} f1={r['f1']:.3f} "
                f"pix={r['pixel_auroc'] or 0:.3f} iou={r['mask_iou'] or 0:.3f} fit={fit:.1f} cpu={cpu:.1f} {info}",
                flush=True,
            )
        means = {
            k: np.mean([r[k] for r in rows if r[k] is not None] or [np.nan])
            for k in ("auroc", "f1", "pixel_auroc", "mask_iou")
        }
        print(f"{args.tag} {name} MEAN " + " ".join(f"{k}={v:.3f}" for k, v in means.items()), flush=True)


if __name__ == "__main__":
    main()
