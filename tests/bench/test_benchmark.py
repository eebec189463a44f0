"""The LFV-30 split and the benchmark table (the runs themselves are measured, not tested)."""

import pytest

from bench.benchmark import _groups, lfv30_split, table
from tests.datasets import COOKIES, shared_set


def test_lfv30_trains_on_20_normal_and_10_anomalous_and_tests_on_the_rest():
    train, test = lfv30_split(COOKIES, seed=1)
    assert sum(i.label == 0 for i in train) == 20 and sum(i.label == 1 for i in train) == 10
    # cookies has 45 normal and 40 anomalous images: 25 + 30 remain for testing.
    assert sum(i.label == 0 for i in test) == 25 and sum(i.label == 1 for i in test) == 30
    assert not {i.path for i in train} & {i.path for i in test}
    assert any(i.mask is not None for i in train + test)


@pytest.mark.shared_data
def test_each_seed_gives_its_own_reproducible_split():
    aliens = shared_set("aliens")
    assert lfv30_split(aliens, seed=0) == lfv30_split(aliens, seed=0)
    assert lfv30_split(aliens, seed=0)[0] != lfv30_split(aliens, seed=1)[0]


def test_the_table_shows_our_over_peer_ratios():
    row = {
        "auroc": 0.99,
        "ap": 0.98,
        "precision": 0.9,
        "recall": 0.8,
        "f1": 0.85,
        "pixel_auroc": None,
        "mask_iou": None,
        "fit_s": 2.0,
        "infer_ms_p50": 30.0,
        "infer_ms_p95": 40.0,
        "peak_rss_mb": 300.0,
    }
    peer = {**row, "fit_s": 20.0, "peak_rss_mb": 1000.0}
    text = table({"datasets": {"cookies": {**row, "peer": peer}}})
    (ratio_line,) = [line for line in text.splitlines() if "ours/peer" in line]
    assert "ours/peer" in ratio_line and "0.10" in ratio_line and "0.30" in ratio_line


@pytest.mark.shared_data
def test_ball_screw_is_split_by_spindle_position():
    groups = _groups(shared_set("ball_screw"))
    for seed in (0, 1):
        train, test = lfv30_split(shared_set("ball_screw"), seed)
        assert sum(i.label == 0 for i in train) == 20 and sum(i.label == 1 for i in train) == 10
        assert sum(i.label == 0 for i in test) == 50 and sum(i.label == 1 for i in test) == 50
        train_groups = {groups[f"{'normal' if i.label == 0 else 'anomaly'}/{i.path.name}"] for i in train}
        test_groups = {groups[f"{'normal' if i.label == 0 else 'anomaly'}/{i.path.name}"] for i in test}
        assert train_groups and test_groups and not train_groups & test_groups
        assert all(i.mask is not None for i in train + test if i.label == 1)
    assert _groups(COOKIES) is None  # no group column: split as before
