"""Compile a LightGBM binary classifier to machine code (lleaves) for the version directory.

lleaves builds an object file for a generic x86-64 CPU (runs on any x86-64 host); GNU ld links it into
a shared library (model.forest.so, needing only libm), declared in the manifest's params["compiled"].
Services load it with ctypes (services.core.compiled) after a parity check against the ONNX graph; it
is code the services run, so the repository is trusted like their own code. Optional: without lleaves
(the [train] extra) or ld (binutils), or with TENURE_COMPILE_TREES=0, export writes the ONNX model only
and the services use onnxruntime.
"""
from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from services.core.compiled import FORMAT, CompiledForest
from tenure.errors import ArtifactError

log = logging.getLogger(__name__)

COMPILED_FILE = "model.forest.so"
LINK_FLAGS = ("-shared", "-z", "noexecstack", "-z", "now", "-z", "relro", "--as-needed", "-s")
"""ld flags: a shared library with a non-executable stack, symbols bound at load (a missing one fails the
load, not a call), read-only relocations, stripped (forest_root stays exported)."""
PARITY_TOLERANCE = 1e-5
"""Max |compiled - LightGBM| on the export's held-out rows (both float64: only summation order differs)."""


def enabled() -> bool:
    """Compiling is on unless TENURE_COMPILE_TREES=0, and possible on x86-64 Linux with lleaves installed."""
    if os.environ.get("TENURE_COMPILE_TREES", "1") == "0" or platform.machine() != "x86_64" \
            or platform.system() != "Linux":
        return False
    try:
        import lleaves  # noqa: F401
    except ImportError:
        return False
    return True


def compile_binary(model: lgb.LGBMClassifier, X_check: np.ndarray, *, horizon_exponent: float = 1.0,
                   positive_is_none: bool = False) -> tuple[bytes, dict[str, Any]] | None:
    """(shared library, manifest entry) for a binary classifier, or None (logged) when compiling is off,
    fails, or the result differs from LightGBM on X_check."""
    if not enabled():
        return None
    ld = shutil.which("ld")
    if ld is None:
        log.warning("no linker (ld, from binutils) on PATH: exporting the ONNX model without a compiled forest")
        return None
    started = time.perf_counter()
    n_features = int(model.n_features_in_)
    extra: dict[str, Any] = {}
    if horizon_exponent != 1.0:
        extra.update(horizon_exponent=horizon_exponent, positive_is_none=positive_is_none)
    try:
        with tempfile.TemporaryDirectory(prefix="tenure-compile-") as tmp:
            text = Path(tmp) / "model.txt"
            model.booster_.save_model(str(text), num_iteration=model.best_iteration_ or None)
            data, spec = link_forest(text, n_features, ld, Path(tmp), extra)
            loaded = CompiledForest(Path(tmp), spec, n_features)
            diff = _parity(model, loaded, X_check, horizon_exponent, positive_is_none)
    except Exception as err:  # lleaves / llvmlite / ld raise many types: the ONNX model alone is still served
        log.warning("compiling the forest failed, exporting ONNX only: %r", err)
        return None
    if not diff <= PARITY_TOLERANCE:
        log.warning("compiled forest differs from LightGBM by %.2e (> %g), exporting ONNX only", diff, PARITY_TOLERANCE)
        return None
    spec.update(parity_max_abs_diff=diff, compile_s=round(time.perf_counter() - started, 2))
    return data, spec


def link_forest(text: Path, n_features: int, ld: str, workdir: Path,
                extra: dict[str, Any] | None = None) -> tuple[bytes, dict[str, Any]]:
    """A LightGBM model file compiled (lleaves, generic x86-64) and linked (ld): (shared library, manifest
    entry without the parity figures); the library is also left in workdir as COMPILED_FILE. Raises on
    any failure."""
    import lleaves

    obj, lib = workdir / "model.forest.o", workdir / COMPILED_FILE
    forest = lleaves.Model(model_file=str(text))
    if forest.num_feature() != n_features or forest.num_model_per_iteration() != 1:
        raise ValueError(f"the LightGBM model takes {forest.num_feature()} features with "
                         f"{forest.num_model_per_iteration()} tree(s) per iteration, not {n_features} with 1")
    # generic x86-64: the code must run on whatever host serves it; lleaves emits PIC
    forest.compile(cache=str(obj), target_cpu="x86-64", target_cpu_features="", fcodemodel="large")
    linked = subprocess.run([ld, *LINK_FLAGS, "-o", str(lib), str(obj), "-lm"], capture_output=True,
                            text=True, timeout=120)
    if linked.returncode != 0:
        raise RuntimeError(f"ld failed ({linked.returncode}): {linked.stderr.strip()[:300]}")
    data = lib.read_bytes()
    spec: dict[str, Any] = {"file": COMPILED_FILE, "format": FORMAT, "arch": "x86_64", "cpu": "x86-64",
                            "n_features": n_features,
                            "compiler": f"lleaves {_version('lleaves')}; {_ld_version(ld)}",
                            "sha256": hashlib.sha256(data).hexdigest(), **(extra or {})}
    return data, spec


def _parity(model: lgb.LGBMClassifier, forest: CompiledForest, X: np.ndarray, exponent: float,
            positive_is_none: bool) -> float:
    from training.export import extended_positive_proba

    X = np.ascontiguousarray(X, dtype=np.float32)
    if not len(X):
        return 0.0
    expected = extended_positive_proba(model, X, exponent, positive_is_none)
    return float(np.max(np.abs(forest.predict(X).astype(np.float64) - expected)))


def _ld_version(ld: str) -> str:
    try:
        out = subprocess.run([ld, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "ld"
    return out.splitlines()[0].strip() if out else "ld"


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def compile_for_onnx(text: Path, session: Any, n_features: int) -> tuple[bytes, dict[str, Any]]:
    """`tenure import-onnx --lightgbm`: the LightGBM model file `text` compiled for an imported ONNX binary
    classifier (session: its onnxruntime session), accepted only if it gives the graph's P(class 1) (its
    "probabilities" output, column 1) on parity_rows within the serving check's tolerance. Raises
    ArtifactError saying why otherwise."""
    from services.core.compiled import parity_rows
    from services.core.runtime import FOREST_PARITY
    from training.export import PROBA_OUTPUT

    if platform.machine() != "x86_64" or platform.system() != "Linux":
        raise ArtifactError(f"--lightgbm compiles for x86-64 Linux only, this host is {platform.system()} "
                            f"{platform.machine()}")
    try:
        import lleaves  # noqa: F401
    except ImportError as err:
        raise ArtifactError("--lightgbm needs lleaves (pip install 'tenure[train]')") from err
    ld = shutil.which("ld")
    if ld is None:
        raise ArtifactError("--lightgbm needs the linker ld (binutils) on PATH")
    names = [o.name for o in session.get_outputs()]
    inputs = session.get_inputs()
    if PROBA_OUTPUT not in names or len(inputs) != 1:
        raise ArtifactError(f"--lightgbm needs an ONNX binary classifier with one input and a {PROBA_OUTPUT!r} "
                            f"output; this graph's outputs are {names}")
    if not Path(text).is_file():
        raise ArtifactError(f"--lightgbm {text}: no such file")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tenure-compile-") as tmp:
        try:
            data, spec = link_forest(Path(text), n_features, ld, Path(tmp))
            forest = CompiledForest(Path(tmp), spec, n_features)
        except Exception as err:  # lleaves / llvmlite / ld raise many types
            raise ArtifactError(f"--lightgbm {Path(text).name}: cannot compile it ({str(err)[:300]})") from err
        X = np.concatenate([parity_rows(n_features), parity_rows(n_features, 768, seed=1)])
        proba = session.run([PROBA_OUTPUT], {inputs[0].name: X})[0]
        if proba.ndim != 2 or proba.shape[1] != 2:
            raise ArtifactError(f"--lightgbm needs a binary classifier: {PROBA_OUTPUT!r} has shape {proba.shape[1:]} "
                                "per row, not (2,)")
        diff = float(np.max(np.abs(forest.predict(X) - proba[:, 1])))
    if not diff <= FOREST_PARITY:
        raise ArtifactError(f"--lightgbm {Path(text).name} does not give the ONNX model's answers: P(class 1) differs "
                            f"by up to {diff:.2e} on {len(X)} test rows (at most {FOREST_PARITY:g} allowed); is it the "
                            "same model?")
    spec.update(parity_max_abs_diff=diff, parity_against="onnxruntime", compile_s=round(time.perf_counter() - started, 2))
    return data, spec
