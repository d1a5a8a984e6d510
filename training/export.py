"""LightGBM -> ONNX (zipmap off) with a parity check, written into the model repository."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnxmltools import convert_lightgbm
from onnxmltools.convert.common.data_types import FloatTensorType

from tenure.artifacts import ORT_TO_OIP, Manifest, write_artifact
from tenure.errors import ArtifactError
from training.compiled import compile_binary
from training.contrib import snap_onnx_thresholds
from training.evaluation import evaluation_file
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


def extend_horizon_graph(onnx_bytes: bytes, exponent: float, positive_is_none: bool) -> bytes:
    """Append to a binary model's graph the survival power of training.windows: P(no purchase within
    the asked horizon) = P(no purchase within the label window) ** exponent. `positive_is_none`: class
    1 is "no purchase" (churn) rather than "purchase". The output keeps its name and [N, 2] layout."""
    onx = onnx.load_from_string(onnx_bytes)
    graph = onx.graph
    raw = f"{PROBA_OUTPUT}_label_window"
    for node in graph.node:
        node.output[:] = [raw if o == PROBA_OUTPUT else o for o in node.output]
    none_col = 1 if positive_is_none else 0
    graph.initializer.extend([
        numpy_helper.from_array(np.array([none_col], dtype=np.int64), "horizon_none_column"),
        numpy_helper.from_array(np.array(exponent, dtype=np.float32), "horizon_exponent"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "horizon_one"),
    ])
    graph.node.extend([
        helper.make_node("Gather", [raw, "horizon_none_column"], ["horizon_p_none_label"], axis=1,
                         name="horizon_none_in_label_window"),
        helper.make_node("Pow", ["horizon_p_none_label", "horizon_exponent"], ["horizon_p_none"],
                         name="horizon_extend"),
        helper.make_node("Sub", ["horizon_one", "horizon_p_none"], ["horizon_p_some"], name="horizon_complement"),
        helper.make_node("Concat", ["horizon_p_some", "horizon_p_none"] if positive_is_none
                         else ["horizon_p_none", "horizon_p_some"], [PROBA_OUTPUT], axis=1, name="horizon_probabilities"),
    ])
    onnx.checker.check_model(onx)
    return onx.SerializeToString()


def extended_positive_proba(model: lgb.LGBMClassifier, X: np.ndarray, exponent: float,
                            positive_is_none: bool) -> np.ndarray:
    """What extend_horizon_graph computes, from LightGBM (float64)."""
    p = positive_proba(model, X)
    if exponent == 1.0:
        return p
    none = np.power(p if positive_is_none else 1.0 - p, exponent)
    return none if positive_is_none else 1.0 - none


def onnx_positive_proba(onnx_bytes: bytes, X: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    return sess.run([PROBA_OUTPUT], {INPUT_NAME: np.ascontiguousarray(X, dtype=np.float32)})[0][:, 1]


def parity(model: lgb.LGBMClassifier, onnx_bytes: bytes, X: np.ndarray, exponent: float = 1.0,
           positive_is_none: bool = False) -> float:
    """Max abs difference between ONNX and LightGBM P(class 1) on the given rows."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    expected = extended_positive_proba(model, X, exponent, positive_is_none)
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
    horizon_exponent: float = 1.0,
    positive_is_none: bool = False,
    evaluation: dict[str, Any] | None = None,
    compile_forest: bool = False,
) -> Path:
    """Convert, check parity on X_check (held-out rows), write models/<name>/<version>/ with
    evaluation.json (the given holdout curves + feature importance, training.evaluation).

    horizon_exponent != 1: the model was trained on a label window shorter than the horizon it
    answers; the graph extends it (extend_horizon_graph) and parity checks the extended output.

    compile_forest: also write the forest compiled to machine code (training.compiled), when possible."""
    onnx_bytes = lightgbm_to_onnx(model, len(feature_names))
    if horizon_exponent != 1.0:
        onnx_bytes = extend_horizon_graph(onnx_bytes, horizon_exponent, positive_is_none)
    diff = parity(model, onnx_bytes, X_check, horizon_exponent, positive_is_none)
    if not diff <= PARITY_TOLERANCE:
        raise ArtifactError(f"{name}: ONNX differs from LightGBM by {diff:.2e} (> {PARITY_TOLERANCE})", model=name)
    metrics = {**metrics, "onnx_parity_max_abs_diff": diff, "onnx_parity_rows": int(len(X_check))}
    manifest = lightgbm_manifest(
        name, "lightgbm-binary", model, feature_names,
        [{"name": PROBA_OUTPUT, "dtype": "float32", "shape": [-1, 2], "use_column": 1}],
        metrics=metrics, training_window=training_window,
        params={**(params or {}), **({"horizon_exponent": horizon_exponent} if horizon_exponent != 1.0 else {})},
        data_fingerprint=data_fingerprint)
    files: dict[str, bytes | Path] = {"model.onnx": onnx_bytes, **evaluation_file(model, feature_names, evaluation),
                                      **(extra_files or {})}
    compiled = compile_binary(model, X_check, horizon_exponent=horizon_exponent,
                              positive_is_none=positive_is_none) if compile_forest else None
    if compiled is not None:
        files[compiled[1]["file"]] = compiled[0]
        manifest.params["compiled"] = compiled[1]
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


def _tensor_specs(nodes: list[Any]) -> list[dict[str, Any]]:
    specs = []
    for node in nodes:
        if node.type not in ORT_TO_OIP:
            raise ArtifactError(f"tensor {node.name!r} has type {node.type}, which Tenure does not serve")
        shape = [d if isinstance(d, int) and d >= 0 else -1 for d in node.shape]
        specs.append({"name": node.name, "dtype": ORT_TO_OIP[node.type], "shape": shape})
    return specs


def import_onnx(repo: Path, name: str, onnx_path: Path, feature_names: list[str] | None = None,
                metrics: dict[str, Any] | None = None, lightgbm: Path | None = None) -> Path:
    """Put an ONNX model trained elsewhere into the repository, its signature read from the graph.

    lightgbm: the same model's LightGBM text file, compiled into the version (training.compiled) once it
    gives the graph's answers; ArtifactError (nothing written) when it cannot be compiled or differs."""
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
    files: dict[str, bytes | Path] = {"model.onnx": onnx_bytes}
    if lightgbm is not None:
        from training.compiled import compile_for_onnx

        data, spec = compile_for_onnx(Path(lightgbm), sess, len(features))
        files[spec["file"]] = data
        manifest.params["compiled"] = spec
    return write_artifact(repo, manifest, files)
