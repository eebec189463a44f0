"""Image- and pixel-level detection metrics in plain numpy.

Conventions: label 1 is an anomaly (the positive class); an image is flagged when its score is
at or above the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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


def downsample_curve(x: np.ndarray, y: np.ndarray, max_points: int = 200) -> dict[str, list[float]]:
    """At most `max_points` points of a curve, endpoints kept, as JSON lists."""
    if x.size > max_points:
        keep = np.unique(np.linspace(0, x.size - 1, max_points).round().astype(int))
        x, y = x[keep], y[keep]
    return {"x": [round(float(v), 5) for v in x], "y": [round(float(v), 5) for v in y]}
