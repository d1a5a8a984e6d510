"""Profile report arithmetic on a hand-made matrix: means, shares, index, sort order, sentinels."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tenure.profile import BaseStats, ProfileRow, profile

NAMES = ["spend_total", "gap_mean_days", "chan_share_email", "is_vip", "orders_90d", "spend_trend"]
X = np.array(
    [
        # spend gap  email vip  o90  trend
        [30.0, -1.0, 1.0, 1.0, 0.0, -1.0],
        [30.0, 10.0, 0.5, 1.0, 0.0, -1.0],
        [10.0, 30.0, 0.0, 0.0, 0.0, 1.0],
        [10.0, 20.0, 0.5, 0.0, 0.0, 1.0],
    ],
    dtype=np.float32,
)
GROUP = np.array([True, True, False, False])


def by_feature(rows: list[ProfileRow]) -> dict[str, ProfileRow]:
    return {r.feature: r for r in rows}


def test_means_shares_index_and_smd() -> None:
    rows = by_feature(profile(X, NAMES, GROUP))
    spend = rows["spend_total"]
    assert (spend.group_mean, spend.base_mean, spend.index, spend.smd) == (30.0, 20.0, 150.0, 1.0)
    assert spend.kind == "numeric"
    email = rows["chan_share_email"]
    assert email.kind == "share"
    assert email.group_mean == pytest.approx(0.75) and email.base_mean == pytest.approx(0.5)
    assert email.index == pytest.approx(150.0)
    assert email.smd == pytest.approx(0.25 / math.sqrt(0.125))
    vip = rows["is_vip"]  # a 0/1 flag: its mean is the share of customers with the flag
    assert vip.kind == "share"
    assert (vip.group_mean, vip.base_mean, vip.index, vip.smd) == (1.0, 0.5, 200.0, 1.0)


def test_sentinel_values_are_left_out_of_that_feature_only() -> None:
    rows = by_feature(profile(X, NAMES, GROUP))
    gap = rows["gap_mean_days"]
    # Known gaps: base 10, 30, 20 (mean 20); group 10 only. With -1 counted it would be 14.75 / 4.5.
    assert (gap.base_known, gap.group_known) == (3, 1)
    assert gap.base_mean == pytest.approx(20.0) and gap.group_mean == pytest.approx(10.0)
    assert gap.index == pytest.approx(50.0)
    assert gap.smd == pytest.approx(-10.0 / math.sqrt(200.0 / 3.0))
    trend = rows["spend_trend"]  # -1 is a real value here, not a sentinel
    assert (trend.group_known, trend.group_mean, trend.base_mean) == (2, -1.0, 0.0)


def test_zero_base_mean_has_no_index_and_constant_column_scores_zero() -> None:
    rows = by_feature(profile(X, NAMES, GROUP))
    assert rows["spend_trend"].index is None  # base mean 0
    assert rows["spend_trend"].smd == -1.0
    flat = rows["orders_90d"]
    assert flat.index is None and flat.distinctiveness == 0.0 and flat.group_mean == 0.0


def test_sorted_by_distinctiveness_ties_in_column_order() -> None:
    order = [r.feature for r in profile(X, NAMES, GROUP)]
    assert order == ["gap_mean_days", "spend_total", "is_vip", "spend_trend", "chan_share_email", "orders_90d"]
    dist = [r.distinctiveness for r in profile(X, NAMES, GROUP)]
    assert dist == sorted(dist, reverse=True)


def test_indices_mask_and_reused_base_agree() -> None:
    a = profile(X, NAMES, GROUP)
    b = profile(X, NAMES, np.array([0, 1]), base=BaseStats.compute(X, NAMES))
    assert [r.to_dict() for r in a] == [r.to_dict() for r in b]


def test_group_with_only_sentinels_has_undefined_mean() -> None:
    gap = by_feature(profile(X, NAMES, np.array([0])))["gap_mean_days"]
    assert gap.group_known == 0 and gap.group_mean is None and gap.index is None and gap.distinctiveness == 0.0


def test_restricted_base_features_and_top() -> None:
    base = BaseStats.compute(X, NAMES, rows=np.array([1, 2, 3]))
    rows = profile(X, NAMES, np.array([1]), base=base, features=["spend_total", "chan_share_email"], top=1)
    assert len(rows) == 1 and rows[0].feature == "spend_total"
    assert rows[0].base_mean == pytest.approx(50.0 / 3.0)


def test_empty_group_and_bad_input_raise() -> None:
    with pytest.raises(ValueError, match="empty"):
        profile(X, NAMES, np.zeros(4, bool))
    with pytest.raises(ValueError, match="empty"):
        profile(X, NAMES, np.array([], dtype=np.int64))
    with pytest.raises(ValueError, match="mask"):
        profile(X, NAMES, np.ones(3, bool))
    with pytest.raises(ValueError, match="columns"):
        profile(X, NAMES[:-1], GROUP)
    with pytest.raises(ValueError, match="unknown feature"):
        profile(X, NAMES, GROUP, features=["nope"])


def test_a_base_summed_in_blocks_gives_the_one_block_moments(monkeypatch: pytest.MonkeyPatch) -> None:
    import tenure.profile as tp

    rng = np.random.default_rng(3)
    X = rng.normal(10, 3, (1_000, 4)).astype(np.float32)
    X[rng.random(1_000) < 0.2, 0] = -1.0
    names = ["gap_mean_days", "b", "c", "d"]
    whole = BaseStats.compute(X, names)
    monkeypatch.setattr(tp, "MOMENT_ROWS", 97)
    blocks = BaseStats.compute(X, names)
    assert blocks.known_n.tolist() == whole.known_n.tolist() and blocks.n_rows == whole.n_rows
    np.testing.assert_allclose(blocks.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(blocks.std, whole.std, rtol=1e-9)
