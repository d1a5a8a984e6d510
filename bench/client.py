"""gRPC client side of the harness, run as its own process (pinned to the client core).

    python -m bench.client wait    --target 127.0.0.1:P --kind health|kserve [--models a,b] --timeout-s 60
    python -m bench.client check   --target ... --path /pkg.Svc/Method --frame F --kind modelinfer|score|recommend
    python -m bench.client pick    --target ... --ids-file F [--k 10 --min-candidates 200]
    python -m bench.client stream  --target ... --repo DIR --rows 1000000 --chunk 10000
    python -m bench.client load    --target ... --path ... --frame F --conc N --conns C --dur S --warm S

Every subcommand prints one JSON object on stdout. Requests go out as pre-serialised bytes
(no protobuf work per request); responses are decoded only where a check needs them.
Open Inference Protocol messages come from the peers' kserve_v2.proto compiled into
$TENURE_BENCH_CACHE/gen (KSERVE_GEN_DIR), the same wire format every server here speaks.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

MODELINFER = "/inference.GRPCInferenceService/ModelInfer"
SAMPLE = 16  # StreamScore: rows of every chunk compared with the churn model in-process
OPTS = [("grpc.max_send_message_length", 256 << 20), ("grpc.max_receive_message_length", 256 << 20)]


def kserve_pb() -> Any:
    sys.path.insert(0, os.environ.get("KSERVE_GEN_DIR", "/tmp/tenure-bench/gen"))
    import kserve_v2_pb2

    return kserve_v2_pb2


def emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def read_frame(path: str) -> bytes:
    data = Path(path).read_bytes()
    n = int.from_bytes(data[1:5], "big")
    assert len(data) == 5 + n, f"{path}: not one gRPC frame"
    return data[5:]


# ------------------------------------------------------------------ wait
def cmd_wait(a: argparse.Namespace) -> int:
    import grpc

    deadline = time.monotonic() + a.timeout_s
    last = ""
    if a.kind == "call":  # servers without health or ModelReady (the yardsticks): one OK answer
        body = read_frame(a.frame)
        while time.monotonic() < deadline:
            resp, code, details, _ = call_raw(a.target, a.path, body, timeout=2)
            if resp is not None:
                emit({"ok": True, "waited_s": round(a.timeout_s - (deadline - time.monotonic()), 1)})
                return 0
            last = f"{code}: {details}"
            time.sleep(0.3)
        emit({"ok": False, "reason": f"not ready after {a.timeout_s:.0f}s ({last})"})
        return 1
    with grpc.insecure_channel(a.target) as ch:
        if a.kind == "health":
            from grpc_health.v1 import health_pb2, health_pb2_grpc

            stub = health_pb2_grpc.HealthStub(ch)
            while time.monotonic() < deadline:
                try:
                    st = stub.Check(health_pb2.HealthCheckRequest(service=a.service), timeout=2).status
                    if st == health_pb2.HealthCheckResponse.SERVING:
                        emit({"ok": True, "waited_s": round(a.timeout_s - (deadline - time.monotonic()), 1)})
                        return 0
                    last = health_pb2.HealthCheckResponse.ServingStatus.Name(st)
                except grpc.RpcError as err:
                    last = f"{err.code().name}: {err.details()}"
                time.sleep(0.3)
        else:
            pb = kserve_pb()
            ready = ch.unary_unary("/inference.GRPCInferenceService/ModelReady",
                                   request_serializer=pb.ModelReadyRequest.SerializeToString,
                                   response_deserializer=pb.ModelReadyResponse.FromString)
            todo = [m for m in a.models.split(",") if m]
            while todo and time.monotonic() < deadline:
                try:
                    if ready(pb.ModelReadyRequest(name=todo[0]), timeout=2).ready:
                        todo.pop(0)
                        continue
                    last = f"{todo[0]} not ready"
                except grpc.RpcError as err:
                    last = f"{err.code().name}: {err.details()}"
                time.sleep(0.3)
            if not todo:
                emit({"ok": True, "waited_s": round(a.timeout_s - (deadline - time.monotonic()), 1)})
                return 0
    emit({"ok": False, "reason": f"not ready after {a.timeout_s:.0f}s ({last})"})
    return 1


# ------------------------------------------------------------------ check
def decode(kind: str, resp: bytes) -> dict[str, Any]:
    if kind == "modelinfer":
        pb = kserve_pb()
        r = pb.ModelInferResponse.FromString(resp)
        outs = [{"name": o.name, "datatype": o.datatype, "shape": list(o.shape)} for o in r.outputs]
        i = next((k for k, o in enumerate(r.outputs) if o.name in ("probabilities", "prob")), 0)
        o = r.outputs[i]
        dt = {"FP32": "<f4", "FP64": "<f8"}.get(o.datatype, "<f4")
        if len(r.raw_output_contents) > i:
            arr = np.frombuffer(r.raw_output_contents[i], dtype=dt)
        else:
            arr = np.asarray(o.contents.fp32_contents or o.contents.fp64_contents, dtype=np.float64)
        arr = arr.reshape([int(s) for s in o.shape]) if o.shape else arr
        p1 = arr[:, -1] if arr.ndim == 2 else arr.ravel()  # class-1 column of [n,2], or the [n,1] column
        return {"outputs": outs, "prob1": [float(v) for v in p1[:1024]]}
    if kind == "score":
        from tenure.v1 import scoring_pb2

        s = scoring_pb2.ScoreResponse.FromString(resp)
        res = []
        for r in s.results:
            if r.HasField("scores"):
                res.append({"id": r.customer_id, "churn": r.scores.churn_probability,
                            "lookalike": r.scores.lookalike_score})
            else:
                res.append({"id": r.customer_id, "error": f"{r.error.code} {r.error.message}"})
        return {"results": res}
    if kind == "predict":
        from tenure.v1 import scoring_pb2

        pr = scoring_pb2.PredictResponse.FromString(resp)
        res = []
        for r in pr.results:
            if r.HasField("predictions"):
                p = r.predictions
                res.append({"id": r.customer_id, "churn": p.churn.probability, "reasons": len(p.churn.reasons),
                            "clv_predicted": p.clv.predicted, "next_purchase": p.purchase.next_purchase_date,
                            "channels": len(p.channels)})
            else:
                res.append({"id": r.customer_id, "error": f"{r.error.code} {r.error.message}"})
        return {"results": res}
    if kind == "recommend":
        from tenure.v1 import recommendation_pb2

        rr = recommendation_pb2.RecommendResponse.FromString(resp)
        return {"items": len(rr.items), "candidates_scored": rr.candidates_scored,
                "top": [(i.product.product_id, round(i.score, 4)) for i in rr.items[:3]],
                "ranked": [[i.product.product_id, float(i.score)] for i in rr.items]}
    return {}


def call_raw(target: str, path: str, body: bytes, timeout: float = 30) -> tuple[bytes | None, str, str, float]:
    import grpc

    with grpc.insecure_channel(target, options=OPTS) as ch:
        call = ch.unary_unary(path)
        t0 = time.perf_counter()
        try:
            resp, c = call.with_call(body, timeout=timeout)
            return resp, c.code().name, "", time.perf_counter() - t0
        except grpc.RpcError as err:
            return None, err.code().name, str(err.details())[:500], time.perf_counter() - t0


def cmd_check(a: argparse.Namespace) -> int:
    body = read_frame(a.frame)
    resp, code, details, secs = call_raw(a.target, a.path, body)
    out: dict[str, Any] = {"ok": resp is not None, "code": code, "details": details, "ms": round(secs * 1e3, 2)}
    if resp is not None:
        # the DATA bytes h2load will see per reply: 5-byte prefix + message
        out["resp_bytes"] = len(resp) + 5
        try:
            out.update(decode(a.kind, resp))
        except Exception as err:  # noqa: BLE001  (report, don't crash: the caller decides)
            out["ok"] = False
            out["details"] = f"response does not decode: {err!r}"[:500]
    emit(out)
    return 0


def cmd_pick(a: argparse.Namespace) -> int:
    """First customer whose Recommend(k) scores at least min_candidates candidates."""
    from tenure.v1 import recommendation_pb2

    ids = Path(a.ids_file).read_text().split()
    best: dict[str, Any] = {"ok": False, "candidates_scored": -1}
    for cid in ids[: a.max_tries]:
        body = recommendation_pb2.RecommendRequest(customer_id=cid, k=a.k).SerializeToString()
        resp, code, details, _ = call_raw(a.target, "/tenure.v1.RecommendationService/Recommend", body)
        if resp is None:
            best = {"ok": False, "code": code, "details": details, "customer_id": cid}
            if code in ("UNIMPLEMENTED", "UNAVAILABLE"):
                break
            continue
        n = recommendation_pb2.RecommendResponse.FromString(resp).candidates_scored
        if n > best.get("candidates_scored", -1):
            best = {"ok": n >= a.min_candidates, "customer_id": cid, "candidates_scored": n}
        if n >= a.min_candidates:
            break
    emit(best)
    return 0


# ------------------------------------------------------------------ stream
def cmd_stream(a: argparse.Namespace) -> int:
    import grpc
    import onnxruntime as ort

    from tenure.store import FeatureSnapshot
    from tenure.v1 import common_pb2, scoring_pb2

    snap = FeatureSnapshot.load_latest(Path(a.repo))
    X = np.ascontiguousarray(snap.X, dtype="<f4")
    ids = np.asarray(snap.customer_ids).astype(str)
    cols = X.shape[1]
    n_chunks = -(-a.rows // a.chunk)
    t_build = time.perf_counter()
    chunks: list[bytes] = []
    for k in range(n_chunks):
        rows = min(a.chunk, a.rows - k * a.chunk)
        idx = np.arange(k * a.chunk, k * a.chunk + rows) % len(X)
        chunks.append(scoring_pb2.ScoreChunk(
            chunk_id=k, customer_ids=ids[idx].tolist(),
            features=common_pb2.FeatureMatrix(rows=rows, cols=cols, float32_le=X[idx].tobytes()),
            scores=[s for s in a.scores.split(",") if s],
        ).SerializeToString())
    build_s = time.perf_counter() - t_build

    # reference: the churn model in-process on chunk 0 and on SAMPLE rows of every chunk
    ref = None
    sample_ref: np.ndarray | None = None
    sample_pos = np.unique(np.linspace(0, a.chunk - 1, SAMPLE).astype(np.int64))
    if a.churn_onnx:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(a.churn_onnx, so, providers=["CPUExecutionProvider"])
        wanted = json.loads((Path(a.churn_onnx).parent / "manifest.json").read_text())["features"]
        cols_idx = [snap.feature_names.index(f) for f in wanted]
        x0 = np.ascontiguousarray(X[np.arange(min(a.chunk, a.rows)) % len(X)][:, cols_idx])
        ref = sess.run(["probabilities"], {sess.get_inputs()[0].name: x0})[0][:, 1]
        rows_s = (np.arange(n_chunks)[:, None] * a.chunk + sample_pos[None, :]) % len(X)
        xs = np.ascontiguousarray(X[rows_s.ravel()][:, cols_idx])
        sample_ref = sess.run(["probabilities"], {sess.get_inputs()[0].name: xs})[0][:, 1].reshape(rows_s.shape)

    result: dict[str, Any] = {"ok": False, "rows_sent": a.rows, "chunks": n_chunks, "chunk_rows": a.chunk,
                              "cols": cols, "build_s": round(build_s, 2),
                              "bytes_per_chunk": len(chunks[0])}

    async def run() -> None:
        async with grpc.aio.insecure_channel(a.target, options=OPTS) as ch:
            call = ch.stream_stream("/tenure.v1.ScoringService/StreamScore")

            async def gen():  # type: ignore[no-untyped-def]
                for c in chunks:
                    yield c

            rows_back = failures = 0
            order_ok = True
            max_diff = None
            bad_counts: list[int] = []
            sample_diff = 0.0
            cpu0, t0 = time.process_time(), time.perf_counter()
            first_ms = None
            stream = call(gen(), timeout=a.timeout_s)
            k = 0
            async for raw in stream:
                if first_ms is None:
                    first_ms = (time.perf_counter() - t0) * 1e3
                r = scoring_pb2.ScoreChunkResult.FromString(raw)
                order_ok &= r.chunk_id == k
                got = np.frombuffer(r.churn_probability, dtype="<f4")
                rows_back += len(got)
                failures += len(r.failures)
                if k == 0 and ref is not None:
                    max_diff = float(np.nanmax(np.abs(got.astype(np.float64) - ref))) if len(got) == len(ref) else None
                want_n = min(a.chunk, a.rows - r.chunk_id * a.chunk)
                if len(got) != want_n:
                    bad_counts.append(int(r.chunk_id))
                elif sample_ref is not None and r.chunk_id < n_chunks:
                    pos = sample_pos[sample_pos < want_n]
                    d = np.abs(got[pos].astype(np.float64) - sample_ref[r.chunk_id, :len(pos)])
                    sample_diff = max(sample_diff, float(np.nanmax(d)) if len(d) else 0.0)
                    if np.isnan(d).any():
                        sample_diff = float("inf")
                k += 1
            secs = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            result.update(ok=rows_back == a.rows and failures == 0 and order_ok and not bad_counts and k == n_chunks,
                          chunks_back=k, chunks_wrong_rows=bad_counts[:10], n_chunks_wrong_rows=len(bad_counts),
                          sampled_rows_per_chunk=int(len(sample_pos)) if sample_ref is not None else 0,
                          max_abs_diff_vs_inproc_samples=sample_diff if sample_ref is not None else None,
                          rows_back=rows_back,
                          failures=failures, in_order=order_ok, secs=round(secs, 3), rows_s=rows_back / secs,
                          first_result_ms=first_ms, client_cpu_frac=round(cpu / secs, 3),
                          max_abs_diff_vs_inproc_chunk0=max_diff)

    try:
        asyncio.run(asyncio.wait_for(run(), timeout=a.timeout_s + 10))
    except Exception as err:  # noqa: BLE001
        result["error"] = f"{type(err).__name__}: {getattr(err, 'details', lambda: '')() or err}"[:600]
    emit(result)
    return 0


# ------------------------------------------------------------------ load (fallback without h2load)
def cmd_load(a: argparse.Namespace) -> int:
    import grpc

    body = read_frame(a.frame)

    async def run() -> dict[str, Any]:
        chans = [grpc.aio.insecure_channel(a.target, options=[*OPTS, ("grpc.use_local_subchannel_pool", 1)])
                 for _ in range(a.conns)]
        calls = [c.unary_unary(a.path) for c in chans]
        lat: list[int] = []
        errors = [0]
        state = {"measure": False, "stop": False}

        async def worker(w: int) -> None:
            call = calls[w % len(calls)]
            while not state["stop"]:
                t0 = time.perf_counter_ns()
                try:
                    await call(body, timeout=30)
                except grpc.RpcError:
                    if state["measure"]:
                        errors[0] += 1
                    continue
                if state["measure"]:
                    lat.append(time.perf_counter_ns() - t0)

        tasks = [asyncio.create_task(worker(w)) for w in range(a.conc)]
        await asyncio.sleep(a.warm)
        state["measure"] = True
        t0 = time.perf_counter()
        await asyncio.sleep(a.dur)
        n = len(lat)
        secs = time.perf_counter() - t0
        state["stop"] = True
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 40)
        for c in chans:
            await c.close()
        ms = np.array(lat[:n], np.float64) / 1e6 if n else np.array([np.nan])
        return {"client": "python-grpc.aio", "conc": a.conc, "conns": a.conns, "requests": n, "errors": errors[0],
                "secs": round(secs, 3), "req_s": n / secs, "p50_ms": float(np.percentile(ms, 50)),
                "p99_ms": float(np.percentile(ms, 99)), "p999_ms": float(np.percentile(ms, 99.9))}

    emit(asyncio.run(run()))
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("wait")
    p.add_argument("--target", required=True)
    p.add_argument("--kind", choices=["health", "kserve", "call"], default="health")
    p.add_argument("--frame", default="", help="kind call: a request frame that must answer OK")
    p.add_argument("--path", default=MODELINFER)
    p.add_argument("--service", default="")
    p.add_argument("--models", default="")
    p.add_argument("--timeout-s", type=float, default=60)
    p.set_defaults(func=cmd_wait)
    p = sub.add_parser("check")
    p.add_argument("--target", required=True)
    p.add_argument("--path", default=MODELINFER)
    p.add_argument("--frame", required=True)
    p.add_argument("--kind", choices=["modelinfer", "score", "predict", "recommend", "raw"], default="modelinfer")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("pick")
    p.add_argument("--target", required=True)
    p.add_argument("--ids-file", required=True)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--min-candidates", type=int, default=200)
    p.add_argument("--max-tries", type=int, default=100)
    p.set_defaults(func=cmd_pick)
    p = sub.add_parser("stream")
    p.add_argument("--target", required=True)
    p.add_argument("--repo", required=True)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--chunk", type=int, default=10_000)
    p.add_argument("--churn-onnx", default="", help="churn model.onnx (its manifest.json beside it) for a check")
    p.add_argument("--scores", default="", help="comma-separated scores to ask for (ScoreChunk.scores); empty = all")
    p.add_argument("--timeout-s", type=float, default=300)
    p.set_defaults(func=cmd_stream)
    p = sub.add_parser("load")
    p.add_argument("--target", required=True)
    p.add_argument("--path", default=MODELINFER)
    p.add_argument("--frame", required=True)
    p.add_argument("--conc", type=int, default=1)
    p.add_argument("--conns", type=int, default=1)
    p.add_argument("--dur", type=float, default=5)
    p.add_argument("--warm", type=float, default=1)
    p.set_defaults(func=cmd_load)
    a = ap.parse_args()
    if not a.target.startswith("127.0.0.1:"):
        sys.exit("loopback targets only")
    raise SystemExit(a.func(a))


if __name__ == "__main__":
    main()
