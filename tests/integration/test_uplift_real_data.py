"""Uplift on The Complete Journey's targeted campaigns (real data, fetched from PyPI): the log has NO
randomised control group (control = active households the campaign did not target), so it loads as an
observational log and its uplift is labelled confounded, published or not."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pytest

from tenure.campaigns import OBSERVATIONAL, OBSERVATIONAL_COLUMN, validate_campaigns
from tenure.data import Shop
from tenure.features import FeatureSpace
from training.pipeline import metrics_table, sanity_problem
from training.uplift import UpliftModel

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def journey(real_data_or_skip: Callable[..., Any]) -> Shop:
    from tenure.campaigns import with_completejourney_campaigns
    from tenure.datasets import load_completejourney

    return real_data_or_skip(lambda: with_completejourney_campaigns(load_completejourney(cache_dir=ROOT / "data"),
                                                                    ROOT / "data"),
                             "The Complete Journey (campaigns)")


def test_the_campaign_log_loads_as_observational_and_uplift_trains_labelled_so(journey: Shop) -> None:
    c = journey.campaigns
    assert c is not None
    validate_campaigns(c)
    assert c[OBSERVATIONAL_COLUMN].all() and c["campaign_id"].nunique() >= 20
    assert set(c["customer_id"]) <= set(journey.transactions["customer_id"])
    assert 0.05 < c["treated"].mean() < 0.3  # targeted households are a minority of each campaign's base
    # the later half of the year keeps the test fast: 11 campaigns, features at 10 send days
    later = c[c["sent_at"] >= pd.Timestamp("2017-07-01")]
    shop = dataclasses.replace(journey, campaigns=later)
    space = FeatureSpace.fit(shop)
    model = UpliftModel(window_days=14, seed=7, threads=1).fit(shop, space, space.encode(shop))
    m = model.evaluate()
    assert m["design"] == OBSERVATIONAL and m["holdout_rows"] > 1_000
    assert {"qini", "baseline_purchase_probability_qini", "uplift_at_20pct"} <= set(m)
    problem = sanity_problem({"name": "uplift-treated", "metrics": m})
    assert problem is None or OBSERVATIONAL in problem
    table = metrics_table([{"name": "uplift-treated", "metrics": m}], "The Complete Journey")
    assert f"uplift (14 d; {OBSERVATIONAL})" in table
