"""Metrics against values worked out by hand."""

import warnings

import numpy as np
import pytest

from engine.metrics import (
    average_precision,
    best_f1_threshold,
    expected_f1_method,
    expected_f1_threshold,
    image_intervals,
    mean_interval,
    metrics_at_threshold,
    pr_curve,
    resample_counts,
    roc_auc,
    roc_curve,
    wilson_interval,
)

SCORES = [0.1, 0.4, 0.35, 0.8, 0.7, 0.2]
LABELS = [0, 0, 1, 1, 1, 0]


def test_metrics_at_threshold_count_scores_at_the_threshold_as_flagged():
    m = metrics_at_threshold(SCORES, LABELS, 0.4)
    assert m["confusion_matrix"] == {"tp": 2, "fp": 1, "tn": 2, "fn": 1}
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)


def test_nothing_flagged_gives_zero_precision_not_an_error():
    m = metrics_at_threshold(SCORES, LABELS, 0.99)
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0


def test_roc_auc_is_the_share_of_correctly_ordered_pairs():
    # Pairs (anomaly, normal) ordered correctly: 0.8 and 0.7 beat all 3 normals, 0.35 beats 2.
    assert roc_auc(SCORES, LABELS) == pytest.approx(8 / 9)
    assert roc_auc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)  # a tie counts half
    assert roc_auc([0.1, 0.2], [0, 0]) is None


def test_curves_run_from_the_strictest_threshold():
    fpr, tpr = roc_curve(SCORES, LABELS)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    precision, recall = pr_curve(SCORES, LABELS)
    assert precision[0] == 1.0 and recall[-1] == 1.0


def test_average_precision_steps_over_recall():
    # Ranked: 0.8 A, 0.7 A, 0.4 N, 0.35 A, ...: precision 1, 1 at recall 1/3, 2/3; 3/4 at recall 1.
    assert average_precision(SCORES, LABELS) == pytest.approx((1 + 1 + 3 / 4) / 3)


def test_expected_f1_threshold_is_steadier_and_better_than_the_best_f1_cut_on_30_scores():
    # Calibration sets as training has them (20 normal, 10 anomalous out-of-fold scores), drawn
    # from known classes; each threshold judged on a large sample of the same classes.
    rng = np.random.default_rng(0)

    def draw(n_normal, n_anomalous):
        scores = np.sinh(np.r_[rng.normal(0.0, 0.5, n_normal), rng.normal(2.0, 0.8, n_anomalous)])
        return scores, np.r_[np.zeros(n_normal), np.ones(n_anomalous)]

    population, truth = draw(20_000, 10_000)
    expected, best = [], []
    for _ in range(100):
        scores, labels = draw(20, 10)
        expected.append(expected_f1_threshold(scores, labels))
        best.append(best_f1_threshold(scores, labels))
    f1 = {
        name: [metrics_at_threshold(population, truth, t)["f1"] for t in ts]
        for name, ts in (("expected", expected), ("best", best))
    }
    assert np.std(np.arcsinh(expected)) < 0.7 * np.std(np.arcsinh(best))
    assert np.mean(f1["expected"]) > np.mean(f1["best"]) + 0.005
    assert min(f1["expected"]) > min(f1["best"])


def test_expected_f1_threshold_lies_between_the_classes_and_falls_back_with_few_images():
    normal, anomalous = [-0.3, -0.1, 0.0, 0.1, 0.4], [2.0, 3.0, 5.0]
    threshold = expected_f1_threshold(normal + anomalous, [0] * 5 + [1] * 3)
    assert 0.4 < threshold < 2.0
    assert expected_f1_threshold([0.1, 0.2], [0, 0]) is None
    few = [0.1, 0.2, 0.3, 0.9, 1.5]
    assert expected_f1_threshold(few, [0, 0, 0, 1, 1]) == best_f1_threshold(few, [0, 0, 0, 1, 1])
    same = [0.1, 0.2, 0.3, 0.9, 0.9, 0.9]
    assert expected_f1_threshold(same, [0, 0, 0, 1, 1, 1]) == best_f1_threshold(same, [0, 0, 0, 1, 1, 1])


def test_expected_f1_threshold_follows_the_scores_units():
    # Raw scores change scale with the backbone and the model's parts; the same 20 + 10 scores in
    # other units must give the same threshold in those units (asinh alone gave 1.07 / 1.04 /
    # 0.92 / 0.80 after dividing by k).
    rng = np.random.default_rng(0)
    scores = np.sinh(np.r_[rng.normal(0.0, 0.5, 20), rng.normal(2.0, 0.8, 10)])
    labels = np.r_[np.zeros(20), np.ones(10)]
    threshold = expected_f1_threshold(scores, labels)
    for k in (0.01, 100.0, 1e4):
        assert expected_f1_threshold(k * scores, labels) / k == pytest.approx(threshold, rel=1e-9)


def test_expected_f1_threshold_takes_the_middle_of_tied_points():
    # Classes far apart: the predicted F1 is exactly 1 from asinh(score / spread) ~5.1 to ~24.2;
    # the first tied point would sit at the normal end of that range.
    spread = 1.4826  # the normal scores' 1.4826 x median absolute deviation
    scores = np.r_[-1.0, 0.0, 1.0, spread * np.sinh([24.9, 25.0, 25.1])]
    threshold, method = expected_f1_method(scores, [0, 0, 0, 1, 1, 1])
    assert method == "expected_f1"
    assert 14.0 < np.arcsinh(threshold / spread) < 15.5


def test_expected_f1_threshold_reports_its_fallbacks_and_checks_scores_are_finite():
    normal, anomalous = [-0.3, -0.1, 0.0, 0.1, 0.4], [2.0, 3.0, 5.0]
    assert expected_f1_method(normal + anomalous, [0] * 5 + [1] * 3)[1] == "expected_f1"
    few = [0.1, 0.2, 0.3, 0.9, 1.5]
    assert expected_f1_method(few, [0, 0, 0, 1, 1]) == (best_f1_threshold(few, [0, 0, 0, 1, 1]), "best_f1")
    same = [0.1, 0.2, 0.3, 0.9, 0.9, 0.9]
    assert expected_f1_method(same, [0, 0, 0, 1, 1, 1])[1] == "best_f1"
    assert expected_f1_method([0.1, 0.2], [0, 0]) == (None, "best_f1")
    scores, labels = normal + anomalous + [np.inf], [0] * 5 + [1] * 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from the fit before falling back
        assert expected_f1_method(scores, labels) == (best_f1_threshold(scores, labels), "best_f1")


def test_best_f1_threshold_sits_in_the_gap_below_the_lowest_flagged_score():
    assert best_f1_threshold([0.1, 0.2, 0.6, 0.9], [0, 0, 1, 1]) == pytest.approx(0.4)
    assert best_f1_threshold([0.1, 0.2], [0, 0]) is None


def test_the_threshold_can_sit_nearer_the_normal_side_of_the_gap():
    assert best_f1_threshold([0.1, 0.2, 0.6, 0.9], [0, 0, 1, 1], gap_fraction=0.25) == pytest.approx(0.3)


def test_wilson_intervals_stay_in_range_and_are_not_empty_at_the_extremes():
    low, high = wilson_interval(10, 10)
    assert low == pytest.approx(0.7225, abs=1e-4) and high == pytest.approx(1.0)
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0.0) and high == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(0, 0) is None


def test_intervals_shrink_as_images_are_added():
    rng = np.random.default_rng(0)

    def widths(n):
        labels = np.r_[np.zeros(n), np.ones(n)]
        scores = labels * 0.6 + rng.random(2 * n)  # overlapping classes: AUROC about 0.85
        ci = image_intervals(scores, labels, 0.8)
        return {k: v[1] - v[0] for k, v in ci.items()}

    small, large = widths(15), widths(400)
    for metric in ("precision", "recall", "f1", "roc_auc", "average_precision"):
        assert large[metric] < small[metric] / 2, metric


def test_bootstrap_intervals_hold_the_value_and_resample_within_each_class():
    ci = image_intervals(SCORES, LABELS, 0.4)
    assert ci["roc_auc"][0] <= roc_auc(SCORES, LABELS) <= ci["roc_auc"][1]
    assert ci["precision"] == pytest.approx(list(wilson_interval(2, 3)), abs=1e-5)
    counts = resample_counts(6, strata=np.array(LABELS), rounds=50)
    assert (counts[:, np.array(LABELS) == 1].sum(axis=1) == 3).all()
    assert image_intervals([0.2, 0.3], [0, 0], 0.5)["roc_auc"] is None
    assert mean_interval([]) is None and mean_interval([0.4, 0.4]) == [0.4, 0.4]
