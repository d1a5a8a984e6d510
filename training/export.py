"""LightGBM -> ONNX (zipmap off) with a parity check, written into the model repository."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import onnxruntime as ort
from onnxmltools import convert_lightgbm
from onnxmltools.convert.common.data_types import FloatTensorType

from tenure.artifacts import Manifest, write_artifact
from tenure.errors import ArtifactError
from training.contrib import snap_onnx_thresholds
from training.lgbm import positive_proba

log = logging.getLogger(__name__)

INPUT_NAME = "features"
PROBA_OUTPUT = "probabilities"
PARITY_TOLERANCE = 1e-4
"""Max |ONNX - LightGBM| allowed on held-out rows. Both see the same float32 inputs; what is left
is float32 vs float64 accumulation of leaf values."""


def lightgbm_to_onnx(model: lgb.LGBMModel, n_features: int) -> bytes:
    """onnxmltools' conversion (zipmap off) with every split made exactly LightGBM's: the converter
    rounds double thresholds to the nearest float32, which sends inputs equal to a rounded-up
    threshold the wrong way (see training.contrib)."""
    onx = convert_lightgbm(
        model, initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))], zipmap=False
    )
    return snap_onnx_thresholds(onx.SerializeToString(), model)


def onnx_positive_proba(onnx_bytes: bytes, X: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    return sess.run([PROBA_OUTPUT], {INPUT_NAME: np.ascontiguousarray(X, dtype=np.float32)})[0][:, 1]


def parity(model: lgb.LGBMClassifier, onnx_bytes: bytes, X: np.ndarray) -> float:
    """Max abs difference between ONNX and LightGBM P(class 1) on the given rows."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    expected = positive_proba(model, X)
    got = onnx_positive_proba(onnx_bytes, X)
    return float(np.max(np.abs(expected - got))) if len(X) else 0.0


def export_binary(
    repo: Path,
    name: str,
    model: lgb.LGBMClassifier,
    feature_names: list[str],
    X_check: np.ndarray,
    *,
    metrics: dict[str, Any],
    training_window: dict[str, str],
    params: dict[str, Any] | None = None,
    data_fingerprint: str = "",
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Convert, check parity on X_check (held-out rows), write models/<name>/<version>/."""
    onnx_bytes = lightgbm_to_onnx(model, len(feature_names))
    diff = parity(model, onnx_bytes, X_check)
    if not diff <= PARITY_TOLERANCE:
        raise ArtifactError(f"{name}: ONNX differs from LightGBM by {diff:.2e} (> {PARITY_TOLERANCE})", model=name)
    metrics = {**metrics, "onnx_parity_max_abs_diff": diff, "onnx_parity_rows": int(len(X_check))}
    manifest = lightgbm_manifest(
        name, "lightgbm-binary", model, feature_names,
        [{"name": PROBA_OUTPUT, "dtype": "float32", "shape": [-1, 2], "use_column": 1}],
        metrics=metrics, training_window=training_window, params=params, data_fingerprint=data_fingerprint)
    files: dict[str, bytes | Path] = {"model.onnx": onnx_bytes, **(extra_files or {})}
    path = write_artifact(repo, manifest, files)
    log.info("exported %s -> %s (parity %.1e on %d rows)", name, path, diff, len(X_check))
    return path


def lightgbm_manifest(name: str, kind: str, model: lgb.LGBMModel, feature_names: list[str],
                      outputs: list[dict[str, Any]], *, metrics: dict[str, Any], training_window: dict[str, str],
                      params: dict[str, Any] | None = None, data_fingerprint: str = "") -> Manifest:
    """The manifest every exported LightGBM model gets: one float32 input `features` of the listed
    feature names, the given outputs, its LightGBM parameters and best iteration (+ params)."""
    return Manifest(
        name=name,
        kind=kind,
        features=list(feature_names),
        inputs=[{"name": INPUT_NAME, "dtype": "float32", "shape": [-1, len(feature_names)]}],
        outputs=outputs,
        training_window=training_window,
        metrics=metrics,
        params={"lightgbm": {k: v for k, v in model.get_params().items() if _jsonable(v)},
                "best_iteration": int(model.best_iteration_ or model.n_estimators), **(params or {})},
        data_fingerprint=data_fingerprint,
    )


def _jsonable(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


ORT_TO_OIP = {
    "tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(int64)": "INT64", "tensor(int32)": "INT32",
    "tensor(bool)": "BOOL", "tensor(string)": "BYTES", "tensor(float16)": "FP16", "tensor(int8)": "INT8",
    "tensor(uint8)": "UINT8", "tensor(int16)": "INT16", "tensor(uint16)": "UINT16", "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
}


def _tensor_specs(nodes: list[Any]) -> list[dict[str, Any]]:
    specs = []
    for node in nodes:
        if node.type not in ORT_TO_OIP:
            raise ArtifactError(f"tensor {node.name!r} has type {node.type}, which Tenure does not serve")
        shape = [d if isinstance(d, int) and d >= 0 else -1 for d in node.shape]
        specs.append({"name": node.name, "dtype": ORT_TO_OIP[node.type], "shape": shape})
    return specs


def import_onnx(repo: Path, name: str, onnx_path: Path, feature_names: list[str] | None = None,
                metrics: dict[str, Any] | None = None) -> Path:
    """Put an ONNX model trained elsewhere into the repository, its signature read from the graph."""
    onnx_bytes = Path(onnx_path).read_bytes()
    try:
        sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        raise ArtifactError(f"{onnx_path}: onnxruntime cannot load it ({err})", model=name) from err
    inputs, outputs = _tensor_specs(sess.get_inputs()), _tensor_specs(sess.get_outputs())
    width = inputs[0]["shape"][-1] if inputs[0]["shape"] else -1
    features = feature_names or ([f"f{i}" for i in range(width)] if len(inputs) == 1 and width > 0 else [])
    proba = next((o for o in outputs if o["name"] == PROBA_OUTPUT), None)
    if proba is not None:
        proba["use_column"] = 1
    manifest = Manifest(name=name, kind="onnx", features=features, inputs=inputs,
                        outputs=([proba] if proba else []) + [o for o in outputs if o is not proba],
                        metrics=metrics or {}, params={"imported_from": Path(onnx_path).name})
    return write_artifact(repo, manifest, {"model.onnx": onnx_bytes})
