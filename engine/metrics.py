"""Image- and pixel-level detection metrics in plain numpy.

Conventions: label 1 is an anomaly (the positive class); an image is flagged when its score is
at or above the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def robust_spread(values) -> float:
    """1.4826 x the median absolute deviation of `values`: their standard deviation were they
    normally distributed, barely moved by a few outliers (one odd photo among twenty). 0 when half
    or more are equal: each caller decides what then stands in for it."""
    values = np.asarray(values)
    return 1.4826 * float(np.median(np.abs(values - np.median(values))))


def _arrays(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    return s, y


def metrics_at_threshold(scores: Sequence[float], labels: Sequence[int], threshold: float) -> dict:
    """Precision, recall, F1 and the confusion matrix when flagging scores >= threshold.

    Precision is 0 when nothing is flagged and recall 0 when there are no anomalies, so that the
    numbers stay JSON numbers; the confusion matrix says which case it is.
    """
    s, y = _arrays(scores, labels)
    flagged = s >= threshold
    tp = int(np.sum(flagged & y))
    fp = int(np.sum(flagged & ~y))
    fn = int(np.sum(~flagged & y))
    tn = int(np.sum(~flagged & ~y))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "confusion_matrix": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
    }


def _cumulative_counts(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thresholds (descending distinct scores) and true/false positives when flagging >= each."""
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # ties flag together
    tps = np.cumsum(y)[last_of_run]
    fps = np.cumsum(~y)[last_of_run]
    return s[last_of_run], tps, fps


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) from (0, 0) to (1, 1)."""
    s, y = _arrays(scores, labels)
    _, tps, fps = _cumulative_counts(s, y)
    tpr = np.r_[0.0, tps / max(1, y.sum())]
    fpr = np.r_[0.0, fps / max(1, (~y).sum())]
    return fpr, tpr


def roc_auc(scores, labels) -> float | None:
    """Area under the ROC curve (ties count half); None unless both classes are present."""
    s, y = _arrays(scores, labels)
    if y.all() or not y.any():
        return None
    fpr, tpr = roc_curve(s, y)
    return float(np.trapezoid(tpr, fpr))


def pr_curve(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) for every distinct threshold, highest threshold first."""
    s, y = _arrays(scores, labels)
    _, tps, fps = _cumulative_counts(s, y)
    precision = tps / (tps + fps)
    recall = tps / max(1, y.sum())
    return precision, recall


def average_precision(scores, labels) -> float | None:
    """Step-wise area under the PR curve (as scikit-learn computes it); None without anomalies."""
    s, y = _arrays(scores, labels)
    if not y.any():
        return None
    precision, recall = pr_curve(s, y)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def best_f1_threshold(scores, labels, *, gap_fraction: float = 0.5) -> float | None:
    """The threshold with the best F1, placed inside the gap below the lowest flagged score.

    `gap_fraction` is where in the gap between the highest unflagged and the lowest flagged score
    (0 at the former, 1 at the latter); inside rather than at a score, so that an image scoring a
    hair below the lowest anomaly of the calibration set is not decided by rounding. None
    without both classes.
    """
    s, y = _arrays(scores, labels)
    if y.all() or not y.any():
        return None
    thresholds, tps, fps = _cumulative_counts(s, y)
    f1 = 2 * tps / (tps + fps + y.sum())
    best = int(np.argmax(f1))  # first maximum: the highest threshold among equally good ones
    below = thresholds[best + 1] if best + 1 < thresholds.size else thresholds[best] - 1.0
    return float(below + gap_fraction * (thresholds[best] - below))


def expected_f1_threshold(scores, labels, *, gap_fraction: float = 0.5, points: int = 2000) -> float | None:
    """The threshold with the best F1 expected under a normal distribution fitted to each class.

    The best-F1 cut on the scores themselves (`best_f1_threshold`) is decided by the two images on
    either side of it; with ten anomalies and twenty normal images that gap is wide and where it
    falls is noise. Here each class's scores are summarised by a mean and a standard deviation of
    asinh(score / s), s the normal scores' robust spread (1.4826 x their median absolute
    deviation, or their standard deviation if that is 0): the raw image scores are signed and the
    anomalies' upper tail is long, so a scale linear near 0 and log-like beyond a few spreads;
    dividing by s first makes the threshold follow the scores' units (scores x k, threshold x k),
    which change with the backbone and the model's parts. The threshold maximises the F1 those
    distributions predict, the classes weighted by their shares of `scores`; it is searched on
    `points` values spanning the transformed scores' range and half of it beyond either end, and
    where several points tie, the middle of the first run of them is taken. None without both
    classes; the best-F1 threshold (at `gap_fraction`) when a class has fewer than 3 scores or no
    spread, or a score is not finite (see `expected_f1_method`).
    """
    return _expected_f1(scores, labels, gap_fraction=gap_fraction, points=points)[0]


def expected_f1_method(scores, labels, *, gap_fraction: float = 0.5, points: int = 2000) -> tuple[float | None, str]:
    """`expected_f1_threshold` and the rule it used: "expected_f1", or "best_f1" where it fell back."""
    return _expected_f1(scores, labels, gap_fraction=gap_fraction, points=points)


def _expected_f1(scores, labels, *, gap_fraction: float, points: int) -> tuple[float | None, str]:
    s, y = _arrays(scores, labels)
    if y.all() or not y.any():
        return None, "best_f1"
    normal, anomalous = s[~y], s[y]
    if (
        not np.isfinite(s).all()
        or min(normal.size, anomalous.size) < 3
        or not (np.ptp(normal) > 0 and np.ptp(anomalous) > 0)
    ):
        return best_f1_threshold(s, y, gap_fraction=gap_fraction), "best_f1"
    unit = robust_spread(normal)
    if not unit > 0:
        unit = float(np.std(normal))
    t = np.arcsinh(s / unit)
    normal, anomalous = t[~y], t[y]
    if not (np.std(normal) > 0 and np.std(anomalous) > 0):  # spread lost to rounding
        return best_f1_threshold(s, y, gap_fraction=gap_fraction), "best_f1"
    pad = 0.5 * (t.max() - t.min())
    grid = np.linspace(t.min() - pad, t.max() + pad, points)
    erfc = np.frompyfunc(math.erfc, 1, 1)

    def share_above(x: np.ndarray) -> np.ndarray:  # (points,) of a fitted normal distribution
        return 0.5 * erfc((grid - x.mean()) / (x.std(ddof=1) * math.sqrt(2))).astype(np.float64)

    prior = anomalous.size / t.size
    tp, fp = prior * share_above(anomalous), (1 - prior) * share_above(normal)
    f1 = 2 * tp / (tp + fp + prior)
    first = int(np.argmax(f1))
    last = first
    while last + 1 < points and f1[last + 1] == f1[first]:
        last += 1
    return float(unit * np.sinh(0.5 * (grid[first] + grid[last]))), "expected_f1"


def downsample_curve(x: np.ndarray, y: np.ndarray, max_points: int = 200) -> dict[str, list[float]]:
    """At most `max_points` points of a curve, endpoints kept, as JSON lists."""
    if x.size > max_points:
        keep = np.unique(np.linspace(0, x.size - 1, max_points).round().astype(int))
        x, y = x[keep], y[keep]
    return {"x": [round(float(v), 5) for v in x], "y": [round(float(v), 5) for v in y]}


# --- 95 % intervals --------------------------------------------------------------------------------
# "F1 1.000 from 30 photos" is a much weaker claim than from 3,000; every metric the engine reports
# carries an interval computed here, so that the console, the API and the benchmark show the same.
# Bootstrap resamples are represented by how often each image is drawn, (rounds, n) counts, so
# that each statistic is a few array operations over all rounds at once (milliseconds, not a
# Python loop of a thousand metric calls).

Z95 = 1.959963984540054  # standard normal quantile of 0.975
BOOTSTRAP_ROUNDS = 1000


def wilson_interval(successes: int, total: int, *, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion successes / total; None when total is 0.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or total
    successes (10 of 10 gives [0.72, 1.0], not [1.0, 1.0]).
    """
    if total <= 0:
        return None
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def resample_counts(
    n: int, *, strata: np.ndarray | None = None, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0
) -> np.ndarray:
    """(rounds, n) float64: how often each of n images is drawn in each bootstrap resample.

    With `strata` (one label per image) each group is resampled within itself, so that every
    resample keeps the evaluation's numbers of normal and anomalous images.
    """
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if strata is None else [np.flatnonzero(strata == g) for g in np.unique(strata)]
    counts = np.zeros((rounds, n))
    rows = np.arange(rounds)[:, None]
    for g in groups:
        if g.size:
            np.add.at(counts, (rows, g[rng.integers(0, g.size, (rounds, g.size))]), 1.0)
    return counts


def percentile_interval(values: np.ndarray) -> list[float] | None:
    """[low, high] 95 % percentile interval of bootstrap values (NaN = undefined in that round)."""
    values = np.asarray(values)
    values = values[np.isfinite(values)]
    if values.size < BOOTSTRAP_ROUNDS / 2:
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return [round(float(low), 6), round(float(high), 6)]


def _wilson(successes: int, total: int) -> list[float] | None:
    interval = wilson_interval(successes, total)
    return None if interval is None else [round(interval[0], 6), round(interval[1], 6)]


def _bootstrap_auc(s: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """ROC AUC of each resample: weighted share of correctly ordered (anomaly, normal) pairs."""
    pos, neg = s[y], s[~y]
    order = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])  # (P, N)
    cp, cn = counts[:, y], counts[:, ~y]
    return np.sum((cp @ order) * cn, axis=1) / (cp.sum(1) * cn.sum(1))


def _bootstrap_ap(s: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Average precision of each resample, ties flagged together as in average_precision."""
    order = np.argsort(-s, kind="stable")
    s, y, c = s[order], y[order], counts[:, order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(c * y, axis=1)[:, last_of_run]
    fps = np.cumsum(c * ~y, axis=1)[:, last_of_run]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tps + fps > 0, tps / (tps + fps), 0.0)
        recall = tps / tps[:, -1:]
    return np.sum(np.diff(np.concatenate([np.zeros((c.shape[0], 1)), recall], axis=1), axis=1) * precision, axis=1)


def bootstrap_image_metrics(scores, labels, threshold: float, *, seed: int = 0) -> dict[str, np.ndarray]:
    """{metric: (rounds,) values over bootstrap resamples} of F1, ROC AUC and average precision.

    Resamples images within each label. Metrics undefined for the evaluation are left out; NaN
    marks a resample where a metric is undefined. The benchmark averages these over seeds.
    """
    s, y = _arrays(scores, labels)
    if not y.any():
        return {}
    flagged = s >= threshold
    counts = resample_counts(s.size, strata=y, seed=seed)
    t, f, n = counts @ (flagged & y), counts @ (flagged & ~y), counts @ (~flagged & y)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = {"f1": 2 * t / (2 * t + f + n), "average_precision": _bootstrap_ap(s, y, counts)}
    if not y.all():
        values["roc_auc"] = _bootstrap_auc(s, y, counts)
    return values


def image_intervals(scores, labels, threshold: float, *, seed: int = 0) -> dict[str, list[float] | None]:
    """95 % intervals of the image-level metrics at `threshold`: {metric: [low, high] or None}.

    Precision and recall are proportions of images (Wilson); F1, ROC AUC and average precision
    are bootstrapped over images, stratified by label. None where the metric is undefined.
    """
    s, y = _arrays(scores, labels)
    ci = threshold_intervals(s, y, threshold, seed=seed)
    values = bootstrap_image_metrics(s, y, threshold, seed=seed)
    smaller_class = int(min(y.sum(), (~y).sum()))
    for metric, value in (("roc_auc", roc_auc(s, y)), ("average_precision", average_precision(s, y))):
        ci[metric] = percentile_interval(values[metric]) if metric in values else None
        if ci[metric] is not None and value is not None:
            ci[metric] = widen_to_proportion(ci[metric], value, smaller_class)
    return ci


def widen_to_proportion(interval: list[float] | None, value: float, n: int) -> list[float] | None:
    """`interval` widened, where narrower, to the Wilson interval of `value` read as a proportion
    of `n` images.

    A percentile bootstrap cannot see errors a sample does not have: with 10 anomalies all found
    and no false alarm, every resample scores F1 (or ROC AUC) 1.0 and the interval collapses to
    [1.0, 1.0], claiming certainty from 30 photos. The Wilson interval of the same share says what
    so few images allow (10 of 10: 0.72 to 1.0). Elsewhere the two are close; the wider is kept.
    """
    if interval is None or n <= 0:
        return interval
    low, high = wilson_interval(value * n, n)
    return [round(min(interval[0], low), 6), round(max(interval[1], high), 6)]


def threshold_intervals(scores, labels, threshold: float, *, seed: int = 0) -> dict[str, list[float] | None]:
    """95 % intervals of precision, recall and F1 at `threshold`, as image_intervals gives them
    (same resamples for the same seed), without the threshold-free ROC AUC and average precision,
    whose bootstrap costs far more: a page that moves the threshold needs only these three."""
    s, y = _arrays(scores, labels)
    flagged = s >= threshold
    tp, fp, fn = int(np.sum(flagged & y)), int(np.sum(flagged & ~y)), int(np.sum(~flagged & y))
    ci = {"precision": _wilson(tp, tp + fp), "recall": _wilson(tp, tp + fn), "f1": None}
    if y.any():
        counts = resample_counts(s.size, strata=y, seed=seed)
        t, f, n = counts @ (flagged & y), counts @ (flagged & ~y), counts @ (~flagged & y)
        with np.errstate(invalid="ignore", divide="ignore"):
            ci["f1"] = percentile_interval(2 * t / (2 * t + f + n))
        # F1 = 2TP / (2TP + FP + FN), a share of the anomalies found or falsely flagged.
        ci["f1"] = widen_to_proportion(ci["f1"], 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0, tp + fp + fn)
    return ci


def bootstrap_mean(values, *, seed: int = 0) -> np.ndarray:
    """(rounds,) means of per-image values (such as mask IoU) over bootstrap resamples; empty without any."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return np.empty(0)
    return resample_counts(v.size, seed=seed) @ v / v.size


def mean_interval(values, *, seed: int = 0) -> list[float] | None:
    """95 % bootstrap interval of the mean of per-image values (such as mask IoU); None without any."""
    means = bootstrap_mean(values, seed=seed)
    return percentile_interval(means) if means.size else None
