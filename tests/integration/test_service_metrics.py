"""Metrics, the access log and the dashboard, through real servers and a real scrape over HTTP."""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import grpc
import numpy as np
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from services.core import metrics
from services.core.interceptor import ACCESS
from services.core.server import JsonFormatter
from services.segmentation.changes import LIFECYCLE, RFM, SegmentLog
from tenure.artifacts import MANIFEST, latest_valid, load_manifest, sha256_file, write_artifact
from tenure.settings import ServiceSettings
from tenure.store import FeatureSnapshot
from tenure.v1 import inference_pb2 as ipb
from tenure.v1 import inference_pb2_grpc, recommendation_pb2_grpc
from tenure.v1 import recommendation_pb2 as rpb

OIP = "inference.GRPCInferenceService"
DASHBOARD = Path(__file__).resolve().parents[2] / "docker" / "grafana" / "tenure-dashboard.json"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as res:
        text = res.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def infer_request(model: str, X: np.ndarray) -> ipb.ModelInferRequest:
    tensor = ipb.ModelInferRequest.InferInputTensor(name="features", datatype="FP32", shape=list(X.shape))
    return ipb.ModelInferRequest(model_name=model, inputs=[tensor], raw_input_contents=[X.astype("<f4").tobytes()])


@pytest.fixture(scope="module")
def logged_server(trained_repo: Path, start_server: Callable[..., Any]) -> Any:
    """A scoring server that logs every call (TENURE_ACCESS_LOG=all; the default logs the failed ones)."""
    from services.scoring.__main__ import make_service

    return start_server(make_service, trained_repo, access_log="all")


@pytest.fixture(scope="module")
def metrics_port(logged_server: Any) -> int:
    """The in-process servers' metrics endpoint (one per process, like a real service process)."""
    return int(logged_server.service.serve_metrics(0))


def test_calls_are_counted_timed_logged_and_rows_scored(logged_server: Any, metrics_port: int, channel_to: Any,
                                                        snapshot: FeatureSnapshot,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tenure.access")
    stub = inference_pb2_grpc.GRPCInferenceServiceStub(channel_to(logged_server))
    X = snapshot.X[:3]
    version = stub.ModelMetadata(ipb.ModelMetadataRequest(name="churn"), timeout=10).versions[0]
    before = scrape(metrics_port)
    ok, failed = 5, 2
    for _ in range(ok):
        assert stub.ModelInfer(infer_request("churn", X), timeout=10).model_version == version
    for _ in range(failed):
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(infer_request("no-such-model", X), timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # The request id: the client's is kept and echoed in the trailers; without one, the server makes one.
    _, call = stub.ModelInfer.with_call(infer_request("churn", X), metadata=(("x-request-id", "req-42"),), timeout=10)
    assert ("x-request-id", "req-42") in tuple(call.trailing_metadata())
    _, call = stub.ModelInfer.with_call(infer_request("churn", X), timeout=10)
    generated = dict(call.trailing_metadata())["x-request-id"]
    ok += 2
    after = scrape(metrics_port)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("tenure_requests_total", service=OIP, method="ModelInfer", code="OK") == ok
    assert delta("tenure_requests_total", service=OIP, method="ModelInfer", code="NOT_FOUND") == failed
    assert delta("tenure_request_duration_seconds_count", service=OIP, method="ModelInfer") == ok + failed
    assert delta("tenure_request_duration_seconds_bucket", service=OIP, method="ModelInfer", le="+Inf") == ok + failed
    assert delta("tenure_request_duration_seconds_sum", service=OIP, method="ModelInfer") > 0
    assert value(after, "tenure_requests_in_flight", service=OIP, method="ModelInfer") == 0
    assert delta("tenure_rows_scored_total", model="churn", version=version) == ok * len(X)
    assert delta("tenure_batch_rows_count", model="churn") == ok  # one run per call here (c=1)
    assert delta("tenure_batch_rows_sum", model="churn") == ok * len(X)
    assert value(after, "tenure_model_info", model="churn", version=version) == 1
    assert abs(value(after, "tenure_model_loaded_timestamp_seconds", model="churn", version=version)
               - time.time()) < 24 * 3600
    cutoff = snapshot.cutoff.timestamp()
    assert cutoff in [v for (name, _), v in after.items() if name == "tenure_feature_snapshot_timestamp_seconds"]

    assert ACCESS.flush(10)
    lines = [r for r in caplog.records if r.name == "tenure.access"
             and getattr(r, "fields", {}).get("method") == f"/{OIP}/ModelInfer"]
    by_id = {r.fields["request_id"]: r.fields for r in lines}  # type: ignore[attr-defined]
    assert by_id["req-42"]["code"] == "OK" and generated in by_id
    assert sum(r.fields["code"] == "NOT_FOUND" for r in lines) >= failed  # type: ignore[attr-defined]
    entry = json.loads(JsonFormatter().format(lines[-1]))
    assert {"t", "level", "msg", "method", "code", "duration_ms", "peer", "request_id"} <= set(entry)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["t"])
    assert entry["peer"].startswith("ipv4:127.0.0.1:") and entry["duration_ms"] >= 0


def test_feedback_events_are_counted_by_type(own_recommendation_server: Any, channel_to: Any,
                                             snapshot: FeatureSnapshot) -> None:
    stub = recommendation_pb2_grpc.RecommendationServiceStub(channel_to(own_recommendation_server))
    cid, pids = str(snapshot.customer_ids[0]), [str(p) for p in snapshot.catalog.product_ids[:3]]

    def event(pid: str, kind: int, position: int = 1) -> rpb.FeedbackEvent:
        return rpb.FeedbackEvent(customer_id=cid, product_id=pid, kind=rpb.FeedbackKind.ValueType(kind),
                                 position=position)

    def count(kind: str, outcome: str) -> float:
        return REGISTRY.get_sample_value("tenure_feedback_events_total", {"type": kind, "outcome": outcome}) or 0.0

    kinds = [(k, o) for k in ("impression", "click", "purchase", "unknown") for o in ("recorded", "refused")]
    before = {k: count(*k) for k in kinds}
    events = [event(pids[0], rpb.FEEDBACK_KIND_IMPRESSION, 1), event(pids[1], rpb.FEEDBACK_KIND_IMPRESSION, 2),
              event(pids[0], rpb.FEEDBACK_KIND_CLICK, 1), event(pids[2], rpb.FEEDBACK_KIND_PURCHASE, 3),
              event("P-nope", rpb.FEEDBACK_KIND_CLICK), event(pids[0], rpb.FEEDBACK_KIND_UNSPECIFIED)]
    res = stub.RecordFeedback(rpb.RecordFeedbackRequest(events=events), timeout=10)
    assert res.recorded == 4 and len(res.failures) == 2
    moved = {k: count(*k) - before[k] for k in kinds}
    assert {k: v for k, v in moved.items() if v} == {
        ("impression", "recorded"): 2, ("click", "recorded"): 1, ("purchase", "recorded"): 1,
        ("click", "refused"): 1, ("unknown", "refused"): 1}


def test_segment_moves_are_counted_per_rescoring(tmp_path: Path) -> None:
    log = SegmentLog(tmp_path / "segments.sqlite")

    def moves(family: str) -> float:
        return REGISTRY.get_sample_value("tenure_segment_moves_total", {"family": family}) or 0.0

    def rescorings() -> float:
        return REGISTRY.get_sample_value("tenure_rescorings_total") or 0.0

    ids = np.array(["a", "b", "c"])
    before = (moves("rfm"), moves("lifecycle"), rescorings())
    log.record("k1", "2026-01-01", [("rfm", "1")], ids, {RFM: np.array(["x", "x", "y"]), LIFECYCLE: np.array(["n"] * 3)})
    log.record("k2", "2026-02-01", [("rfm", "2")], ids, {RFM: np.array(["y", "x", "x"]), LIFECYCLE: np.array(["n"] * 3)})
    log.record("k2", "2026-02-01", [("rfm", "2")], ids, {RFM: np.array(["x"] * 3), LIFECYCLE: np.array(["n"] * 3)})
    assert (moves("rfm") - before[0], moves("lifecycle") - before[1], rescorings() - before[2]) == (2, 0, 2)


def test_a_broken_version_is_logged_once_not_at_every_poll(trained_repo: Path, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    from services.scoring.__main__ import make_service

    caplog.set_level(logging.INFO, logger="services.core")
    repo = tmp_path / "models"
    shutil.copytree(trained_repo, repo)
    vdir, manifest = latest_valid(repo, "churn")
    broken = write_artifact(repo, manifest, {f: vdir / f for f in list(manifest.files)})
    (broken / "model.onnx").write_bytes(b"\x08\x07 this is not an onnx graph " * 20)
    manifest = load_manifest(broken, verify=False)
    manifest.files["model.onnx"] = sha256_file(broken / "model.onnx")
    (broken / MANIFEST).write_text(manifest.to_json())

    service = make_service(ServiceSettings(models_dir=repo, state_dir=tmp_path / "state"), "127.0.0.1:0")
    for _ in range(4):  # what the loader threads do every reload_interval_s
        for holder in service.holders.values():
            holder.refresh()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and broken.name in r.getMessage()]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert all(h.current is not None for h in service.holders.values())  # served from the older version
    service.server.stop(0)


def test_every_dashboard_query_uses_exported_metrics() -> None:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    assert exprs and all(p["datasource"]["type"] == "prometheus" for p in board["panels"])
    used = set()
    for expr in exprs:
        for name in re.findall(r"\btenure_[a-z_]+", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert base in metrics.EXPORTED, f"{name} in {expr!r} is not exported"
            used.add(base)
    assert used == set(metrics.EXPORTED)  # and every metric has a panel


def test_workers_are_reported_once_summed(trained_repo: Path, snapshot: FeatureSnapshot, tmp_path: Path) -> None:
    from services.demo import wait_serving
    from tenure.cli import _free_port

    port, mport, files = _free_port(0), _free_port(0), tmp_path / "prometheus"
    proc = subprocess.Popen([sys.executable, "-m", "tenure.cli", "serve", "scoring", "--port", str(port),
                             "--workers", "2", "--metrics-port", str(mport), "--models", str(trained_repo)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, metrics.MULTIPROC_ENV: str(files), "TENURE_ACCESS_LOG": "all"})
    try:
        wait_serving(f"127.0.0.1:{port}", timeout_s=90, proc=proc)
        workers = [int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
                   if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(workers) == 2
        # Each worker writes its live gauges to a file of its own once its models are loaded (and it listens).
        wait_until(lambda: all((files / f"gauge_livemax_{pid}.db").exists() for pid in workers), "both workers loaded")
        n = 24
        for _ in range(n):  # a connection each: the kernel spreads them over the workers
            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                inference_pb2_grpc.GRPCInferenceServiceStub(ch).ModelInfer(infer_request("churn", snapshot.X[:2]),
                                                                           timeout=10)
        samples = scrape(mport)
        assert value(samples, "tenure_requests_total", service=OIP, method="ModelInfer", code="OK") == n
        assert value(samples, "tenure_request_duration_seconds_count", service=OIP, method="ModelInfer") == n
        assert value(samples, "tenure_rows_scored_total", model="churn",
                     version=latest_valid(trained_repo, "churn")[0].name) == 2 * n
        assert value(samples, "tenure_requests_in_flight", service=OIP, method="ModelInfer") == 0
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0
        access = [json.loads(line) for line in err.decode().splitlines()
                  if line.startswith("{") and '"tenure.access"' in line]
        assert sum(a["method"] == f"/{OIP}/ModelInfer" for a in access) == n  # every worker's lines written
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    until = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > until:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
