"""Tree contributions as ONNX: they sum to LightGBM's margin, match a numpy walk and an independent
recursive Saabas walk, follow LightGBM on NaN and on float32 threshold edges."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from onnxmltools import convert_lightgbm
from onnxmltools.convert.common.data_types import FloatTensorType

from tenure.artifacts import load_manifest
from tenure.data import Shop
from tenure.errors import ArtifactError
from tenure.features import FeatureSpace
from training import contrib
from training.churn import ChurnModel
from training.contrib import (
    KIND,
    contributions_onnx,
    export_contributions,
    onnx_contributions,
    reference_contributions,
    snap_onnx_thresholds,
)
from training.export import lightgbm_to_onnx, onnx_positive_proba
from training.lgbm import positive_proba


@pytest.fixture(scope="module")
def churn(small_shop: Shop) -> tuple[ChurnModel, list[str]]:
    space = FeatureSpace.fit(small_shop)
    arrays = space.encode(small_shop)
    end = small_shop.transactions["ts"].max().normalize() + pd.Timedelta(days=1)
    return ChurnModel(threads=1).fit(small_shop, space, arrays, end), space.names


@pytest.fixture(scope="module")
def onnx_bytes(churn: tuple[ChurnModel, list[str]]) -> bytes:
    model, names = churn
    return contributions_onnx(model.model_, len(names))


def raw_margin(model: lgb.LGBMClassifier, X: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(np.asarray(X, np.float32), raw_score=True), dtype=np.float64)


def test_export_sums_to_margin_on_holdout(churn: tuple[ChurnModel, list[str]], tmp_path: Path) -> None:
    model, names = churn
    X = model.holdout_.X
    path = export_contributions(tmp_path, "churn-contributions", model.model_, names, X[:500],
                                training_window={"cutoff": "x"})
    manifest = load_manifest(path)
    assert manifest.kind == KIND and manifest.features == names
    assert manifest.outputs[0]["shape"] == [-1, len(names) + 1]
    assert manifest.params["bias_column"] == len(names) and manifest.params["explains"] == "churn"
    assert manifest.metrics["parity_margin_max_abs_diff"] <= 1e-4

    contrib = onnx_contributions((path / "model.onnx").read_bytes(), X[500:])  # rows not used in the check
    assert contrib.shape == (len(X) - 500, len(names) + 1) and contrib.dtype == np.float32
    margin = raw_margin(model.model_, X[500:])
    np.testing.assert_allclose(contrib.astype(np.float64).sum(axis=1), margin, rtol=0, atol=1e-4)
    # ... and with the served churn model: sigmoid(sum) is its probability.
    proba = onnx_positive_proba(lightgbm_to_onnx(model.model_, len(names)), X[500:])
    np.testing.assert_allclose(1 / (1 + np.exp(-contrib.astype(np.float64).sum(axis=1))), proba, atol=1e-5)
    assert (np.abs(contrib[:, :-1]) > 0).sum(axis=1).mean() > 3  # contributions are spread, not just bias


def saabas_recursive(tree: dict[str, Any], x: np.ndarray, out: np.ndarray) -> None:
    """Textbook Saabas on LightGBM's dump, one row, recursion and dicts only (independent of contrib.py)."""
    def value(node: dict[str, Any]) -> tuple[float, float]:
        if "leaf_value" in node:
            return node["leaf_value"], node["leaf_count"]
        (lv, lc), (rv, rc) = value(node["left_child"]), value(node["right_child"])
        return (lv * lc + rv * rc) / (lc + rc), lc + rc

    node = tree
    out[-1] += value(node)[0]
    while "leaf_value" not in node:
        xv = float(x[node["split_feature"]])
        if np.isnan(xv):
            left = node["default_left"] if node["missing_type"] == "NaN" else 0.0 <= node["threshold"]
        else:
            left = xv <= node["threshold"]
        child = node["left_child"] if left else node["right_child"]
        out[node["split_feature"]] += value(child)[0] - value(node)[0]
        node = child


def test_onnx_equals_reference_walk(churn: tuple[ChurnModel, list[str]], onnx_bytes: bytes) -> None:
    model, names = churn
    X = model.holdout_.X
    ref = reference_contributions(model.model_, X)
    got = onnx_contributions(onnx_bytes, X)
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5)
    np.testing.assert_allclose(ref.sum(axis=1), raw_margin(model.model_, X), rtol=0, atol=1e-9)

    trees = model.model_.booster_.dump_model()["tree_info"]
    for i in range(0, len(X), 60):
        naive = np.zeros(len(names) + 1)
        for info in trees:
            saabas_recursive(info["tree_structure"], X[i], naive)
        np.testing.assert_allclose(ref[i], naive, rtol=0, atol=1e-9)


def test_nan_follows_lightgbm(churn: tuple[ChurnModel, list[str]], onnx_bytes: bytes) -> None:
    # The churn model never saw NaN (missing_type None): LightGBM treats NaN as 0.0.
    model, _ = churn
    rng = np.random.default_rng(3)
    X = model.holdout_.X[:600].copy()
    X[rng.random(X.shape) < 0.25] = np.nan
    got = onnx_contributions(onnx_bytes, X)
    np.testing.assert_allclose(got.astype(np.float64).sum(axis=1), raw_margin(model.model_, X), atol=1e-4)
    np.testing.assert_allclose(got, reference_contributions(model.model_, X), atol=2e-5)

    # A model trained with NaN: missing_type NaN, learned default directions both ways.
    n = 3000
    Z = rng.normal(size=(n, 3)).astype(np.float32)
    miss0, miss1 = rng.random(n) < 0.3, rng.random(n) < 0.3
    y = ((Z[:, 0] > 0) ^ miss0 | (miss1 & (Z[:, 2] > 0))).astype(int)
    Z[miss0, 0] = np.nan
    Z[miss1, 1] = np.nan
    nan_model = lgb.LGBMClassifier(n_estimators=30, num_leaves=8, n_jobs=1, verbose=-1).fit(Z, y)
    kinds = {(nd["missing_type"], nd["default_left"]) for t in nan_model.booster_.dump_model()["tree_info"]
             for nd in _splits(t["tree_structure"])}
    assert ("NaN", True) in kinds and ("NaN", False) in kinds
    Zt = rng.normal(size=(1000, 3)).astype(np.float32)
    Zt[rng.random((1000, 3)) < 0.3] = np.nan
    got = onnx_contributions(contributions_onnx(nan_model, 3), Zt).astype(np.float64)
    np.testing.assert_allclose(got.sum(axis=1), raw_margin(nan_model, Zt), rtol=0, atol=1e-4)
    np.testing.assert_allclose(got, reference_contributions(nan_model, Zt), rtol=0, atol=2e-5)


def _splits(node: dict[str, Any]) -> list[dict[str, Any]]:
    if "split_feature" not in node:
        return []
    return [node, *_splits(node["left_child"]), *_splits(node["right_child"])]


def test_float32_threshold_edges() -> None:
    """LightGBM puts thresholds between neighbouring training values; with neighbouring float32 values
    the nearest float32 of the threshold is the upper value itself, which then goes the wrong way."""
    rng = np.random.default_rng(0)
    a = np.float32(425.89)
    vals = np.array([np.nextafter(a, np.float32(-np.inf)), a, np.nextafter(a, np.float32(np.inf))], np.float32)
    x = rng.choice(vals, 3000)
    y = (x >= a).astype(int) ^ (rng.random(3000) < 0.05)
    X = np.c_[x, rng.random(3000)].astype(np.float32)
    model = lgb.LGBMClassifier(n_estimators=5, n_jobs=1, verbose=-1, min_child_samples=5).fit(X, y)
    margin = raw_margin(model, X)

    exact = onnx_contributions(contributions_onnx(model, 2), X).astype(np.float64)
    np.testing.assert_allclose(exact.sum(axis=1), margin, rtol=0, atol=1e-5)

    converted = convert_lightgbm(model, initial_types=[("features", FloatTensorType([None, 2]))], zipmap=False)
    churn_onnx = converted.SerializeToString()  # onnxmltools as it comes: nearest-float32 thresholds
    served = onnx_positive_proba(churn_onnx, X)
    assert np.abs(served - positive_proba(model, X)).max() > 0.05
    mirror = onnx_contributions(contributions_onnx(model, 2, thresholds="onnxmltools"), X).astype(np.float64)
    np.testing.assert_allclose(1 / (1 + np.exp(-mirror.sum(axis=1))), served, rtol=0, atol=1e-5)
    np.testing.assert_allclose(mirror, reference_contributions(model, X, "onnxmltools"), atol=1e-5)

    fixed = onnx_positive_proba(snap_onnx_thresholds(churn_onnx, model), X)
    np.testing.assert_allclose(fixed, positive_proba(model, X), rtol=0, atol=1e-5)
    exported = onnx_positive_proba(lightgbm_to_onnx(model, 2), X)  # what training.export serves
    np.testing.assert_allclose(exported, positive_proba(model, X), rtol=0, atol=1e-5)


def test_unsupported_and_degenerate_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    X = np.c_[rng.integers(0, 5, 2000), rng.random(2000)].astype(np.float32)
    y = (X[:, 0] % 2 == 0).astype(int)
    cat = lgb.LGBMClassifier(n_estimators=5, n_jobs=1, verbose=-1).fit(X, y, categorical_feature=[0])
    with pytest.raises(ValueError, match="categorical"):
        contributions_onnx(cat, 2)
    plain = lgb.LGBMClassifier(n_estimators=5, n_jobs=1, verbose=-1).fit(X, y)
    with pytest.raises(ValueError, match="n_features"):
        contributions_onnx(plain, 1)
    stump = lgb.LGBMClassifier(n_estimators=3, min_child_samples=5000, n_jobs=1, verbose=-1).fit(X, y)
    assert "split_feature" not in stump.booster_.dump_model()["tree_info"][0]["tree_structure"]  # one leaf
    got = onnx_contributions(contributions_onnx(stump, 2), X[:10]).astype(np.float64)
    np.testing.assert_allclose(got[:, -1], raw_margin(stump, X[:10]), atol=1e-6)
    assert not got[:, :-1].any()
    # A graph that is not the model's (here: another model's) fails the parity check, nothing is written.
    other = lgb.LGBMClassifier(n_estimators=5, n_jobs=1, verbose=-1).fit(X, 1 - y)
    monkeypatch.setattr(contrib, "contributions_onnx", lambda m, n, t="lightgbm": contributions_onnx(other, n, t))
    with pytest.raises(ArtifactError, match="parity"):
        export_contributions(tmp_path, "c", plain, ["a", "b"], X[:100])
    assert not (tmp_path / "c").exists() or not any(p for p in (tmp_path / "c").iterdir() if p.name[0] != ".")
