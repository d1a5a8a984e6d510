"""Model repository: verified manifests, fallback to the last good version, atomic swaps."""
from __future__ import annotations

import shutil
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from services.core.runtime import Holder, OnnxModel
from tenure.artifacts import (
    Manifest,
    latest_valid,
    load_manifest,
    sha256_file,
    versions,
    write_artifact,
)
from tenure.errors import ArtifactError, ModelUnavailable
from training.export import export_binary, lightgbm_to_onnx, parity


@pytest.fixture(scope="module")
def classifier() -> tuple[lgb.LGBMClassifier, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3_000, 6)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] ** 2 + rng.normal(scale=0.5, size=3_000) > 0.5).astype(int)
    model = lgb.LGBMClassifier(n_estimators=60, num_leaves=15, verbose=-1).fit(X[:2_000], y[:2_000])
    return model, X[2_000:], y[2_000:]


def export(repo: Path, classifier, name: str = "m") -> Path:  # type: ignore[no-untyped-def]
    model, X, _ = classifier
    return export_binary(repo, name, model, [f"f{i}" for i in range(6)], X, metrics={"auc": 0.9},
                         training_window={"cutoff": "2025-01-01"})


def test_export_parity_on_held_out_rows(classifier) -> None:  # type: ignore[no-untyped-def]
    model, X, _ = classifier
    assert parity(model, lightgbm_to_onnx(model, 6), X) < 1e-5


def test_manifest_records_what_a_consumer_needs(tmp_path, classifier) -> None:  # type: ignore[no-untyped-def]
    vdir = export(tmp_path, classifier)
    m = load_manifest(vdir)
    assert m.features == [f"f{i}" for i in range(6)] and m.kind == "lightgbm-binary"
    assert m.inputs[0]["shape"] == [-1, 6] and m.outputs[0]["name"] == "probabilities"
    assert m.sha256 == sha256_file(vdir / "model.onnx") and m.created_at and m.version == vdir.name
    assert m.metrics["auc"] == 0.9 and m.metrics["onnx_parity_max_abs_diff"] < 1e-4
    model = OnnxModel(vdir, m)
    np.testing.assert_allclose(model.predict(classifier[1][:10]), classifier[0].predict_proba(classifier[1][:10])[:, 1],
                               atol=1e-5)


def test_tampered_artifact_is_refused_and_older_version_used(tmp_path, classifier) -> None:  # type: ignore[no-untyped-def]
    old = export(tmp_path, classifier)
    new = export(tmp_path, classifier)
    assert versions(tmp_path, "m")[0] == new
    with open(new / "model.onnx", "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(ArtifactError, match="sha256"):
        load_manifest(new)
    assert latest_valid(tmp_path, "m")[0] == old


def test_no_version_names_the_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ArtifactError, match="'churn'"):
        latest_valid(tmp_path, "churn")


def test_write_is_atomic_no_temp_dirs_left(tmp_path) -> None:  # type: ignore[no-untyped-def]
    write_artifact(tmp_path, Manifest(name="x", kind="blob"), {"a.bin": b"1"})
    assert [p.name.startswith(".") for p in (tmp_path / "x").iterdir()] == [False]


def test_holder_swaps_in_new_versions_and_keeps_the_old_on_a_broken_one(tmp_path, classifier) -> None:  # type: ignore[no-untyped-def]
    holder: Holder[OnnxModel] = Holder(tmp_path, ("m",), lambda repo: OnnxModel.load_latest(repo, "m"))
    with pytest.raises(ModelUnavailable, match="not loaded"):
        holder.get()
    assert not holder.refresh() and "no valid version" in holder.last_error
    first = export(tmp_path, classifier)
    assert holder.refresh() and holder.get().version == first.name
    assert not holder.refresh()  # nothing new

    # A newer version whose manifest verifies but whose ONNX onnxruntime cannot load.
    broken = tmp_path / "m" / "99990101T000000000000Z"
    shutil.copytree(first, broken)
    (broken / "model.onnx").write_bytes(b"not an onnx model")
    m = load_manifest(first)
    m.files["model.onnx"] = sha256_file(broken / "model.onnx")
    (broken / "manifest.json").write_text(m.to_json())
    assert not holder.refresh()
    assert holder.get().version == first.name and "cannot load" in holder.last_error
