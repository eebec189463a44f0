"""The LFV-30 benchmark: our engine, and optionally anomalib's PatchCore, on the same splits.

Protocol (../shared/datasets/README.md): for each data set and seed, shuffle the normal and the
anomalous files with the seed, train on 20 normal + 10 anomalous, test on up to 50 normal + 50
anomalous of the rest. A data set whose origin.tsv has a `group` column (ball_screw: photos of one
spindle position are near-duplicates) is split by group first: half of the groups, drawn with the
seed, give the training images and the others the test images. With --masks the training
anomalies' masks are given to training; without it, training sees image labels only. Each model is saved, then served by a fresh subprocess that loads it and
predicts the test files one at a time from their encoded bytes to the mask; that process reports
the per-image latencies and its own peak RSS, so neither includes what training cost.

Run it with `python manage.py benchmark --data DIR ...` or `python -m bench --data ...`. It lives
outside the engine package because serving never needs it; it imports the engine, never the reverse.
The peer runs in a separate virtual environment (docs/benchmarks.md says how to set it up).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.backbones import BACKBONES, DEFAULT_BACKBONE
from engine.images import decode_image, decode_mask
from engine.metrics import (
    average_precision,
    bootstrap_image_metrics,
    bootstrap_mean,
    metrics_at_threshold,
    percentile_interval,
    roc_auc,
)
from engine.model import MODEL_FILES, AnomalyModel
from engine.training import Sample, mask_iou, pixel_auroc, train

ROOT = Path(__file__).resolve().parent.parent
PEER_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
KEYS = (
    "auroc",
    "ap",
    "precision",
    "recall",
    "f1",
    "pixel_auroc",
    "mask_iou",
    "fit_s",
    "infer_ms_p50",
    "infer_ms_p95",
    "peak_rss_mb",
)
TRAIN_NORMAL, TRAIN_ANOMALY, TEST_PER_CLASS = 20, 10, 50
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class Item:
    path: Path
    label: int
    mask: Path | None


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []


def _groups(data: Path) -> dict[str, str] | None:
    """{"normal/x.jpg": group} from the data set's origin.tsv when it has a `group` column, else None."""
    origin = data / "origin.tsv"
    if not origin.exists():
        return None
    lines = origin.read_text().splitlines()
    header = lines[0].split("\t")
    if "group" not in header or "file" not in header:
        return None
    file_at, group_at = header.index("file"), header.index("group")
    return {row[file_at]: row[group_at] for line in lines[1:] if len(row := line.split("\t")) > group_at}


def lfv30_split(data: Path, seed: int) -> tuple[list[Item], list[Item]]:
    """(train, test) items of one data set for one seed (split by group where the set has groups)."""
    rng = np.random.default_rng(seed)
    groups = _groups(data)
    train_groups = None
    if groups is not None:
        names = sorted(set(groups.values()))
        train_groups = {names[i] for i in rng.permutation(len(names))[: len(names) // 2]}
    split = {}
    for label, sub in ((0, "normal"), (1, "anomaly")):
        files = _images(data / sub)
        shuffled = [files[i] for i in rng.permutation(len(files))]
        n_train = TRAIN_NORMAL if label == 0 else TRAIN_ANOMALY
        items = [Item(p, label, m if (m := data / "mask" / f"{p.stem}.png").exists() else None) for p in shuffled]
        if train_groups is None:
            split[label] = (items[:n_train], items[n_train : n_train + TEST_PER_CLASS])
        else:
            side = [groups.get(f"{sub}/{i.path.name}") in train_groups for i in items]
            train_side = [i for i, t in zip(items, side) if t]
            test_side = [i for i, t in zip(items, side) if not t]
            split[label] = (train_side[:n_train], test_side[:TEST_PER_CLASS])
    return split[0][0] + split[1][0], split[0][1] + split[1][1]


def _sample(item: Item, *, with_mask: bool) -> Sample:
    image = decode_image(item.path.read_bytes())
    mask = None
    if with_mask and item.mask is not None:
        mask = decode_mask(item.mask.read_bytes(), width=image.shape[1], height=image.shape[0])
    return Sample(key=item.path.name, image=image, label=item.label, mask=mask)


def _masks(test: Sequence[Item]) -> list[np.ndarray | None]:
    """Ground-truth masks: normal images count as defect-free, anomalies need a file (else None)."""
    out = []
    for item in test:
        if item.mask is not None:
            height, width = decode_image(item.path.read_bytes()).shape[:2]
            out.append(decode_mask(item.mask.read_bytes(), width=width, height=height))
        elif item.label == 0:
            height, width = decode_image(item.path.read_bytes()).shape[:2]
            out.append(np.zeros((height, width), dtype=bool))
        else:
            out.append(None)
    return out


def score(served: dict, test: Sequence[Item], masks: Sequence[np.ndarray | None], fit_s: float) -> dict:
    """Benchmark numbers of one run from what its serving process reported.

    Mask IoU: the served mask (empty for an image not flagged) against the true one at full size,
    averaged over the anomalous test images that have a mask. Per class: one class, "anomaly", as
    the shared sets' masks are binary; F1 over the test images whose truth is known (normal, or
    anomalous with a mask) of "the mask marks something", and the mean IoU.
    """
    scores, labels = np.asarray(served["scores"]), np.array([i.label for i in test])
    threshold = served["threshold"]
    at = metrics_at_threshold(scores, labels, threshold)
    with_mask = [(m, mask) for m, mask in zip(served["maps"], masks) if mask is not None]
    has_pixel_truth = any(i.mask is not None for i in test)
    ious = [
        mask_iou(predicted > 0, truth)
        for predicted, truth, item in zip(served["masks"], masks, test)
        if item.label == 1 and truth is not None
    ]
    judged = [(predicted, truth) for predicted, truth in zip(served["masks"], masks) if truth is not None]
    per_class = {}
    if has_pixel_truth:
        found = metrics_at_threshold([float(p.any()) for p, _ in judged], [int(t.any()) for _, t in judged], 0.5)
        per_class["anomaly"] = {"f1": found["f1"], "iou": float(np.mean(ious)) if ious else None}
    times = np.asarray(served["times_ms"])
    bootstrap = bootstrap_image_metrics(scores, labels, threshold)
    if ious:
        bootstrap["mask_iou"] = bootstrap_mean(ious)
    return {
        "auroc": roc_auc(scores, labels),
        "ap": average_precision(scores, labels),
        "precision": at["precision"],
        "recall": at["recall"],
        "f1": at["f1"],
        "pixel_auroc": pixel_auroc([m for m, _ in with_mask], [k for _, k in with_mask]) if has_pixel_truth else None,
        "mask_iou": float(np.mean(ious)) if ious else None,
        "mask_iou_images": len(ious),
        "per_class": per_class,
        "fit_s": fit_s,
        "infer_ms_p50": float(np.percentile(times, 50)),
        "infer_ms_p95": float(np.percentile(times, 95)),
        "peak_rss_mb": served["peak_rss_mb"],
        "test_images": len(test),
        "bootstrap": bootstrap,
        "confusion_matrix": at["confusion_matrix"],
    }


def _serve_subprocess(command: list[str], workdir: Path, env: dict | None = None) -> dict:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed:\n{result.stderr[-4000:]}")
    served = json.loads((workdir / "served.json").read_text())
    maps = np.load(workdir / "maps.npz")
    masks = np.load(workdir / "masks.npz")
    served["maps"] = [maps[str(i)] for i in range(len(served["scores"]))]
    served["masks"] = [masks[str(i)] for i in range(len(served["scores"]))]
    return served


def run_ours(
    train_items: Sequence[Item],
    test: Sequence[Item],
    *,
    backbone: str,
    seed: int,
    workdir: Path,
    masks: bool = False,
) -> tuple[float, dict]:
    """Fit (decoding the training files included) and save; then serve in a fresh process."""
    started = time.perf_counter()
    result = train(train=[_sample(i, with_mask=masks) for i in train_items], backbone=backbone, seed=seed)
    fit_s = time.perf_counter() - started
    for name, data in result.model.to_files().items():
        (workdir / name).write_bytes(data)
    files = workdir / "test.txt"
    files.write_text("\n".join(str(i.path) for i in test))
    served = _serve_subprocess([sys.executable, "-m", "bench", "serve", str(workdir)], workdir)
    return fit_s, served


def serve(workdir: Path) -> None:
    """Subprocess side: load the model in `workdir`, predict its test files, report."""
    model = AnomalyModel.from_files({n: (workdir / n).read_bytes() for n in MODEL_FILES})
    paths = [Path(p) for p in (workdir / "test.txt").read_text().splitlines()]
    model.predict(decode_image(paths[0].read_bytes()))  # load the graph, as a worker does at start
    scores, maps, masks, times = [], {}, {}, []
    for i, path in enumerate(paths):
        data = path.read_bytes()
        started = time.perf_counter()
        prediction = model.predict(decode_image(data))
        times.append((time.perf_counter() - started) * 1000)
        scores.append(prediction.score)
        maps[str(i)] = prediction.anomaly_map
        masks[str(i)] = prediction.class_mask
    np.savez(workdir / "maps.npz", **maps)
    np.savez_compressed(workdir / "masks.npz", **masks)
    report = {
        "scores": scores,
        "threshold": model.threshold,
        "times_ms": times,
        "peak_rss_mb": peak_rss_mb(),
        "torch_imported": "torch" in sys.modules,
    }
    (workdir / "served.json").write_text(json.dumps(report))


def run_peer(
    train_items: Sequence[Item], test: Sequence[Item], *, backbone: str, seed: int, workdir: Path
) -> tuple[float, dict]:
    if not PEER_PYTHON.exists():
        raise RuntimeError(f"the peer needs {PEER_PYTHON}; set it up as docs/benchmarks.md describes")
    spec = {"backbone": backbone, "seed": seed, "train": [[str(i.path), i.label] for i in train_items]}
    (workdir / "peer.json").write_text(json.dumps(spec))
    (workdir / "test.txt").write_text("\n".join(str(i.path) for i in test))
    command = [str(PEER_PYTHON), "-m", "bench.peer_anomalib"]
    # anomalib's coreset loop allocates and frees a 20 MB tensor per step; with glibc's adaptive
    # mmap threshold the heap then grows without bound (21 GB seen). A fixed threshold returns
    # each block to the system, and the peer peaks at ~1.2 GB instead of being killed.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    fit = subprocess.run([*command, "fit", str(workdir)], cwd=ROOT, capture_output=True, text=True, env=env)
    if fit.returncode != 0:
        raise RuntimeError(f"anomalib fit failed:\n{fit.stderr[-4000:]}")
    fit_s = json.loads((workdir / "fit.json").read_text())["fit_s"]
    return fit_s, _serve_subprocess([*command, "serve", str(workdir)], workdir, env=env)


def _print(line: str) -> None:
    print(line, flush=True)  # progress lines of a run that takes minutes


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    VmHWM rather than getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so a process
    started from a large parent would report the parent's peak instead of its own.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _mean(runs: list[dict]) -> dict:
    """Means over seeds, their spread, and 95 % intervals of the means.

    `ci` bootstraps each seed's test images (within each label) and averages the seeds' metrics
    per round. The seeds' test sets overlap (they are drawn from one data set), so the interval
    is, if anything, narrower than the truth: read it as the uncertainty of the test images.
    """
    out = {}
    for key in KEYS:
        values = [r[key] for r in runs if r[key] is not None]
        out[key] = float(np.mean(values)) if values else None
    out["std"] = {
        k: float(np.std([r[k] for r in runs])) for k in ("auroc", "f1") if all(r[k] is not None for r in runs)
    }
    out["test_images"] = float(np.mean([r["test_images"] for r in runs]))
    out["mask_iou_images"] = float(np.mean([r["mask_iou_images"] for r in runs]))
    classes = sorted({name for r in runs for name in r["per_class"]})
    out["per_class"] = {
        name: {
            k: float(np.mean(v))
            if (
                v := [
                    r["per_class"][name][k]
                    for r in runs
                    if name in r["per_class"] and r["per_class"][name][k] is not None
                ]
            )
            else None
            for k in ("f1", "iou")
        }
        for name in classes
    }
    out["ci"] = {}
    names = {"auroc": "roc_auc", "ap": "average_precision", "f1": "f1", "mask_iou": "mask_iou"}
    for key, metric in names.items():
        arrays = [r["bootstrap"][metric] for r in runs if metric in r["bootstrap"]]
        out["ci"][key] = percentile_interval(np.mean(arrays, axis=0)) if len(arrays) == len(runs) else None
    return out


def benchmark(
    data: Sequence[Path],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    backbone: str = DEFAULT_BACKBONE,
    peer: bool = False,
    masks: bool = False,
    log: Callable[[str], None] = _print,
) -> dict:
    results = {}
    for folder in data:
        name = folder.name
        ours, theirs = [], []
        for seed in seeds:
            train_items, test = lfv30_split(folder, seed)
            truths = _masks(test)
            with tempfile.TemporaryDirectory(prefix="kenpin-bench-") as tmp:
                fit_s, served = run_ours(
                    train_items, test, backbone=backbone, seed=seed, workdir=Path(tmp), masks=masks
                )
            if served["torch_imported"]:
                raise RuntimeError("the serving process imported torch; the inference path must not")
            ours.append(score(served, test, truths, fit_s))
            log(f"{name} seed {seed}: ours " + _line(ours[-1]))
            if peer:
                with tempfile.TemporaryDirectory(prefix="kenpin-peer-") as tmp:
                    fit_s, served = run_peer(train_items, test, backbone=backbone, seed=seed, workdir=Path(tmp))
                theirs.append(score(served, test, truths, fit_s))
                log(f"{name} seed {seed}: peer " + _line(theirs[-1]))
        results[name] = _mean(ours)
        if peer:
            results[name]["peer"] = _mean(theirs)
    return {"datasets": results, "seeds": list(seeds), "backbone": backbone, "masks": masks}


def fit_scaling(
    folder: Path, sizes: Sequence[int], *, backbone: str, log: Callable[[str], None] = _print
) -> list[dict]:
    """Fit time (training + cross-validation) for training sets of growing size.

    Two thirds normal and one third anomalous, as in LFV-30. Where a class runs out of files,
    horizontally mirrored copies of its images are added (a mirrored photo is a different input
    to the model; stated in the report, not hidden).
    """
    rng = np.random.default_rng(0)
    pools = {}
    for label, sub in ((0, "normal"), (1, "anomaly")):
        files = _images(folder / sub)
        pools[label] = [files[i] for i in rng.permutation(len(files))]
    rows = []
    for size in sizes:
        wanted = {0: size - size // 3, 1: size // 3}
        samples, mirrored = [], 0
        for label, count in wanted.items():
            files = pools[label]
            for i in range(count):
                image = decode_image(files[i % len(files)].read_bytes())
                if i >= len(files):
                    image, mirrored = np.ascontiguousarray(image[:, ::-1]), mirrored + 1
                samples.append(Sample(key=f"{label}-{i}", image=image, label=label))
        started = time.perf_counter()
        result = train(train=samples, backbone=backbone)
        fit_s = time.perf_counter() - started
        row = {
            "images": size,
            "normal": wanted[0],
            "anomaly": wanted[1],
            "mirrored": mirrored,
            "fit_s": fit_s,
            "ms_per_image": 1000 * fit_s / size,
            "auroc_cv": result.metrics["roc_auc"],
        }
        log(" ".join(f"{k}={_fmt(v, 3) if isinstance(v, float) else v}" for k, v in row.items()))
        rows.append(row)
    return rows


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _line(r: dict) -> str:
    return " ".join(
        f"{k}={_fmt(r[k], 1 if k in ('infer_ms_p50', 'infer_ms_p95', 'peak_rss_mb', 'fit_s') else 3)}" for k in KEYS
    )


def table(results: dict) -> str:
    """One row per data set (and peer, and our/peer ratio when the peer ran)."""
    header = [
        "dataset",
        "who",
        "AUROC",
        "AP",
        "prec",
        "recall",
        "F1",
        "pixAUROC",
        "maskIoU",
        "fit s",
        "p50 ms",
        "p95 ms",
        "RSS MB",
    ]
    rows = []
    for name, r in results["datasets"].items():
        rows.append([name, "kenpin", *(_cell(k, r[k]) for k in KEYS)])
        if "peer" in r:
            p = r["peer"]
            rows.append(["", "anomalib", *(_cell(k, p[k]) for k in KEYS)])
            ratios = [_fmt(r[k] / p[k], 2) if r[k] is not None and p[k] else "-" for k in KEYS]
            rows.append(["", "ours/peer", *ratios])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(row, widths)) for row in [header, *rows]]
    for name, r in results["datasets"].items():
        intervals = ", ".join(f"{k} [{v[0]:.3f}, {v[1]:.3f}]" for k, v in r.get("ci", {}).items() if v)
        lines.append(f"{name}: 95 % intervals {intervals or '-'}; {r.get('test_images', 0):.0f} test images")
    return "\n".join(lines)


def _cell(key: str, value: float | None) -> str:
    return _fmt(value, 1 if key in ("fit_s", "infer_ms_p50", "infer_ms_p95", "peak_rss_mb") else 3)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", nargs="+", type=Path, required=True, help="data set folders (normal/, anomaly/, mask/)"
    )
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, choices=sorted(BACKBONES))
    parser.add_argument("--peer", action="store_true", help="also run anomalib's PatchCore (needs .venv-bench)")
    parser.add_argument("--json", type=Path, help="write the mean results as JSON here")
    parser.add_argument(
        "--masks",
        action="store_true",
        help="give the training anomalies' masks to training (default: image labels only)",
    )
    parser.add_argument(
        "--fit-scaling",
        metavar="SIZES",
        help="instead of LFV-30: time fitting on SIZES training images (e.g. 30,300,1000) of the first --data folder",
    )


def run(args: argparse.Namespace, log: Callable[[str], None] = _print) -> dict:
    if getattr(args, "fit_scaling", None):
        sizes = [int(s) for s in args.fit_scaling.split(",")]
        rows = fit_scaling(args.data[0], sizes, backbone=args.backbone, log=log)
        if args.json:
            args.json.write_text(json.dumps({"fit_scaling": {args.data[0].name: rows}}, indent=2))
        return {"fit_scaling": rows}
    seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    results = benchmark(
        args.data, seeds=seeds, backbone=args.backbone, peer=args.peer, masks=getattr(args, "masks", False), log=log
    )
    log(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        serve(Path(argv[1]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
