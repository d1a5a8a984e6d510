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


def test_lookalike_from_any_seed_list(trained_repo: Path, tmp_path: Path) -> None:
    import shutil

    import numpy as np

    from tenure.errors import DataError
    from tenure.store import FeatureSnapshot
    from training.pipeline import train_lookalike

    repo = tmp_path / "repo"
    shutil.copytree(trained_repo / "features", repo / "features")
    snap = FeatureSnapshot.load_latest(repo)
    # Seed: the customers who bought most often in the Coffee category.
    share = snap.X[:, snap.feature_names.index("cat_share_Coffee")]
    seed = [str(c) for c in snap.customer_ids[np.argsort(-share)[:200]]]
    result = train_lookalike(repo, TrainSettings(lgbm_threads=2), seed, name="coffee-lovers")
    vdir, manifest = latest_valid(repo, "coffee-lovers")
    assert (vdir / "seed_ids.txt").read_text().split() == sorted(seed, key=lambda c: snap.index[c])
    assert manifest.params["seed_size"] == 200 and "cat_share_Coffee" in manifest.features
    assert result["metrics"]["auc"] > 0.8
    with pytest.raises(DataError, match="1 of 2 ids"):
        train_lookalike(repo, TrainSettings(), [seed[0], "nobody"], name="bad")
