"""The compiled tree backend: exported with churn, chosen at load after a parity check, onnxruntime otherwise."""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from services.core import runtime
from services.core.runtime import OnnxModel
from tenure.artifacts import MANIFEST, sha256_file, versions
from tenure.errors import ConfigError
from tenure.settings import ServiceSettings
from tenure.store import FeatureSnapshot


@pytest.fixture
def backend() -> Iterator[None]:
    saved = runtime.TREE_BACKEND
    yield
    runtime.TREE_BACKEND = saved


def churn_dir(repo: Path) -> Path:
    return versions(repo, "churn")[0]


def test_churn_is_exported_compiled_and_gives_onnxruntimes_answers(trained_repo: Path, backend: None) -> None:
    pytest.importorskip("lleaves")
    vdir = churn_dir(trained_repo)
    spec = json.loads((vdir / MANIFEST).read_text())["params"]["compiled"]
    assert (vdir / spec["file"]).is_file() and spec["parity_max_abs_diff"] <= 1e-5
    runtime.TREE_BACKEND = "auto"
    model = OnnxModel.load_latest(trained_repo, "churn")
    assert model.backend == "compiled"
    X = FeatureSnapshot.load_latest(trained_repo).X[:, runtime.column_index(
        FeatureSnapshot.load_latest(trained_repo).feature_names, model.features, "churn")]
    X = np.ascontiguousarray(X, np.float32)
    want = model.session.run(["probabilities"], {"features": X})[0][:, 1]
    got = model.predict(X)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert model.predict(X[:0]).shape == (0,)

    runtime.TREE_BACKEND = "onnxruntime"
    assert OnnxModel.load_latest(trained_repo, "churn").backend == "onnxruntime"


@pytest.fixture(scope="module")
def exported_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small LightGBM classifier exported as churn with its compiled forest (seconds, not a shop)."""
    pytest.importorskip("lleaves")
    import lightgbm as lgb

    from training.export import export_binary

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 12)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] * X[:, 2] + rng.normal(size=2000) > 0).astype(int)
    clf = lgb.LGBMClassifier(n_estimators=40, num_leaves=7, verbose=-1, n_jobs=1).fit(X, y)
    repo = tmp_path_factory.mktemp("exported")
    export_binary(repo, "churn", clf, [f"f{i}" for i in range(12)], X[:500], metrics={}, training_window={},
                  compile_forest=True)
    return repo


def copy_churn(exported_repo: Path, tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    target = repo / "churn" / churn_dir(exported_repo).name
    shutil.copytree(churn_dir(exported_repo), target)
    return target


def rewrite(vdir: Path, edit_spec: dict[str, object] | None = None, forest: bytes | None = None) -> None:
    """Change the compiled forest or its manifest entry, the manifest's checksums kept valid (a
    version as a faulty exporter would write it)."""
    manifest = json.loads((vdir / MANIFEST).read_text())
    spec = manifest["params"]["compiled"]
    if forest is not None:
        (vdir / spec["file"]).write_bytes(forest)
        manifest["files"][spec["file"]] = sha256_file(vdir / spec["file"])
    spec.update(edit_spec or {})
    (vdir / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage, reason", [
    ({"forest": b"\x7fELF not really an object file"}, "not the one the exporter recorded"),
    ({"forest": b"garbage", "edit_spec": {"sha256": hashlib.sha256(b"garbage").hexdigest()}},
     "not an x86-64 ELF shared library"),
    ({"edit_spec": {"horizon_exponent": 3.0}}, "differs from onnxruntime"),
    ({"edit_spec": {"n_features": 3}}, "compiled for 3 features"),
    ({"edit_spec": {"format": "something-else"}}, "is not 'lleaves-shared-v1'"),
])
def test_a_broken_or_mismatching_forest_falls_back_to_onnxruntime(
        exported_repo: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, backend: None,
        damage: dict[str, object], reason: str) -> None:
    runtime.TREE_BACKEND = "auto"
    assert OnnxModel.load_latest(exported_repo, "churn").backend == "compiled"
    vdir = copy_churn(exported_repo, tmp_path)
    rewrite(vdir, **damage)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="services.core.runtime"):
        model = OnnxModel.load_latest(vdir.parent.parent, "churn")
    assert model.backend == "onnxruntime"
    X = np.zeros((3, len(model.features)), np.float32)
    np.testing.assert_array_equal(model.predict(X), model.session.run(["probabilities"], {"features": X})[0][:, 1])
    logged = [r.getMessage() for r in caplog.records if "compiled forest" in r.getMessage()]
    assert len(logged) == 1 and reason in logged[0] and "serving with onnxruntime" in logged[0], logged


def test_serving_a_compiled_forest_loads_no_compiler(exported_repo: Path) -> None:
    """The service loads the shared library with ctypes: llvmlite and lleaves stay out of the process."""
    code = ("import sys; from pathlib import Path; from services.core.runtime import OnnxModel; "
            f"m = OnnxModel.load_latest(Path({str(exported_repo)!r}), 'churn'); "
            "print(m.backend, sorted(n for n in sys.modules if n.startswith(('llvmlite', 'lleaves'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.split() == ["compiled", "[]"], out.stderr


def test_without_a_linker_export_writes_onnx_only(monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("lleaves")
    import lightgbm as lgb

    from training.compiled import compile_binary

    X = np.random.default_rng(1).normal(size=(200, 3)).astype(np.float32)
    clf = lgb.LGBMClassifier(n_estimators=2, num_leaves=3, verbose=-1, n_jobs=1).fit(X, X[:, 0] > 0)
    monkeypatch.setenv("PATH", "")
    with caplog.at_level(logging.WARNING, logger="training.compiled"):
        assert compile_binary(clf, X) is None
    assert any("no linker" in r.getMessage() for r in caplog.records)


def test_tree_backend_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENURE_TREE_BACKEND", "onnxruntime")
    assert ServiceSettings.from_env().tree_backend == "onnxruntime"
    monkeypatch.setenv("TENURE_TREE_BACKEND", "llvm")
    with pytest.raises(ConfigError, match="TENURE_TREE_BACKEND"):
        ServiceSettings.from_env()


@pytest.fixture(scope="module")
def lgbm_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small LightGBM binary classifier trained elsewhere: its ONNX graph and LightGBM text (model.*), and
    another model's text (other.txt) with the same features."""
    pytest.importorskip("lleaves")
    import lightgbm as lgb

    from training.export import lightgbm_to_onnx

    rng = np.random.default_rng(2)
    X = rng.normal(size=(2000, 12)).astype(np.float32)
    y = (X[:, 0] - X[:, 3] * X[:, 4] + rng.normal(size=2000) > 0).astype(int)
    d = tmp_path_factory.mktemp("lgbm")
    clf = lgb.LGBMClassifier(n_estimators=40, num_leaves=7, verbose=-1, n_jobs=1).fit(X, y)
    (d / "model.onnx").write_bytes(lightgbm_to_onnx(clf, 12))
    clf.booster_.save_model(str(d / "model.txt"))
    other = lgb.LGBMClassifier(n_estimators=40, num_leaves=7, verbose=-1, n_jobs=1).fit(X, X[:, 1] > 0)
    other.booster_.save_model(str(d / "other.txt"))
    return d


def import_cli(repo: Path, files: Path, lightgbm: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenure.cli", "import-onnx", "--models", str(repo), "--name", "clf",
                           "--onnx", str(files / "model.onnx"), "--lightgbm", str(files / lightgbm)],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])


@pytest.fixture(scope="module")
def imported_repo(lgbm_files: Path, trained_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("imported")
    shutil.copytree(trained_repo / "features", repo / "features")  # the snapshot every service needs
    out = import_cli(repo, lgbm_files, "model.txt")
    assert out.returncode == 0, out.stderr
    return repo


def test_import_onnx_lightgbm_compiles_only_the_same_model(imported_repo: Path, lgbm_files: Path,
                                                            tmp_path: Path) -> None:
    vdir = versions(imported_repo, "clf")[0]
    spec = json.loads((vdir / MANIFEST).read_text())["params"]["compiled"]
    assert (vdir / spec["file"]).is_file() and spec["parity_max_abs_diff"] <= runtime.FOREST_PARITY

    refused = import_cli(tmp_path / "repo", lgbm_files, "other.txt")
    assert refused.returncode != 0
    assert "other.txt does not give the ONNX model's answers" in refused.stderr, refused.stderr
    assert not (tmp_path / "repo" / "clf").exists() or not versions(tmp_path / "repo", "clf")


def test_model_infer_on_the_compiled_classifier_gives_onnxruntimes_outputs(
        imported_repo: Path, serve, backend: None) -> None:  # type: ignore[no-untyped-def]
    from tenure.artifacts import load_manifest
    from tenure.v1 import inference_pb2 as pb
    from tenure.v1 import inference_pb2_grpc

    runtime.TREE_BACKEND = "auto"
    vdir = versions(imported_repo, "clf")[0]
    model = OnnxModel(vdir, load_manifest(vdir))
    assert model.backend == "compiled" and model.classifier is not None  # ModelInfer runs the forest
    X = np.concatenate([runtime.parity_rows(12, 300, seed=5), np.random.default_rng(3).normal(size=(300, 12))])
    X = X.astype(np.float32)
    label, proba = model.session.run(None, {"features": X})
    stub = inference_pb2_grpc.GRPCInferenceServiceStub(serve("scoring", imported_repo))
    for rows in (slice(0, 1), slice(1, 17), slice(17, 600)):  # held GIL (<= INLINE_ROWS) and released
        x = X[rows]
        req = pb.ModelInferRequest(model_name="clf", inputs=[pb.ModelInferRequest.InferInputTensor(
            name="features", datatype="FP32", shape=list(x.shape))], raw_input_contents=[x.astype("<f4").tobytes()])
        resp = stub.ModelInfer(req)
        assert [(o.name, o.datatype, list(o.shape)) for o in resp.outputs] == [
            ("label", "INT64", [len(x)]), ("probabilities", "FP32", [len(x), 2])]
        np.testing.assert_array_equal(np.frombuffer(resp.raw_output_contents[0], "<i8"), label[rows])
        np.testing.assert_allclose(np.frombuffer(resp.raw_output_contents[1], "<f4").reshape(-1, 2), proba[rows],
                                   atol=1e-6, rtol=0)
