"""Best-channel multiclass on the small synthetic shop: labels, time split, baselines, ONNX export."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tenure.artifacts import load_manifest
from tenure.data import Shop
from tenure.errors import DataError
from tenure.features import FeatureSpace
from training.channel import (
    ChannelModel,
    channel_classes,
    channel_set,
    export_multiclass,
    multiclass_parity,
    onnx_proba,
    train_channel,
)
from training.export import lightgbm_to_onnx
from training.pipeline import data_end


@pytest.fixture(scope="module")
def fitted(small_shop: Shop) -> dict[str, Any]:
    space = FeatureSpace.fit(small_shop)
    arrays = space.encode(small_shop)
    end = data_end(small_shop)
    model = ChannelModel(horizon_days=90, seed=7, threads=1).fit(small_shop, space, arrays, end)
    return {"shop": small_shop, "space": space, "arrays": arrays, "end": end, "model": model,
            "metrics": model.evaluate()}


def test_label_is_the_channel_of_the_first_order_in_the_window(fitted: dict[str, Any]) -> None:
    shop, space, arrays = fitted["shop"], fitted["space"], fitted["arrays"]
    cutoff = pd.Timestamp("2025-06-01")
    classes = channel_classes(space)
    s = channel_set(space, arrays, shop.customers, cutoff, 90, classes)
    tx = shop.transactions
    win = tx[(tx["ts"] >= cutoff) & (tx["ts"] < cutoff + pd.Timedelta(days=90)) & ~tx["is_return"]]
    first = win.sort_values("ts", kind="stable").groupby("customer_id")["channel"].first()
    before = set(tx.loc[(tx["ts"] < cutoff) & ~tx["is_return"], "customer_id"])
    expected = first[first.index.isin(before)]
    got = pd.Series([classes[i] for i in s.y], index=arrays.customer_ids[s.codes])
    assert len(got) == len(expected) > 100
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False, check_dtype=False)


def test_time_split_keeps_training_windows_before_the_holdout(fitted: dict[str, Any]) -> None:
    model = fitted["model"]
    H = pd.Timedelta(days=model.horizon_days)
    assert model.holdout_cutoff_ == fitted["end"] - H
    assert all(c + H <= model.holdout_cutoff_ for c in model.train_cutoffs_)


def test_beats_the_majority_baseline_on_the_holdout(fitted: dict[str, Any]) -> None:
    m = fitted["metrics"]
    assert m["holdout_rows"] > 300
    assert m["top1_accuracy"] > m["baseline_majority_top1_accuracy"] + 0.2
    assert m["top2_accuracy"] > m["baseline_majority_top2_accuracy"]
    assert m["log_loss"] < m["baseline_majority_log_loss"]
    assert m["log_loss"] < m["baseline_frequent_log_loss"]
    assert m["top2_accuracy"] >= m["top1_accuracy"]
    assert all(isinstance(v, (int, float, str)) for v in m.values())  # flat, JSON-able


def test_classes_follow_the_feature_space_order(fitted: dict[str, Any]) -> None:
    model, space = fitted["model"], fitted["space"]
    assert model.classes_ == ("email", "push", "sms", "social", "web") == space.channels
    # Customers who always bought through one channel are predicted to use it again.
    h = model.holdout_
    P = model.predict_proba(h.X)
    for i, name in enumerate(model.classes_):
        loyal = h.X[:, space.names.index(f"chan_share_{name}")] == 1.0
        loyal &= h.X[:, space.names.index("orders_total")] >= 5
        if loyal.sum() >= 5:
            assert np.mean(P[loyal].argmax(axis=1) == i) > 0.8, name


def test_onnx_parity_and_manifest(fitted: dict[str, Any], tmp_path: Path) -> None:
    model = fitted["model"]
    X = model.holdout_.X
    onnx_bytes = lightgbm_to_onnx(model.model_, X.shape[1])
    P = onnx_proba(onnx_bytes, X)
    assert P.dtype == np.float32 and P.shape == (len(X), len(model.classes_))
    assert multiclass_parity(model.model_, onnx_bytes, X) <= 1e-4
    path = export_multiclass(tmp_path, "channel", model.model_, model.feature_names_, list(model.classes_), X,
                             metrics=fitted["metrics"], training_window={"holdout_cutoff": "x"})
    manifest = load_manifest(path)
    assert manifest.kind == "lightgbm-multiclass"
    assert manifest.params["classes"] == list(model.classes_)
    assert manifest.outputs[0]["name"] == "probabilities" and manifest.outputs[0]["classes"] == list(model.classes_)
    assert manifest.outputs[0]["shape"] == [-1, len(model.classes_)]


def test_data_without_channels_is_refused(small_shop: Shop, tmp_path: Path) -> None:
    shop = replace(small_shop, transactions=small_shop.transactions.drop(columns=["channel"]))
    space = FeatureSpace.fit(shop)
    assert space.channels == ()
    with pytest.raises(DataError, match="no channel column"):
        channel_classes(space)
    arrays = space.encode(shop)
    with pytest.raises(DataError, match="no channel column"):
        ChannelModel().fit(shop, space, arrays, data_end(shop))
    assert train_channel(shop, tmp_path, space, arrays, data_end(shop)) is None


def test_unknown_channel_is_not_a_class() -> None:
    space = FeatureSpace(channels=("email", "unknown", "web"))
    assert channel_classes(space) == ("email", "web")
    with pytest.raises(DataError, match="two known channels"):
        channel_classes(FeatureSpace(channels=("unknown", "web")))
