"""The benchmark model the peers were measured with (shared/bench/peers/train_export.py, same recipe).

LightGBM binary classifier on 200k synthetic rows x 40 float features, 300 trees, 63 leaves,
exported to ONNX with onnxmltools (zipmap off; input "input", outputs "label" and
"probabilities"), plus the held-out matrix every benchmark sends (bench_X.npy, 65536 x 40).
No lleaves compile: nothing here uses it.

    python -m bench.model --out DIR
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

FEATURES = 40


def train_export(out: Path, rows: int = 200_000, trees: int = 300, leaves: int = 63) -> None:
    import lightgbm as lgb
    import onnxmltools
    import onnxruntime as ort
    from onnxmltools.convert.common.data_types import FloatTensorType

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(42)
    X = rng.standard_normal((rows, FEATURES)).astype(np.float32)
    w = rng.standard_normal(FEATURES)
    logit = X @ w * 0.5 + np.sin(X[:, 0] * 2) + X[:, 1] * X[:, 2] - 0.3
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int32)
    t0 = time.perf_counter()
    booster = lgb.train({"objective": "binary", "num_leaves": leaves, "learning_rate": 0.05, "verbose": -1,
                         "num_threads": 2, "seed": 1}, lgb.Dataset(X, y), num_boost_round=trees)
    print(f"[model] trained {trees} trees x {leaves} leaves in {time.perf_counter() - t0:.0f}s", flush=True)
    booster.save_model(str(out / "model.txt"))
    Xb = np.random.default_rng(7).standard_normal((65536, FEATURES)).astype(np.float32)
    ref = booster.predict(Xb[:1024])
    onx = onnxmltools.convert_lightgbm(booster, initial_types=[("input", FloatTensorType([None, FEATURES]))],
                                       zipmap=False, target_opset=15)
    tmp = out / "model.onnx.tmp"
    tmp.write_bytes(onx.SerializeToString())
    sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    p1 = sess.run(["probabilities"], {"input": Xb[:1024]})[0][:, 1]
    err = float(np.abs(p1 - ref).max())
    print(f"[model] onnx vs lightgbm max |diff| = {err:.1e}", flush=True)
    if err > 1e-4:
        raise SystemExit("ONNX export does not match LightGBM")
    np.save(out / "bench_X.npy", Xb)
    tmp.replace(out / "model.onnx")  # last: its presence means the folder is complete


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    train_export(ap.parse_args().out)


if __name__ == "__main__":
    main()
