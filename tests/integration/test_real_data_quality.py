"""The issue's quality targets on public real data (CDNOW, The Complete Journey), as training
publishes the models: strict time split, metrics read back from the manifests.

What the README's table reports, asserted where the model meets the target; where it does not
(CDNOW churn: +0.004 AUC over BG/NBD's best, the target is +0.01) the test says so with a strict
xfail, so that reaching it later shows up."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pytest

from tenure.artifacts import latest_valid
from tenure.data import Shop
from tenure.features import FeatureSpace
from tenure.settings import TrainSettings
from training.clv import train_clv
from training.pipeline import CDNOW_CALIBRATION_END, data_end, train_churn

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def churn_and_clv(shop: Shop, repo: Path, clv_horizon_days: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train churn and CLV as `tenure train` does (the BG/NBD x GG column in the features) and read
    their metrics back from the published manifests."""
    space = FeatureSpace.fit(shop, btyd_horizons=(clv_horizon_days,))
    arrays = space.encode(shop)
    settings = TrainSettings(lgbm_threads=2)
    train_churn(shop, repo, settings, name="churn", space=space)
    train_clv(shop, repo, space, arrays, data_end(shop), horizon_days=clv_horizon_days, threads=2, name="clv")
    return latest_valid(repo, "churn")[1].metrics, latest_valid(repo, "clv")[1].metrics


def assert_spend_targets(m: dict[str, Any]) -> None:
    assert m["rmse"] <= m["baseline_bgnbd_gg_rmse"]
    assert abs(m["aggregate_error_pct"]) <= 10.0
    assert m["spearman"] >= m["baseline_bgnbd_gg_spearman"]
    assert m["onnx_parity_max_rel_diff"] <= 1e-4


@pytest.fixture(scope="module")
def cdnow(real_data_or_skip: Callable[..., Shop], tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:  # type: ignore[type-arg]
    from tenure.data import load_cdnow

    shop = real_data_or_skip(lambda: load_cdnow(cache_dir=ROOT / "data"), "CDNOW master log")
    horizon = int((data_end(shop) - CDNOW_CALIBRATION_END).days)  # the paper's 39-week holdout
    return churn_and_clv(shop, tmp_path_factory.mktemp("cdnow"), horizon)


@pytest.fixture(scope="module")
def journey(real_data_or_skip: Callable[..., Shop], tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:  # type: ignore[type-arg]
    from tenure.datasets import load_completejourney

    shop = real_data_or_skip(lambda: load_completejourney(cache_dir=ROOT / "data"), "The Complete Journey")
    return churn_and_clv(shop, tmp_path_factory.mktemp("journey"), 365)


def test_cdnow_churn_beats_bgnbd_and_is_calibrated(cdnow: tuple[dict, dict]) -> None:  # type: ignore[type-arg]
    churn, _ = cdnow
    assert churn["holdout_rows"] > 1_000
    assert churn["auc"] > churn["baseline_bgnbd_best_auc"] and churn["auc"] > churn["baseline_recency_auc"]
    assert churn["ece"] <= 0.03


@pytest.mark.xfail(strict=True, reason="CDNOW churn AUC is 0.744 against BG/NBD's best 0.740: +0.004, the target "
                                       "is +0.01 (nothing tried on pre-holdout validation reached it; README)")
def test_cdnow_churn_target_of_a_hundredth_over_bgnbd(cdnow: tuple[dict, dict]) -> None:  # type: ignore[type-arg]
    churn, _ = cdnow
    assert churn["auc"] >= churn["baseline_bgnbd_best_auc"] + 0.01


def test_cdnow_spend_beats_bgnbd_gamma_gamma(cdnow: tuple[dict, dict]) -> None:  # type: ignore[type-arg]
    _, clv = cdnow
    assert clv["holdout_cutoff"] == str(CDNOW_CALIBRATION_END.date()) and clv["holdout_days"] == 273
    assert_spend_targets(clv)


def test_complete_journey_churn_and_spend(journey: tuple[dict, dict]) -> None:  # type: ignore[type-arg]
    churn, clv = journey
    assert churn["holdout_rows"] > 2_000 and churn["label_days"] == 90
    assert churn["auc"] > churn["baseline_bgnbd_best_auc"] and churn["auc"] > churn["baseline_recency_auc"]
    assert churn["ece"] <= 0.03
    # one year of history: the 365-day CLV is judged on the holdout the history leaves, and says so
    assert clv["horizon_days"] == 365 and clv["holdout_days"] < 365 and "history too short" in clv["note"]
    assert pd.Timestamp(clv["holdout_end"]) == pd.Timestamp("2018-01-02")
    assert_spend_targets(clv)
