"""Tests for training.metrics on small cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from training.metrics import (
    brier,
    calibration_table,
    expected_calibration_error,
    lift_at,
    ndcg_at_k,
    recall_at_k,
    roc_auc,
    top_k_from_scores,
)

# --------------------------------------------------------------------------- roc_auc / lift


def test_roc_auc_hand_computed() -> None:
    # positives 0.35, 0.8 vs negatives 0.1, 0.4: 3 of 4 pairs ordered correctly
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75


def test_roc_auc_ties_count_half() -> None:
    # pairs: (0.5 vs 0.5) = 1/2, (0.5 vs 0.2) = 1, (0.9 vs 0.5) = 1, (0.9 vs 0.2) = 1 -> 3.5 / 4
    assert roc_auc(np.array([False, True, False, True]), [0.5, 0.5, 0.2, 0.9]) == 0.875


@pytest.mark.parametrize(
    ("y", "s", "message"),
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], "only one class"),
        ([0, 2, 1], [0.1, 0.2, 0.3], "0/1"),
        ([0, 1], [0.1], "has 1 values"),
        ([0, 1], [0.1, np.nan], "finite"),
    ],
)
def test_roc_auc_validation(y: list, s: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        roc_auc(y, s)


Y_LIFT = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1])  # base rate 0.3
S_LIFT = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [
        (0.1, 1.0 / 0.3),  # top 1: [1]
        (0.2, 0.5 / 0.3),  # top 2: [1, 0]
        (0.3, (2 / 3) / 0.3),  # top 3: [1, 0, 1]
        (0.7, (2 / 7) / 0.3),  # top 7: two positives
        (0.15, 0.5 / 0.3),  # ceil(1.5) = 2
        (1.0, 1.0),
    ],
)
def test_lift_at_hand_computed(fraction: float, expected: float) -> None:
    assert lift_at(Y_LIFT, S_LIFT, fraction) == pytest.approx(expected, rel=1e-12)


def test_lift_at_top_size_is_robust_to_float_rounding() -> None:
    # 0.07 * 100 == 7.000000000000001 in floats: the top group must still be 7 rows.
    y = np.zeros(100)
    y[[0, 7]] = 1.0  # base rate 0.02; row 7 is the 8th best
    s = -np.arange(100.0)
    assert lift_at(y, s, 0.07) == pytest.approx((1 / 7) / 0.02, rel=1e-12)
    assert lift_at(y, s, 0.08) == pytest.approx((2 / 8) / 0.02, rel=1e-12)


def test_lift_at_ties_break_by_row_order_and_validation() -> None:
    assert lift_at(Y_LIFT, np.ones(10), 0.1) == pytest.approx(1.0 / 0.3)
    assert lift_at(Y_LIFT[::-1], np.ones(10), 0.2) == pytest.approx(0.5 / 0.3)
    with pytest.raises(ValueError, match="no positive"):
        lift_at(np.zeros(10), S_LIFT)
    with pytest.raises(ValueError, match="fraction"):
        lift_at(Y_LIFT, S_LIFT, 0.0)


# --------------------------------------------------------------------------- top-k

SCORES = np.array(
    [
        [0.1, 0.5, 0.5, 0.9, 0.5],
        [1.0, 1.0, 1.0, 1.0, 1.0],
        [3.0, -np.inf, 2.0, 1.0, 0.0],
    ]
)


def test_top_k_ties_by_lower_item_index() -> None:
    np.testing.assert_array_equal(top_k_from_scores(SCORES, 3), [[3, 1, 2], [0, 1, 2], [0, 2, 3]])
    np.testing.assert_array_equal(top_k_from_scores(SCORES, 1), [[3], [0], [0]])
    assert top_k_from_scores(SCORES, 3).dtype == np.int64


def test_top_k_exclusion_and_padding() -> None:
    mask = np.zeros(SCORES.shape, dtype=bool)
    mask[0, 3] = True  # best item of user 0
    mask[2, [0, 2, 3]] = True  # user 2 keeps item 4 (0.0) and item 1 (-inf, never recommended)
    np.testing.assert_array_equal(
        top_k_from_scores(SCORES, 3, mask), [[1, 2, 4], [0, 1, 2], [4, -1, -1]]
    )
    # k > n_items pads with -1; -inf items are never returned
    np.testing.assert_array_equal(
        top_k_from_scores(SCORES, 7),
        [[3, 1, 2, 4, 0, -1, -1], [0, 1, 2, 3, 4, -1, -1], [0, 2, 3, 4, -1, -1, -1]],
    )


def test_top_k_matches_full_sort_on_random_ties() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, size=(50, 40)).astype(float)  # many ties
    got = top_k_from_scores(scores, 7)
    # reference: full lexicographic sort by (-score, item index)
    items = np.arange(40)
    expected = np.array([np.lexsort((items, -row))[:7] for row in scores])
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("scores", "k", "mask", "message"),
    [
        (np.ones(3), 1, None, "2-D"),
        (np.ones((2, 3)), 0, None, "positive integer"),
        (np.array([[1.0, np.nan]]), 1, None, "NaN"),
        (np.ones((2, 3)), 1, np.ones((2, 2), dtype=bool), "exclude_mask"),
    ],
)
def test_top_k_validation(
    scores: np.ndarray, k: int, mask: np.ndarray | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        top_k_from_scores(scores, k, mask)


# --------------------------------------------------------------------------- recall / ndcg

RECOMMENDED = np.array([[3, 1, 2], [0, 1, 2], [4, -1, -1], [0, 1, 2]])
ACTUAL = sp.csr_matrix(
    np.array(
        [
            [0, 1, 0, 0, 2],  # user 0 bought {1, 4} (a count of 2 is still one item)
            [0, 0, 0, 0, 0],  # user 1 bought nothing: left out of the mean
            [1, 1, 1, 1, 0],  # user 2 bought {0, 1, 2, 3}
            [0, 0, 1, 0, 0],  # user 3 bought {2}
        ]
    )
)
D = [1.0, 1.0 / math.log2(3), 0.5]  # 1 / log2(i + 2) for slots 0, 1, 2


def test_recall_at_k_hand_computed() -> None:
    # user 0: hit item 1 -> 1 / min(2, 3); user 2: 0 / min(4, 3); user 3: 1 / 1
    assert recall_at_k(RECOMMENDED, ACTUAL) == pytest.approx((0.5 + 0.0 + 1.0) / 3, rel=1e-12)


def test_ndcg_at_k_hand_computed() -> None:
    user0 = D[1] / (D[0] + D[1])  # hit in slot 1, ideal: 2 hits
    user3 = D[2] / D[0]  # hit in slot 2, ideal: 1 hit
    assert ndcg_at_k(RECOMMENDED, ACTUAL) == pytest.approx((user0 + 0.0 + user3) / 3, rel=1e-12)


def test_recall_and_ndcg_perfect_when_more_actual_than_k() -> None:
    actual = sp.csr_matrix(np.array([[1, 1, 1, 1, 0]], dtype=bool))
    recommended = np.array([[2, 0]])
    assert recall_at_k(recommended, actual) == 1.0  # min(|actual|=4, k=2) normalisation
    assert ndcg_at_k(recommended, actual) == pytest.approx(1.0)


def test_explicit_zero_is_not_a_purchase_and_dense_accepted() -> None:
    actual = sp.csr_matrix((np.array([0, 3]), (np.array([0, 0]), np.array([1, 2]))), shape=(1, 4))
    assert actual.nnz == 2  # item 1 is a stored zero
    recommended = np.array([[1, 2]])
    assert recall_at_k(recommended, actual) == 1.0  # |actual| = 1, hit on item 2
    assert ndcg_at_k(recommended, actual) == pytest.approx(D[1])
    assert recall_at_k(recommended, actual.toarray()) == 1.0


@pytest.mark.parametrize(
    ("recommended", "message"),
    [
        (np.array([[1, 1, 2]] * 4), "same item twice"),
        (np.array([[5, 1, 2]] * 4), "must be in"),
        (np.array([[0.0, 1.0, 2.0]] * 4), "integer"),
        (np.array([[0, 1, 2]] * 3), "users"),
    ],
)
def test_recall_validation(recommended: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        recall_at_k(recommended, ACTUAL)


def test_no_actual_items_raises() -> None:
    empty = sp.csr_matrix((2, 5))
    with pytest.raises(ValueError, match="no user"):
        recall_at_k(np.array([[0], [1]]), empty)
    with pytest.raises(ValueError, match="no user"):
        ndcg_at_k(np.array([[0], [1]]), empty)


# --------------------------------------------------------------------------- calibration

Y_CAL = [0, 1, 1, 0]
P_CAL = [0.05, 0.95, 1.0, 0.5]


def test_brier_hand_computed() -> None:
    # (0.01 + 0.04 + 0.16 + 0.25) / 4
    assert brier([0, 1, 1, 0], [0.1, 0.8, 0.6, 0.5]) == pytest.approx(0.115, rel=1e-12)
    assert brier([0, 1], [0.0, 1.0]) == 0.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier([0, 1], [0.5, 1.5])


def test_expected_calibration_error_hand_computed() -> None:
    # 4 bins: [0, .25): p .05, y 0 -> .05 ; [.5, .75): p .5, y 0 -> .5 ;
    #         [.75, 1]: mean p .975, rate 1 -> 2 * .025
    assert expected_calibration_error(Y_CAL, P_CAL, n_bins=4) == pytest.approx(
        (0.05 + 0.5 + 0.05) / 4, rel=1e-12
    )
    # one bin: |mean p - mean y| = |2.5 / 4 - 0.5|
    assert expected_calibration_error(Y_CAL, P_CAL, n_bins=1) == pytest.approx(0.125, rel=1e-12)
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(Y_CAL, P_CAL, n_bins=0)


def test_calibration_table_hand_computed() -> None:
    table = calibration_table(Y_CAL, P_CAL, n_bins=4)
    assert list(table.columns) == [
        "bin",
        "bin_lower",
        "bin_upper",
        "mean_predicted",
        "observed_rate",
        "count",
    ]
    expected = pd.DataFrame(
        {
            "bin": [0, 1, 2, 3],
            "bin_lower": [0.0, 0.25, 0.5, 0.75],
            "bin_upper": [0.25, 0.5, 0.75, 1.0],
            "mean_predicted": [0.05, np.nan, 0.5, 0.975],
            "observed_rate": [0.0, np.nan, 0.0, 1.0],
            "count": [1, 0, 1, 2],
        }
    )
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)
    assert table["count"].sum() == 4
