"""The whole-image discriminant: what it learns from pooled features and when training uses it."""

import numpy as np

from engine.discriminant import Discriminant, ledoit_wolf, pooled
from engine.metrics import roc_auc
from engine.training import _folds, choose_discriminant


def test_the_shrunk_covariance_stays_invertible_with_fewer_images_than_features_and_converges_with_many():
    rng = np.random.default_rng(0)
    few = ledoit_wolf(rng.normal(0, 2, (10, 50)))
    np.linalg.cholesky(few)  # positive definite although the sample covariance has rank 9
    diagonal = np.diag(few)
    assert np.all(np.abs(few - np.diag(diagonal)).max(axis=1) < 0.5 * diagonal)  # shrunk towards mu I
    true = np.array([[2.0, 0.8, 0.0], [0.8, 1.0, 0.3], [0.0, 0.3, 0.5]])
    many = ledoit_wolf(rng.multivariate_normal(np.zeros(3), true, 20_000))
    np.testing.assert_allclose(many, true, atol=0.05)


def test_pooling_gives_each_features_mean_and_spread_over_the_cells():
    features = np.stack([np.full((4, 5), 2.0), np.arange(20.0).reshape(4, 5)], axis=-1)  # (4, 5, 2)
    np.testing.assert_allclose(pooled(features), [2.0, 9.5, 0.0, np.std(np.arange(20.0))])


def _cells(rng, shift: float, n: int) -> list[np.ndarray]:
    """n images of (8, 8, 16) cells; `shift` moves every cell's first 8 features a little."""
    images = rng.normal(0, 1, (n, 8, 8, 16))
    images[..., :8] += shift
    return list(images.astype(np.float32))


def test_a_change_spread_over_the_whole_image_is_learnt_where_the_patch_scores_miss_it():
    # Each anomaly's cells are moved by a third of their spread: no cell stands out, the pooled
    # mean does. The patch scores know nothing (noise), so the discriminant must carry the ranking.
    rng = np.random.default_rng(1)
    features = _cells(rng, 0.0, 20) + _cells(rng, 0.35, 10)
    labels = np.r_[np.zeros(20), np.ones(10)].astype(int)
    fold = _folds(labels, 10, np.random.default_rng(2))
    patch_scores = rng.normal(0, 1, 30)
    discriminant, terms, tried = choose_discriminant(features, labels, fold, patch_scores)
    assert discriminant is not None and tried[0.0] < 0.8
    assert roc_auc(patch_scores + terms, labels) > 0.95  # out of fold: each value from a fit without it
    unseen = _cells(rng, 0.0, 10) + _cells(rng, 0.35, 10)
    values = [discriminant.term(f) for f in unseen]
    assert roc_auc(np.array(values), np.r_[np.zeros(10), np.ones(10)]) > 0.95


def test_it_is_left_out_where_the_whole_image_tells_nothing_the_patch_scores_do_not():
    rng = np.random.default_rng(3)
    features = _cells(rng, 0.0, 30)  # anomalies pooled like normal images
    labels = np.r_[np.zeros(20), np.ones(10)].astype(int)
    fold = _folds(labels, 10, np.random.default_rng(4))
    patch_scores = labels + rng.uniform(0, 0.5, 30)  # the patches rank every anomaly first
    discriminant, terms, tried = choose_discriminant(features, labels, fold, patch_scores)
    assert discriminant is None and terms is None and tried[0.0] == 1.0


def test_its_term_is_zero_for_a_typical_normal_image_and_grows_towards_the_anomalies():
    rng = np.random.default_rng(5)
    features = _cells(rng, 0.0, 20) + _cells(rng, 1.0, 10)
    labels = np.r_[np.zeros(20), np.ones(10)].astype(int)
    discriminant = Discriminant.fit(np.stack([pooled(f) for f in features]), labels)
    discriminant.offset = float(np.median(discriminant.value(np.stack([pooled(f) for f in features[:20]]))))
    discriminant.gain = 2.0
    normal_terms = [discriminant.term(f) for f in features[:20]]
    assert abs(np.median(normal_terms)) < 1e-6
    assert min(discriminant.term(f) for f in features[20:]) > max(normal_terms)
