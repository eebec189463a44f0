"""The memory banks and the patch scorer, on synthetic features where the answer is known."""

import numpy as np
import pytest

from engine.patchcore import (
    DEFECT_BANK_SIZE,
    DEFECT_WEIGHT,
    SPLIT_ROWS,
    NearestNeighbours,
    PatchScorer,
    build_bank,
    build_defect_bank,
    defect_patch_count,
    farthest_patches,
    row_cuts,
)


def test_nearest_neighbour_distances_are_exact():
    rng = np.random.default_rng(0)
    bank, queries = (
        rng.standard_normal((300, 16)).astype(np.float32),
        rng.standard_normal((5000, 16)).astype(np.float32),
    )
    brute = np.sqrt(((queries[:, None, :] - bank[None]) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(NearestNeighbours(bank).distance(queries), brute, rtol=1e-4, atol=1e-4)


def test_one_search_of_two_banks_gives_each_banks_own_distances():
    rng = np.random.default_rng(0)
    normal, defects = rng.standard_normal((300, 16)).astype(np.float32), rng.standard_normal((7, 16)).astype(np.float32)
    queries = rng.standard_normal((3000, 16)).astype(np.float32)  # more than one chunk
    to_normal, to_defects = NearestNeighbours(normal, defects).distances(queries)
    np.testing.assert_allclose(to_normal, NearestNeighbours(normal).distance(queries), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(to_defects, NearestNeighbours(defects).distance(queries), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n", [1024, 1080, 2500, 150])  # a model's photo, ball_screw's, two chunks, too few to split
def test_a_search_split_between_threads_gives_the_one_products_distances_to_the_last_bit(n):
    rng = np.random.default_rng(1)
    normal, defects = (
        rng.standard_normal((4096, 152)).astype(np.float32),
        rng.standard_normal((200, 152)).astype(np.float32),
    )
    queries = rng.standard_normal((n, 152)).astype(np.float32)
    search = NearestNeighbours(normal, defects)
    one = search.distances(queries)
    for threads in (2, 3):
        assert all(np.array_equal(a, b) for a, b in zip(one, search.distances(queries, threads=threads)))


def test_rows_are_split_at_multiples_of_the_split_and_never_leave_a_small_block():
    assert row_cuts(1024, 1) == [0, 1024]
    assert row_cuts(1024, 2) == [0, 480, 1024]
    assert row_cuts(150, 2) == [0, 150]  # a second block would have fewer than SPLIT_ROWS rows
    for n in range(1, 3000, 37):
        for parts in (2, 3, 4):
            cuts = row_cuts(n, parts)
            assert cuts[0] == 0 and cuts[-1] == n and len(cuts) <= parts + 1
            assert all(c % SPLIT_ROWS == 0 for c in cuts[1:-1])
            assert all(end - first >= SPLIT_ROWS for first, end in zip(cuts[1:-2], cuts[2:-1]))
            assert len(cuts) == 2 or n - cuts[-2] >= SPLIT_ROWS


def test_the_coreset_keeps_the_rare_patch_that_sampling_would_drop():
    rng = np.random.default_rng(0)
    images = [rng.normal(0, 0.1, (8, 8, 4)).astype(np.float32) for _ in range(10)]
    images[3][5, 5] = 10.0  # one unusual normal patch among 640
    bank = build_bank(images, seed=0, size=32)
    assert bank.shape == (32, 4)
    assert (bank == 10.0).all(axis=1).any()


def test_known_defects_raise_their_look_alikes_most():
    rng = np.random.default_rng(1)
    normal = rng.normal(0, 0.1, (200, 8)).astype(np.float32)
    defect = np.full(8, 3.0, dtype=np.float32)
    anomalous_image = rng.normal(0, 0.1, (4, 4, 8)).astype(np.float32)
    anomalous_image[0, 0] = defect
    picked = farthest_patches(anomalous_image, NearestNeighbours(normal), defect_patch_count(anomalous_image))
    assert picked.shape == (4, 8) and (picked[-1] == defect).all()  # the farthest comes last
    defects = build_defect_bank([picked], seed=0)
    assert defects.shape == (4, 8)

    plain, aware = PatchScorer(NearestNeighbours(normal)), PatchScorer(NearestNeighbours(normal), defects)
    like_the_known = (defect + 0.01)[None, None, :]
    unseen = np.full((1, 1, 8), -3.0, dtype=np.float32)  # as far from normal, unlike any known defect

    def raised(features):
        return aware.distance_map(features, 0)[0, 0] / plain.distance_map(features, 0)[0, 0]

    assert raised(like_the_known) == pytest.approx(1 + DEFECT_WEIGHT, rel=1e-3)
    # The defect bank also holds the anomalous image's next-worst, near-normal patches, which are
    # about as far from an unseen defect as the normal bank is: a small, uniform raise at most.
    assert 1.0 <= raised(unseen) <= 1 + DEFECT_WEIGHT * np.exp(-1) + 1e-3


def test_without_anomalies_there_is_no_defect_bank():
    assert build_defect_bank([], seed=0) is None


def test_many_anomalies_make_a_defect_bank_no_larger_than_its_cap():
    rng = np.random.default_rng(2)
    picked = [rng.normal(0, 1, (20, 8)).astype(np.float32) for _ in range(300)]  # 6,000 patches
    assert build_defect_bank(picked, seed=0).shape == (DEFECT_BANK_SIZE, 8)
