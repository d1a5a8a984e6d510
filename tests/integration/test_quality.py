"""Holdout quality on real data (CDNOW) and on the default synthetic shop, against baselines."""
from __future__ import annotations

from pathlib import Path

import pytest

from tenure.artifacts import latest_valid
from tenure.settings import TrainSettings
from training.pipeline import train_churn

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_churn_beats_recency_and_bgnbd_on_cdnow(tmp_path: Path) -> None:
    from tenure.data import load_cdnow

    shop = load_cdnow(cache_dir=ROOT / "data")
    result = train_churn(shop, tmp_path, TrainSettings(lgbm_threads=2), name="churn-cdnow")
    m = latest_valid(tmp_path, "churn-cdnow")[1].metrics  # stored in the manifest, not just printed
    assert result["metrics"].items() <= m.items()
    assert m["holdout_rows"] > 1_000
    assert m["auc"] > m["baseline_recency_auc"]
    assert m["auc"] > m["baseline_bgnbd_auc"]
    assert m["onnx_parity_max_abs_diff"] < 1e-4


@pytest.mark.slow
def test_churn_beats_recency_on_the_default_synthetic_shop(tmp_path: Path) -> None:
    from tenure.synthetic import generate_shop

    result = train_churn(generate_shop(), tmp_path, TrainSettings(lgbm_threads=2))
    m = result["metrics"]
    assert m["holdout_rows"] > 10_000
    assert m["auc"] > m["baseline_recency_auc"] + 0.01
    assert m["auc"] > m["baseline_bgnbd_auc"] + 0.01


def test_small_shop_models_report_metrics_next_to_baselines(trained_repo: Path) -> None:
    churn = latest_valid(trained_repo, "churn")[1].metrics
    assert {"auc", "baseline_recency_auc", "baseline_bgnbd_auc", "lift_at_10pct", "brier", "ece"} <= set(churn)
    prop = latest_valid(trained_repo, "propensity")[1].metrics
    assert prop["recall_at_10"] > prop["baseline_popularity_recall_at_10"]
    assert {"ndcg_at_10", "baseline_repeat_recall_at_10", "baseline_repeat_ndcg_at_10"} <= set(prop)
    look = latest_valid(trained_repo, "lookalike")[1].metrics
    assert look["auc"] > 0.5 and "baseline_centroid_cosine_auc" in look
