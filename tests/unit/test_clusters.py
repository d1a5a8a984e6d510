"""Behavioural clusters on the small synthetic shop: ONNX parity, manifest, names and descriptions."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tenure.artifacts import load_manifest
from tenure.data import Shop
from tenure.features import FeatureSpace
from training.clusters import (
    LABEL_OUTPUT,
    SCORES_OUTPUT,
    ClusterModel,
    cluster_features,
    export_kmeans,
    kmeans_to_onnx,
    onnx_clusters,
)
from training.pipeline import data_end


@pytest.fixture(scope="module")
def fitted(small_shop: Shop) -> dict[str, Any]:
    space = FeatureSpace.fit(small_shop)
    arrays = space.encode(small_shop)
    _, X = space.customer_features(arrays, data_end(small_shop), small_shop.customers)
    model = ClusterModel(k=6, seed=7, threads=1).fit(space.names, X)
    return {"names": space.names, "X": X, "model": model, "clusters": model.describe(X)}


def test_features_are_behaviour_only_with_weighted_mix_blocks(fitted: dict[str, Any]) -> None:
    feats = cluster_features(fitted["names"])
    names = [f.name for f in feats]
    assert "recency_days" in names and "spend_total" in names and "chan_share_email" in names
    assert not any(n == "age" or n.startswith(("gender_", "region_")) or n == "days_since_signup" for n in names)
    cats = [f for f in feats if f.name.startswith("cat_share_")]
    assert sum(f.weight**2 for f in cats) == pytest.approx(2.0)  # the block counts as two features
    # A space without categories / channels (CDNOW) still has behaviour features.
    assert [f.name for f in cluster_features(FeatureSpace().names)][:3] == ["recency_days", "tenure_days", "orders_total"]


def test_onnx_takes_the_full_row_and_matches_sklearn(fitted: dict[str, Any]) -> None:
    model, X = fitted["model"], fitted["X"]
    rows = X[model.holdout_rows_]
    label, scores = onnx_clusters(kmeans_to_onnx(model), rows)
    assert label.dtype == np.int64 and label.shape == (len(rows),)
    assert scores.dtype == np.float32 and scores.shape == (len(rows), model.k_)
    np.testing.assert_array_equal(label, model.predict(rows))
    assert np.max(np.abs(scores - model.distances(rows))) <= 1e-3
    np.testing.assert_array_equal(label, np.argmin(scores, axis=1))


def test_unknown_gap_is_filled_not_logged(fitted: dict[str, Any]) -> None:
    model, names = fitted["model"], fitted["names"]
    row = fitted["X"][:1].copy()
    row[0, names.index("gap_mean_days")] = -1.0
    j = [f.name for f in model.features_].index("gap_mean_days")
    assert model.transform_rows(row)[0, j] == pytest.approx(model.fill_[j])
    assert np.isfinite(onnx_clusters(kmeans_to_onnx(model), row)[1]).all()


def test_clusters_have_distinct_names_and_descriptions(fitted: dict[str, Any]) -> None:
    clusters = fitted["clusters"]
    assert len(clusters) == 6
    assert all(c.name and c.description and c.size > 0 for c in clusters)
    assert len({c.name for c in clusters}) == 6
    assert len({c.description for c in clusters}) == 6
    assert sum(c.size for c in clusters) == len(fitted["X"])
    # Renumbered by spend: cluster 0 spends the most (median), the last one the least.
    assert clusters[0].medians["spend_total"] > clusters[-1].medians["spend_total"]


def test_export_writes_manifest_with_cluster_texts(fitted: dict[str, Any], tmp_path: Path) -> None:
    model, X, clusters = fitted["model"], fitted["X"], fitted["clusters"]
    path = export_kmeans(tmp_path, "clusters", model, X[model.holdout_rows_], clusters=clusters,
                         metrics=model.evaluate(X), training_window={"cutoff": "2026-01-01"})
    manifest = load_manifest(path)
    assert manifest.kind == "sklearn-kmeans"
    assert manifest.features == fitted["names"]
    assert manifest.inputs[0]["shape"] == [-1, len(fitted["names"])]
    assert [o["name"] for o in manifest.outputs] == [LABEL_OUTPUT, SCORES_OUTPUT]
    assert [c["name"] for c in manifest.params["clusters"]] == [c.name for c in clusters]
    assert manifest.metrics["onnx_parity_label_mismatches"] == 0
    assert json.loads((path / "clusters.json").read_text())[0]["description"] == clusters[0].description


def test_k_chosen_by_silhouette(fitted: dict[str, Any]) -> None:
    model = ClusterModel(k=None, k_range=(3, 4), threads=1, silhouette_sample=800).fit(fitted["names"], fitted["X"])
    assert model.k_ in (3, 4) and model.silhouettes_[model.k_] == max(model.silhouettes_.values())
