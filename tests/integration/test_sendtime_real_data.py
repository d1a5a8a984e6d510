"""Send-time optimisation on real timestamps (The Complete Journey): the evaluation alone, as training's "send time"
step runs it (time split, choices on a validation window before the holdout), against its baselines.
CDNOW has dates only: the estimate is skipped with the reason."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from tenure import sendtime
from tenure.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_completejourney_best_window_beats_the_baselines(real_data_or_skip: Callable[..., Any]) -> None:
    from tenure.datasets import load_completejourney

    shop = real_data_or_skip(lambda: load_completejourney(cache_dir=ROOT / "data"), "The Complete Journey")
    m = sendtime.evaluate(shop)
    # measured 2026-11-30: 0.364 vs shop-wide 0.281, last order's hour 0.307 (2,303 households)
    assert m["holdout_customers"] > 1_500
    assert m["window_hit_rate"] > m["baseline_shop_window_hit_rate"] + 0.04
    assert m["window_hit_rate"] > m["baseline_last_order_window_hit_rate"] + 0.02
    assert m["hour_loglik"] > m["baseline_shop_hour_loglik"] + 0.05
    assert m["weekday_hit_rate"] > m["baseline_shop_weekday_hit_rate"]


def test_cdnow_has_no_time_of_day(real_data_or_skip: Callable[..., Any]) -> None:
    from tenure.data import load_cdnow

    shop = real_data_or_skip(lambda: load_cdnow(cache_dir=ROOT / "data"), "CDNOW master log")
    with pytest.raises(DataError, match="no time of day"):
        sendtime.evaluate(shop)
