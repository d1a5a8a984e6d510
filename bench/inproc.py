"""The limit: onnxruntime called in-process on the same model and rows, no RPC at all.

    python -m bench.inproc bench --onnx model.onnx --X bench_X.npy --threads 1 --batches 1,1024 --secs 2
    python -m bench.inproc churn --repo DIR --rows 1000000 --chunk 10000 --secs 3

The harness runs the 1-thread cases pinned to one core (taskset) and the 2-thread cases on
both. Each (threads, batch) case calls session.run on the same pre-built input for --secs
(at least 5 calls) and reports rows/s = batch / mean call time and per-call latency
percentiles. `churn` scores the StreamScore rows (the snapshot's X, chunk k = rows
k*chunk.. wrapping over the customers, as bench.client stream sends them) with the churn model
alone (the target's reference) and with churn + lookalike (what Score/StreamScore compute).
Prints one JSON object per case.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np


def session(path: str, threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def timed(fn: Callable[[], Any], secs: float, min_calls: int = 5) -> np.ndarray:
    for _ in range(3):
        fn()
    lat: list[int] = []
    end = time.perf_counter() + secs
    while len(lat) < min_calls or time.perf_counter() < end:
        t0 = time.perf_counter_ns()
        fn()
        lat.append(time.perf_counter_ns() - t0)
    return np.array(lat, np.float64) / 1e3  # us


def stats(lat_us: np.ndarray, rows_per_call: int) -> dict[str, Any]:
    return {"calls": len(lat_us), "rows_s": rows_per_call / (lat_us.mean() / 1e6),
            "calls_s": 1e6 / lat_us.mean(), "p50_us": float(np.percentile(lat_us, 50)),
            "p99_us": float(np.percentile(lat_us, 99)), "p999_us": float(np.percentile(lat_us, 99.9))}


def cmd_bench(a: argparse.Namespace) -> None:
    X = np.load(a.X)
    sess = session(a.onnx, a.threads)
    if a.ref_out:
        np.save(a.ref_out, sess.run(["probabilities"], {"input": X[:1024]})[0][:, 1])
    for b in [int(v) for v in a.batches.split(",")]:
        x = np.ascontiguousarray(X[:b])
        def call(x: np.ndarray = x) -> Any:
            return sess.run(["probabilities"], {"input": x})

        lat = timed(call, a.secs)
        print(json.dumps({"case": "bench", "threads": a.threads, "batch": b, **stats(lat, b)}), flush=True)


def cmd_churn(a: argparse.Namespace) -> None:
    from tenure.artifacts import latest_valid
    from tenure.store import FeatureSnapshot

    repo = Path(a.repo)
    snap = FeatureSnapshot.load_latest(repo)
    X = np.ascontiguousarray(snap.X, dtype=np.float32)
    n_chunks = -(-a.rows // a.chunk)
    models = []
    for name in ("churn", "lookalike"):
        vdir, man = latest_valid(repo, name)
        cols = np.array([snap.feature_names.index(f) for f in man.features])
        sess = session(str(Path(vdir) / "model.onnx"), a.threads)
        models.append((name, sess, sess.get_inputs()[0].name, cols, str(vdir)))

    def chunk(k: int) -> np.ndarray:
        return X[np.arange(k * a.chunk, (k + 1) * a.chunk) % len(X)]

    # the service receives a chunk, picks each model's columns and runs it: same here
    for label, use in (("churn", models[:1]), ("churn+lookalike", models)):
        def step(use: list[Any] = use, k: list[int] = [0]) -> None:  # noqa: B006  (k: call counter)
            x = chunk(k[0] % n_chunks)
            k[0] += 1
            for _, sess, inp, cols, _ in use:
                sess.run(["probabilities"], {inp: np.ascontiguousarray(x[:, cols])})

        lat = timed(step, a.secs, min_calls=3)
        print(json.dumps({"case": label, "threads": a.threads, "batch": a.chunk,
                          "models": [m[4] for m in use], **stats(lat, a.chunk)}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("bench")
    p.add_argument("--onnx", required=True)
    p.add_argument("--X", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", default="1,1024")
    p.add_argument("--secs", type=float, default=2)
    p.add_argument("--ref-out", default="")
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("churn")
    p.add_argument("--repo", required=True)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--chunk", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--secs", type=float, default=3)
    p.set_defaults(func=cmd_churn)
    a = ap.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
