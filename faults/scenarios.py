"""The fault scenarios of issue 9: each runs against real service subprocesses and returns one Row.

A scenario measures and judges what happened (the verdict); it never asserts on wall-clock time. Sleeps
here only pace the load or give the reload poller a few rounds; every wait has a safety-net timeout."""
from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.procs import cpu_seconds
from faults.prepare import copy_repo
from faults.procs import LoadProc, ServiceProc, child_env, python, wait_until
from tenure.v1 import (
    inference_pb2,
    inference_pb2_grpc,
    recommendation_pb2,
    recommendation_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
)

OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 128 << 20)]


@dataclass
class Row:
    scenario: str
    calls: int = 0
    failed: int = 0
    lost_rows: int | None = None
    dup_rows: int | None = None
    probe_p99_ms: float | None = None
    rss_peak_mib: float | None = None
    rss_after_mib: float | None = None
    verdict: str = "?"
    notes: str = ""

    def judge(self, ok: bool, why: str = "") -> "Row":
        self.verdict = "PASS" if ok else "FAIL"
        if why and not ok:
            self.notes = f"{why}; {self.notes}" if self.notes else why
        return self

    def rss(self, svc: ServiceProc) -> "Row":
        if svc.alive():
            self.rss_peak_mib, self.rss_after_mib = round(svc.peak_mib(), 1), round(svc.rss_mib(), 1)
        return self


@dataclass
class Ctx:
    repo: Path
    shop: Path
    work: Path
    ids: list[str]
    products: list[str]
    X: np.ndarray
    seed: int = field(default_factory=lambda: random.SystemRandom().randrange(1 << 30))

    def dir(self, name: str) -> Path:
        path = self.work / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def service(self, kind: str, name: str, repo: Path | None = None, **kw: Any) -> ServiceProc:
        return ServiceProc(kind, repo or self.repo, self.dir(name) / f"state-{kind}", self.dir("logs") / f"{name}-{kind}.log",
                           **kw)


# ---- helpers ----------------------------------------------------------------------------------------------

def code_of(err: grpc.RpcError) -> str:
    return err.code().name if isinstance(err, grpc.Call) else "UNKNOWN"


def health(target: str) -> str:
    with grpc.insecure_channel(target) as channel:
        try:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            return health_pb2.HealthCheckResponse.ServingStatus.Name(status.status)
        except grpc.RpcError as err:
            return code_of(err)


def score_calls(target: str, ids: list[str], n: int, rows: int = 5) -> tuple[int, dict[str, int], set[str]]:
    """n Score calls of `rows` customers: (failed, status counts, churn versions reported)."""
    codes: dict[str, int] = {}
    versions: set[str] = set()
    with grpc.insecure_channel(target, options=OPTIONS) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        for i in range(n):
            req = scoring_pb2.ScoreRequest(customers=[{"customer_id": ids[(i * rows + j) % len(ids)]}
                                                      for j in range(rows)])
            try:
                resp = stub.Score(req, timeout=30)
                versions |= {m.version for m in resp.models if m.name == "churn"}
                codes["OK"] = codes.get("OK", 0) + 1
            except grpc.RpcError as err:
                codes[code_of(err)] = codes.get(code_of(err), 0) + 1
    return n - codes.get("OK", 0), codes, versions


def version_names(n: int) -> list[str]:
    """n version names newer than any existing one, in publishing order (they sort by name)."""
    start = datetime.now(timezone.utc) + timedelta(seconds=1)
    return [(start + timedelta(microseconds=i)).strftime("%Y%m%dT%H%M%S%fZ") for i in range(n)]


def newest(repo: Path, name: str) -> Path:
    from tenure.artifacts import versions

    return versions(repo, name)[0]


def publish(repo: Path, name: str, source: Path, version: str, model: bytes | None = None) -> Path:
    """Copy a version directory as a new version: written under a temporary name, then renamed into place
    (how a publisher is expected to publish). `model` replaces model.onnx; the manifest is rewritten to
    match (sha256 of every file, the version name), so it is valid even for a garbage model."""
    from tenure.artifacts import MANIFEST, sha256_file

    tmp = repo / name / f".tmp-faults-{version}"
    shutil.copytree(source, tmp)
    if model is not None:
        (tmp / "model.onnx").write_bytes(model)
    manifest = json.loads((tmp / MANIFEST).read_text())
    manifest["files"] = {f: sha256_file(tmp / f) for f in manifest.get("files", {})}
    manifest["version"] = version
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    final = repo / name / version
    os.replace(tmp, final)
    return final


def scaled_model(onnx_path: Path, factor: float = 0.5) -> bytes:
    """The same tree ensemble with every leaf weight scaled: a model whose answers differ from the original's."""
    import onnx

    model = onnx.load(str(onnx_path))
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.name in ("class_weights", "target_weights") and attr.floats:
                values = [v * factor for v in attr.floats]
                del attr.floats[:]
                attr.floats.extend(values)
    return model.SerializeToString()


def pcts(latencies_ms: list[float], q: float) -> float | None:
    return round(float(np.percentile(latencies_ms, q)), 1) if latencies_ms else None


def counts(calls: list[list[Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for call in calls:
        out[call[3]] = out.get(call[3], 0) + 1
    return out


def fmt_counts(codes: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(codes.items(), key=lambda kv: -kv[1]))


def load_spec(ctx: Ctx, scoring: str, **kw: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"scoring": scoring, "recommendation": None, "mix": ["score"], "clients": 8,
                            "seconds": 10, "ids": ctx.ids, "score_rows": 1, "predict_rows": 10, "retries": 0,
                            "timeout_s": 30, "X": ctx.X[:5].tolist()}
    spec.update(kw)
    return spec


class Probe:
    """Score(1 customer) every 10 ms and a health check every 100 ms, each on its own thread and channel."""

    def __init__(self, target: str, customer: str) -> None:
        self.target = target
        self.customer = customer
        self.stop = threading.Event()
        self.score_ms: list[float] = []
        self.failures: dict[str, int] = {}
        self.health_failures = 0
        self.health_calls = 0
        self.threads = [threading.Thread(target=self._score, daemon=True),
                        threading.Thread(target=self._health, daemon=True)]

    def _score(self) -> None:
        with grpc.insecure_channel(self.target) as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)
            req = scoring_pb2.ScoreRequest(customers=[{"customer_id": self.customer}])
            while not self.stop.is_set():
                t0 = time.perf_counter()
                try:
                    stub.Score(req, timeout=10)
                    self.score_ms.append((time.perf_counter() - t0) * 1000)
                except grpc.RpcError as err:
                    self.failures[code_of(err)] = self.failures.get(code_of(err), 0) + 1
                self.stop.wait(max(0.0, 0.010 - (time.perf_counter() - t0)))

    def _health(self) -> None:
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while not self.stop.wait(0.1):
                self.health_calls += 1
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status != 1:
                        self.health_failures += 1
                except grpc.RpcError:
                    self.health_failures += 1

    def __enter__(self) -> "Probe":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    @property
    def calls(self) -> int:
        return len(self.score_ms) + sum(self.failures.values()) + self.health_calls

    @property
    def failed(self) -> int:
        return sum(self.failures.values()) + self.health_failures


# ---- (a) broken models ------------------------------------------------------------------------------------

def broken_models(ctx: Ctx) -> list[Row]:
    """A byte flipped in a model Score does not use, and a newer churn version whose ONNX is garbage behind a
    valid manifest: the running service keeps serving the last good churn, and a restart serves too."""
    repo = copy_repo(ctx.repo, ctx.work / "repo-a")
    rows = []
    row = Row("a broken models (running, reload 0.2s)")
    with ctx.service("scoring", "a", repo, env={"TENURE_RELOAD_INTERVAL_S": "0.2"}) as svc:
        svc.wait_serving()
        _, _, before = score_calls(svc.target, ctx.ids, 20)
        victim = newest(repo, "clv") / "model.onnx"
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))
        garbage = publish(repo, "churn", newest(repo, "churn"), version_names(1)[0], model=b"not an onnx model" * 500)
        time.sleep(3.0)  # ~15 polls of the repository
        failed, codes, after = score_calls(svc.target, ctx.ids, 200)
        status = health(svc.target)
        row.calls, row.failed = 200, failed
        row.notes = f"{fmt_counts(codes)}; health {status}; churn served {sorted(after)} (before {sorted(before)})"
        row.rss(svc).judge(failed == 0 and status == "SERVING" and garbage.name not in after,
                           "Score failed or the garbage version was served")
    rows.append(row)
    row = Row("a broken models (restart on them)")
    with ctx.service("scoring", "a2", repo) as svc:
        try:
            svc.wait_serving(timeout_s=120)
            up = "SERVING"
        except (TimeoutError, RuntimeError) as err:
            up = f"not SERVING ({' '.join(str(err).split())[:120]})"
        failed, codes, after = score_calls(svc.target, ctx.ids, 200)
        row.calls, row.failed = 200, failed
        row.notes = f"{fmt_counts(codes)}; start: {up}; churn served {sorted(after)}"
        row.rss(svc).judge(failed == 0 and garbage.name not in after, "Score failed after a restart")
    rows.append(row)
    return rows


# ---- (b) starvation ---------------------------------------------------------------------------------------

def starvation(ctx: Ctx) -> list[Row]:
    """8, then 16 clients each sending Predict for 10,000 customers; a probe's Score(1) every 10 ms and health
    every 100 ms must keep being answered."""
    rows = []
    with ctx.service("scoring", "b") as svc:
        svc.wait_serving()
        for clients in (8, 16):
            row = Row(f"b starvation: {clients} x Predict(10,000)")
            spec = load_spec(ctx, svc.target, mix=["predict"], clients=clients, seconds=12, predict_rows=10_000,
                             timeout_s=60)
            with LoadProc(spec, ctx.dir("b"), f"c{clients}") as load:
                time.sleep(2.0)  # let every client have its first call in flight
                with Probe(svc.target, ctx.ids[0]) as probe:
                    calls = load.wait(timeout_s=180)
            codes = counts(calls)
            row.calls = len(calls) + probe.calls
            row.failed = (len(calls) - codes.get("OK", 0)) + probe.failed
            row.probe_p99_ms = pcts(probe.score_ms, 99)
            row.notes = (f"load {fmt_counts(codes)}; probe Score n={len(probe.score_ms)} p50 "
                         f"{pcts(probe.score_ms, 50)} ms, failures {probe.failures or 0}; health failures "
                         f"{probe.health_failures}/{probe.health_calls}")
            rows.append(row.rss(svc).judge(probe.failed == 0, "the probe was not answered"))
    rows.append(idle_streams(ctx))
    return rows


def idle_streams(ctx: Ctx) -> Row:
    """4 idle ModelStreamInfer streams hold every stream slot (max_streams 4); with an idle timeout the
    server ends them, and a StreamScore then gets OK."""
    row = Row("b idle streams then StreamScore")
    idle_s = 2.0
    with ctx.service("scoring", "b-idle", env={"TENURE_STREAM_IDLE_TIMEOUT_S": str(idle_s),
                                                "TENURE_MAX_STREAMS": "4"}) as svc:
        svc.wait_serving()
        release = threading.Event()

        def nothing() -> Iterator[inference_pb2.ModelInferRequest]:
            release.wait(120)
            return
            yield  # a generator that sends nothing until released

        channel = grpc.insecure_channel(svc.target, options=OPTIONS)
        try:
            infer = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
            streams = [infer.ModelStreamInfer(nothing(), timeout=120) for _ in range(4)]
            ended: dict[str, int] = {}

            def drain(stream: Any) -> None:
                try:
                    for _ in stream:
                        pass
                    code = "OK"
                except grpc.RpcError as err:
                    code = code_of(err)
                ended[code] = ended.get(code, 0) + 1

            drainers = [threading.Thread(target=drain, args=(s,), daemon=True) for s in streams]
            for t in drainers:
                t.start()
            time.sleep(0.5)  # the four streams reach their handlers
            scoring = scoring_pb2_grpc.ScoringServiceStub(channel)
            t0 = time.monotonic()
            attempts, last = 0, ""
            while time.monotonic() - t0 < 30 + 3 * idle_s:
                attempts += 1
                chunk = scoring_pb2.ScoreChunk(chunk_id=0, customer_ids=ctx.ids[:10])
                try:
                    results = list(scoring.StreamScore(iter([chunk]), timeout=30))
                    last = "OK" if sum(len(r.customer_ids) for r in results) == 10 else "SHORT"
                    break
                except grpc.RpcError as err:
                    last = code_of(err)
                time.sleep(0.25)
            waited = time.monotonic() - t0
            release.set()
            for t in drainers:
                t.join(timeout=30)
        finally:
            release.set()
            channel.close()
        row.calls, row.failed = attempts + 4, attempts - (1 if last == "OK" else 0)
        row.notes = (f"StreamScore {last} after {attempts} attempt(s), {waited:.1f}s (idle timeout {idle_s:.0f}s); "
                     f"idle streams ended {fmt_counts(ended)}")
        row.rss(svc).judge(last == "OK", "StreamScore never got a slot")
    return row


# ---- (c) huge requests -----------------------------------------------------------------------------------

def _huge_score_request(target_bytes: int) -> bytes:
    """A serialized ScoreRequest of about target_bytes: customer ids (CustomerRef), built as bytes."""
    def ref(i: int) -> bytes:
        cid = f"huge-customer-{i:010d}".encode()
        inner = b"\x0a" + bytes([len(cid)]) + cid
        return b"\x0a" + bytes([len(inner)]) + inner

    one = len(ref(0))
    return b"".join(ref(i) for i in range(target_bytes // one))


def huge_requests(ctx: Ctx) -> list[Row]:
    rows = []
    with ctx.service("scoring", "c") as svc:
        svc.wait_serving()
        score_calls(svc.target, ctx.ids, 20)
        row = Row("c 60 MB Score request")
        before = svc.rss_mib()
        payload = _huge_score_request(60 << 20)
        with grpc.insecure_channel(svc.target, options=OPTIONS) as channel:
            call = channel.unary_unary("/tenure.v1.ScoringService/Score", request_serializer=lambda b: b,
                                       response_deserializer=scoring_pb2.ScoreResponse.FromString)
            try:
                call(payload, timeout=120)
                code, details = "OK", ""
            except grpc.RpcError as err:
                code, details = code_of(err), (err.details() if isinstance(err, grpc.Call) else "") or ""
        status = health(svc.target)
        row.calls, row.failed = 1, 0 if code != "OK" else 1
        row.notes = (f"{len(payload) / 2**20:.0f} MB -> {code}: {' '.join(details.split())[:140]}; RSS before "
                     f"{before:.0f} MiB; health {status}")
        rows.append(row.rss(svc).judge(code in ("RESOURCE_EXHAUSTED", "INVALID_ARGUMENT") and status == "SERVING",
                                       "the request was not refused, or the service did not survive it"))
        del payload
    with ctx.service("scoring", "c-flood") as svc:
        svc.wait_serving()
        rows.append(calls_in_flight(ctx, svc))
    return rows


def calls_in_flight(ctx: Ctx, svc: ServiceProc) -> Row:
    """Thousands of unary calls and dozens of streams issued at once: every call must end with a status."""
    row = Row("c thousands in flight + many streams")
    n_unary, n_streams, chunks = 3000, 40, 5
    channels = [grpc.insecure_channel(svc.target, options=[*OPTIONS, ("grpc.use_local_subchannel_pool", 1)])
                for _ in range(4)]
    try:
        stubs = [scoring_pb2_grpc.ScoringServiceStub(c) for c in channels]
        futures = [stubs[i % 4].Score.future(scoring_pb2.ScoreRequest(customers=[{"customer_id": ctx.ids[i % len(ctx.ids)]}]))
                   for i in range(n_unary)]

        def stream(i: int) -> str:
            ids = [ctx.ids[(i * 7 + j) % len(ctx.ids)] for j in range(2000)]
            try:
                got = sum(len(r.customer_ids) for r in stubs[i % 4].StreamScore(
                    iter([scoring_pb2.ScoreChunk(chunk_id=k, customer_ids=ids) for k in range(chunks)])))
                return "OK" if got == 2000 * chunks else "SHORT"
            except grpc.RpcError as err:
                return code_of(err)

        with ThreadPoolExecutor(n_streams) as pool:
            stream_results = list(pool.map(stream, range(n_streams)))
        deadline = time.monotonic() + 120  # safety net: a call still pending then has no status: lost
        codes: dict[str, int] = {}
        lost = 0
        for fut in futures:
            try:
                fut.result(timeout=max(0.01, deadline - time.monotonic()))
                code = "OK"
            except grpc.FutureTimeoutError:
                lost += 1
                fut.cancel()
                continue
            except grpc.RpcError as err:
                code = code_of(err)
            codes[code] = codes.get(code, 0) + 1
        for code in stream_results:
            codes[f"stream {code}"] = codes.get(f"stream {code}", 0) + 1
    finally:
        for c in channels:
            c.close()
    status = health(svc.target)
    row.calls = n_unary + n_streams
    row.failed = row.calls - codes.get("OK", 0) - codes.get("stream OK", 0) - lost
    row.lost_rows = lost
    row.notes = f"{fmt_counts(codes)}; without a status: {lost}; health {status}"
    return row.rss(svc).judge(lost == 0 and status == "SERVING", "calls without a status, or the service died")


# ---- (d) feedback flood ----------------------------------------------------------------------------------

def feedback_flood(ctx: Ctx) -> list[Row]:
    row = Row("d feedback flood: 500k events, unknown customers")
    with ctx.service("recommendation", "d") as svc:
        svc.wait_serving()
        before = svc.rss_mib()
        recorded = refused = failed_calls = 0
        codes: dict[str, int] = {}
        with grpc.insecure_channel(svc.target, options=OPTIONS) as channel:
            stub = recommendation_pb2_grpc.RecommendationServiceStub(channel)
            now = time.time()
            for b in range(50):
                events = [recommendation_pb2.FeedbackEvent(
                    customer_id=f"ghost-{b:02d}-{i:05d}", product_id=ctx.products[i % len(ctx.products)],
                    kind=recommendation_pb2.FEEDBACK_KIND_IMPRESSION, position=1 + i % 10, timestamp=now)
                    for i in range(10_000)]
                try:
                    resp = stub.RecordFeedback(recommendation_pb2.RecordFeedbackRequest(events=events), timeout=120)
                    recorded += resp.recorded
                    refused += len(resp.failures)
                    codes["OK"] = codes.get("OK", 0) + 1
                except grpc.RpcError as err:
                    failed_calls += 1
                    refused += len(events)
                    codes[code_of(err)] = codes.get(code_of(err), 0) + 1
        status = health(svc.target)
        row.calls, row.failed = 50, failed_calls
        row.rss(svc)
        growth = (row.rss_after_mib or 0) - before
        row.notes = (f"events recorded {recorded:,}, refused {refused:,}; calls {fmt_counts(codes)}; RSS before "
                     f"{before:.0f} MiB, growth {growth:+.0f} MiB; health {status}")
        row.judge(status == "SERVING" and growth < 100, "the service grew by 100 MiB or more, or died")
    return [row, events_flood(ctx)]


def events_flood(ctx: Ctx, cap: int = 20_000, calls: int = 30) -> Row:
    """30 IngestEvents calls of 10,000 orders, each for a customer nobody knows: the embedded online store takes
    `cap` of them (TENURE_ONLINE_MAX_NEW_CUSTOMERS) and rejects the rest per event; RSS stops growing at the cap."""
    from tenure.store import FeatureSnapshot
    from tenure.v1 import events_pb2, events_pb2_grpc

    row = Row(f"d events flood: {calls * 10_000:,} orders for made-up customers")
    at = max(time.time(), FeatureSnapshot.load_latest(ctx.repo).cutoff.timestamp() + 86_400)
    with ctx.service("scoring", "d-events", env={"TENURE_ONLINE_MAX_NEW_CUSTOMERS": str(cap)}) as svc:
        svc.wait_serving()
        before = svc.rss_mib()
        applied = rejected = failed_calls = 0
        rss_at: dict[int, float] = {}
        with grpc.insecure_channel(svc.target, options=OPTIONS) as channel:
            stub = events_pb2_grpc.EventServiceStub(channel)
            for b in range(calls):
                events = [events_pb2.Event(event_id=f"flood-{b}-{i}", customer_id=f"made-up-{b:02d}-{i:05d}", timestamp=at,
                                           order=events_pb2.OrderEvent(order_id=f"o-{b}-{i}", lines=[events_pb2.EventLine(
                                               product_id=ctx.products[i % len(ctx.products)], quantity=1, amount=9.5)]))
                          for i in range(10_000)]
                try:
                    resp = stub.IngestEvents(events_pb2.IngestEventsRequest(events=events), timeout=120)
                    applied += resp.applied
                    rejected += resp.rejected
                except grpc.RpcError:
                    failed_calls += 1
                rss_at[b + 1] = svc.rss_mib()
        status = health(svc.target)
        row.calls, row.failed = calls, failed_calls
        row.rss(svc)
        late = rss_at[calls] - rss_at[5]
        row.notes = (f"applied {applied:,} (the cap {cap:,}), rejected {rejected:,} (RESOURCE_EXHAUSTED per event); RSS "
                     f"before {before:.0f} MiB, after 5 calls {rss_at[5]:.0f}, after {calls} {rss_at[calls]:.0f} MiB; "
                     f"health {status}")
        row.judge(status == "SERVING" and failed_calls == 0 and applied == cap and rejected == calls * 10_000 - cap
                  and late < 20, "more than the cap was taken, or RSS kept growing past it")
    return row


# ---- (e) 100 reloads -------------------------------------------------------------------------------------

def wait_version(target: str, ids: list[str], version: str, timeout_s: float = 60) -> bool:
    with grpc.insecure_channel(target) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        req = scoring_pb2.ScoreRequest(customers=[{"customer_id": ids[0]}])

        def served() -> bool:
            try:
                return any(m.name == "churn" and m.version == version for m in stub.Score(req, timeout=10).models)
            except grpc.RpcError:
                return False

        return wait_until(served, timeout_s, 0.02)


def _reloads(ctx: Ctx, kind: str, name: str, title: str, served: Callable[[str, str], bool], word: str,
             after: Callable[[str], tuple[int, str]]) -> Row:
    """Publish 100 churn versions to a running `kind` service (reload 0.2 s): every version is taken up
    (`served(target, version)`), and RSS after the 100th is within 50 MiB of RSS after the 10th;
    `after(target)` -> (failed calls of 20, what they answered)."""
    row = Row(title)
    repo = copy_repo(ctx.repo, ctx.work / f"repo-{name}")
    with ctx.service(kind, name, repo, env={"TENURE_RELOAD_INTERVAL_S": "0.2"}) as svc:
        svc.wait_serving()
        source = newest(repo, "churn")
        missed = 0
        rss: dict[int, float] = {}
        t0 = time.monotonic()
        for i, version in enumerate(version_names(100), start=1):
            publish(repo, "churn", source, version)
            if not served(svc.target, version):
                missed += 1
            if i in (10, 100):
                rss[i] = svc.rss_mib()
        took = time.monotonic() - t0
        failed, answered = after(svc.target)
        row.calls, row.failed = 100 + 20, missed + failed
        row.rss(svc)
        growth = rss.get(100, 0) - rss.get(10, 0)
        row.notes = (f"RSS after 10 reloads {rss.get(10, 0):.0f} MiB, after 100 {rss.get(100, 0):.0f} MiB "
                     f"({growth:+.0f}); versions not {word} {missed}; {took / 100:.2f}s per publish->{word}; {answered}")
        row.judge(missed == 0 and failed == 0 and growth < 50, "a version was not picked up, or RSS grew 50 MiB+")
    return row


def reloads(ctx: Ctx) -> list[Row]:
    """100 reloads of the scoring service, then of the segmentation service (where each churn version is a new
    engine and a re-scoring of the base)."""
    from tenure.v1 import segmentation_pb2, segmentation_pb2_grpc

    def scored(target: str) -> tuple[int, str]:
        failed, codes, _ = score_calls(target, ctx.ids, 20)
        return failed, f"Score after: {fmt_counts(codes)}"

    def rescored_with(target: str, version: str) -> bool:
        with grpc.insecure_channel(target, options=OPTIONS) as channel:
            stub = segmentation_pb2_grpc.SegmentationServiceStub(channel)

            def done() -> bool:
                try:
                    catalog = stub.DescribeSegments(segmentation_pb2.DescribeSegmentsRequest(), timeout=10)
                except grpc.RpcError:
                    return False
                return any(m.name == "churn" and m.version == version for m in catalog.rescoring.models)

            return wait_until(done, timeout_s=60, interval_s=0.05)

    def segments(target: str) -> tuple[int, str]:
        failed = 0
        with grpc.insecure_channel(target, options=OPTIONS) as channel:
            stub = segmentation_pb2_grpc.SegmentationServiceStub(channel)
            for cid in ctx.ids[:20]:
                try:
                    stub.GetSegments(segmentation_pb2.GetSegmentsRequest(customer_ids=[cid]), timeout=10)
                except grpc.RpcError:
                    failed += 1
        return failed, f"GetSegments after: {20 - failed} of 20 OK"

    return [
        _reloads(ctx, "scoring", "e", "e 100 reloads (publish churn, reload 0.2s)",
                 lambda target, version: wait_version(target, ctx.ids, version), "served", scored),
        _reloads(ctx, "segmentation", "e-seg",
                 "e 100 reloads of segmentation (publish churn, reload 0.2s; each re-scores the base)",
                 rescored_with, "re-scored with", segments),
    ]


# ---- (f) hot swap under load -----------------------------------------------------------------------------

def hot_swap(ctx: Ctx) -> list[Row]:
    """100 publishes (churn alternating between two different models, and propensity) while 16 clients call
    Score, Predict, ModelInfer and Recommend: no failed call, no answer whose numbers are another version's."""
    row = Row("f hot swap: 100 publishes under c=16")
    repo = copy_repo(ctx.repo, ctx.work / "repo-f")
    env = {"TENURE_RELOAD_INTERVAL_S": "0.2"}
    with ctx.service("scoring", "f", repo, env=env) as scoring, \
            ctx.service("recommendation", "f", repo, env=env) as rec:
        scoring.wait_serving()
        rec.wait_serving()
        churn_a = newest(repo, "churn")
        model_b = scaled_model(churn_a / "model.onnx")
        ids, X = ctx.ids[:5], ctx.X[:5]

        def refs() -> tuple[list[float], list[float]]:
            with grpc.insecure_channel(scoring.target) as channel:
                s = scoring_pb2_grpc.ScoringServiceStub(channel).Score(
                    scoring_pb2.ScoreRequest(customers=[{"customer_id": c} for c in ids], scores=["churn"]), timeout=30)
                Tensor = inference_pb2.ModelInferRequest.InferInputTensor
                r = inference_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(inference_pb2.ModelInferRequest(
                    model_name="churn", inputs=[Tensor(name="features", datatype="FP32", shape=list(X.shape))],
                    raw_input_contents=[X.astype("<f4").tobytes()]), timeout=30)
                idx = [o.name for o in r.outputs].index("probabilities")
                return ([x.scores.churn_probability for x in s.results],
                        np.frombuffer(r.raw_output_contents[idx], "<f4").reshape(-1, 2)[:, 1].tolist())

        score_a, infer_a = refs()
        names = version_names(101)
        publish(repo, "churn", churn_a, names[0], model=model_b)
        if not wait_version(scoring.target, ctx.ids, names[0]):
            raise RuntimeError("the service did not pick up the first published version")
        score_b, infer_b = refs()
        kinds = {churn_a.name: "A", **{v: "B" if i % 2 == 0 else "A" for i, v in enumerate(names)}}
        stop = ctx.dir("f") / "stop"
        stop.unlink(missing_ok=True)
        spec = load_spec(ctx, scoring.target, recommendation=rec.target, mix=["score", "predict", "infer", "recommend"],
                         clients=16, seconds=120, ids=ids, score_rows=5, predict_rows=50, stop_file=str(stop),
                         refs={"score": {"A": score_a, "B": score_b}, "infer": {"A": infer_a, "B": infer_b}},
                         version_kind=kinds)
        prop = newest(repo, "propensity")
        prop_versions = version_names(100)
        with LoadProc(spec, ctx.dir("f"), "swap") as load:
            time.sleep(2.0)
            for i, version in enumerate(names[1:]):
                publish(repo, "churn", churn_a, version, model=model_b if (i + 1) % 2 == 0 else None)
                publish(repo, "propensity", prop, prop_versions[i])
                time.sleep(0.15)
            time.sleep(1.0)
            stop.write_text("stop\n")
            calls = load.wait(timeout_s=120)
        codes = counts(calls)
        mixed = sum(1 for c in calls if c[5])
        by_kind = {k: sum(1 for c in calls if c[0] == k) for k in ("score", "predict", "infer", "recommend")}
        seen = {k: len({c[6] for c in calls if c[0] == k and c[3] == "OK"}) for k in ("score", "infer", "recommend")}
        row.calls, row.failed = len(calls), len(calls) - codes.get("OK", 0)
        row.notes = (f"{fmt_counts(codes)}; mixed-version answers {mixed}; calls {by_kind}; versions answered "
                     f"{seen}; churn versions "
                     f"A/B differ by {np.max(np.abs(np.subtract(score_a, score_b))):.3f}")
        row.rss(scoring).judge(row.failed == 0 and mixed == 0, "failed calls or mixed-version answers")
    return [row]


# ---- (g) SIGTERM under load ------------------------------------------------------------------------------

def sigterm(ctx: Ctx) -> list[Row]:
    row = Row("g SIGTERM under load (c=16)")
    # Bulk calls bounded above the clients' count: no call is refused for overload, so every call that fails
    # failed because of the shutdown (the overload refusal is scenario b's).
    with ctx.service("scoring", "g", env={"TENURE_BULK_CALLS": "16"}) as svc:
        svc.wait_serving()
        spec = load_spec(ctx, svc.target, mix=["score", "predict"], clients=16, seconds=9, predict_rows=1000)
        with LoadProc(spec, ctx.dir("g"), "term") as load:
            time.sleep(4.0)
            row.rss(svc)
            t_term = time.time()
            svc.signal(signal.SIGTERM)
            assert svc.proc is not None
            try:
                code = svc.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                code = None
            t_exit = time.time()
            calls = load.wait(timeout_s=120)
    in_flight = [c for c in calls if c[1] < t_term < c[2]]
    failed = [c for c in in_flight if c[3] != "OK"]
    before = counts([c for c in calls if c[2] <= t_term])
    after = counts([c for c in calls if c[1] >= t_term])
    row.calls, row.failed = len(calls), len(failed)
    row.notes = (f"in flight at SIGTERM {len(in_flight)}, failed {len(failed)} {fmt_counts(counts(failed))}; "
                 f"exit {code} {t_exit - t_term:.1f}s after SIGTERM; calls before: {fmt_counts(before)}; calls "
                 f"started later: {fmt_counts(after)}")
    return [row.judge(not failed and code == 0 and len(in_flight) > 0,
                      "in-flight calls broken by the shutdown, or a bad exit")]


# ---- (h) SIGKILL one of two workers ----------------------------------------------------------------------

def _workers(svc: ServiceProc) -> list[int]:
    from bench.procs import cmdline, descendants

    return [p for p in descendants(svc.pid) if "spawn_main" in cmdline(p)]


def sigkill_worker(ctx: Ctx) -> list[Row]:
    row = Row("h SIGKILL 1 of 2 workers (retrying clients)")
    with ctx.service("scoring", "h", workers=2, env={"TENURE_PIN_WORKERS": "0"}) as svc:
        svc.wait_serving()
        # Both workers listening (each starts once its models are loaded), or every client connects to one.
        listening = lambda: svc.log.read_text(errors="replace").count("listening on port") >= 2
        if not wait_until(lambda: len(_workers(svc)) == 2 and listening(), 120):
            raise RuntimeError(f"expected 2 listening worker processes, found {len(_workers(svc))}")
        spec = load_spec(ctx, svc.target, mix=["score"], clients=16, seconds=10, retries=5, score_rows=5)
        with LoadProc(spec, ctx.dir("h"), "kill") as load:
            time.sleep(4.0)
            victim = _workers(svc)[0]
            os.kill(victim, signal.SIGKILL)
            t_kill = time.time()
            calls = load.wait(timeout_s=120)
        replaced = wait_until(lambda: len(_workers(svc)) == 2 and victim not in _workers(svc), 10)
        status = health(svc.target)
        row.rss(svc)
    codes = counts(calls)
    retried = sum(1 for c in calls if c[4] > 1)
    row.calls, row.failed = len(calls), len(calls) - codes.get("OK", 0)
    row.notes = (f"{fmt_counts(codes)}; calls retried {retried}; after the kill: "
                 f"{fmt_counts(counts([c for c in calls if c[1] >= t_kill]))}; worker replaced {replaced}; "
                 f"health {status}")
    return [row.judge(row.failed == 0 and status == "SERVING", "calls failed despite retries, or nothing serves")]


# ---- (i) kill-and-resume score-file ----------------------------------------------------------------------

def _score_file_cmd(target: str, src: Path, out: Path) -> list[str]:
    return [python(), "-m", "tenure.cli", "score-file", "--target", target, "--input", str(src), "--output", str(out),
            "--chunk-rows", "5000"]


def _compare(src_ids: list[str], out: Path) -> tuple[int, int, int]:
    """(lost, duplicated, failed) rows of a score-file output against its input, in order."""
    import pyarrow.parquet as pq

    if not out.exists():
        return len(src_ids), 0, 0
    table = pq.read_table(out)
    got = [str(v) for v in table.column("customer_id").to_pylist()]
    failed = sum(1 for e in table.column("error").to_pylist() if e) if "error" in table.column_names else 0
    n = min(len(got), len(src_ids))
    mismatched = sum(1 for a, b in zip(got[:n], src_ids[:n]) if a != b)
    return max(0, len(src_ids) - len(got)) + mismatched, max(0, len(got) - len(src_ids)), failed


def _kill_mid_run(cmd: list[str], out: Path, rng: random.Random, kill: Callable[[subprocess.Popen[bytes]], None],
                  log_path: Path) -> str:
    """Start score-file, wait until it has written part of its output (OUTPUT.parts/) or a random 1.5-3.5s,
    then kill (the client or the server); returns what happened."""
    parts = out.with_name(out.name + ".parts")
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=child_env(), start_new_session=True)
    try:
        fallback = rng.uniform(1.5, 3.5)
        t0 = time.monotonic()
        wait_until(lambda: proc.poll() is not None or (parts.is_dir() and any(parts.iterdir()))
                   or time.monotonic() - t0 > fallback, 120)
        if proc.poll() is not None:
            return f"finished (exit {proc.returncode}) before the kill"
        time.sleep(rng.uniform(0.0, 0.5))
        if proc.poll() is not None:
            return f"finished (exit {proc.returncode}) before the kill"
        n_parts = len(list(parts.iterdir())) if parts.is_dir() else 0
        kill(proc)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        return f"killed after {time.monotonic() - t0:.1f}s ({n_parts} parts written), exit {proc.returncode}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def score_file_resume(ctx: Ctx) -> list[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(ctx.seed)
    work = ctx.dir("i")
    n_rows = 600_000
    src_ids = [ctx.ids[i % len(ctx.ids)] for i in range(n_rows)]
    src = work / "customers.parquet"
    pq.write_table(pa.table({"customer_id": src_ids}), src)
    rows = []
    with ctx.service("scoring", "i") as svc:
        svc.wait_serving()
        # 1. SIGKILL the client mid-run, run it again
        row = Row("i score-file: SIGKILL client, rerun")
        out = _fresh_output(work / "scores-client.parquet")
        cmd = _score_file_cmd(svc.target, src, out)
        what = _kill_mid_run(cmd, out, rng, lambda p: p.send_signal(signal.SIGKILL), work / "client.log")
        rows.append(_rerun_row(row, svc, cmd, src_ids, out, f"{n_rows:,} rows; first run {what}", f"; seed {ctx.seed}"))

    # 2. SIGKILL the server mid-run, start it again on the same port, rerun the client
    row = Row("i score-file: SIGKILL server, restart, rerun")
    out = _fresh_output(work / "scores-server.parquet")
    first = ctx.service("scoring", "i-server").start()
    try:
        first.wait_serving()
        cmd = _score_file_cmd(first.target, src, out)
        what = _kill_mid_run(cmd, out, rng, lambda _p: first.kill(), work / "client-server-kill.log")
    finally:
        first.kill()
    with ctx.service("scoring", "i-server2", port=first.port) as svc:
        svc.wait_serving()
        rows.append(_rerun_row(row, svc, cmd, src_ids, out, f"{n_rows:,} rows; first run {what}"))
    return rows


def _fresh_output(out: Path) -> Path:
    """`out` with no output or parts directory left from an earlier run."""
    for stale in (out, out.with_name(out.name + ".parts")):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    return out


def _rerun_row(row: Row, svc: Any, cmd: list[str], src_ids: list[str], out: Path, notes: str, suffix: str = "") -> Row:
    """Run the interrupted score-file command again and judge the output: no row lost, duplicated or failed."""
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), timeout=600)
    lost, dup, failed = _compare(src_ids, out)
    row.calls, row.failed, row.lost_rows, row.dup_rows = 2, failed, lost, dup
    row.notes = (f"{notes}; rerun exit {rerun.returncode} "
                 f"{' '.join((rerun.stderr or rerun.stdout).split())[-160:]}{suffix}")
    return row.rss(svc).judge(rerun.returncode == 0 and lost == dup == failed == 0, "rows lost, duplicated or failed")


def _settled_cpu(pid: int, quiet_s: float = 0.3, timeout_s: float = 30.0) -> float:
    """The process's CPU seconds once it has stopped computing: polled until it grows less than 5 ms over
    `quiet_s` (the reload poller and health cost far less), or timeout_s."""
    last = cpu_seconds(pid)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = cpu_seconds(pid)
        if now - last < 0.005:
            return now
        last = now
    return last


def _drain(call: Any) -> None:
    for _ in call:
        pass


def _cancel_row(name: str, svc: ServiceProc, start: Callable[[], Any], first: Callable[[Any], Any],
                finish: Callable[[Any], Any]) -> Row:
    """CPU of one complete call (`finish` waits for its end), then of the same call cancelled once it is under way
    (`first` waits for that): the server's CPU from the cancel until it is idle again, against the whole call's."""
    row = Row(name)
    before = _settled_cpu(svc.pid)
    call = start()
    first(call)
    finish(call)
    full = _settled_cpu(svc.pid) - before
    base = _settled_cpu(svc.pid)
    call = start()
    first(call)
    at_cancel = cpu_seconds(svc.pid)
    call.cancel()
    code = "CANCELLED" if call.cancelled() or call.code() == grpc.StatusCode.CANCELLED else call.code().name
    after = _settled_cpu(svc.pid) - at_cancel
    row.calls, row.failed = 2, int(code != "CANCELLED")
    row.notes = (f"whole call {full:.2f} CPU-s; cancelled after {at_cancel - base:.2f} CPU-s; server CPU after "
                 f"the cancel {after:.3f} CPU-s ({after / max(full, 1e-9):.0%} of the whole call); client saw {code}")
    return row.rss(svc).judge(code == "CANCELLED" and after <= 0.25 * full, "the server kept computing after the cancel")


def cancellation(ctx: Ctx) -> list[Row]:
    """Predict(10,000), a 40-chunk StreamScore and a 40-request ModelStreamInfer, each run whole and then cancelled
    once under way: the server stops within a chunk (its CPU after the cancel is a small share of the whole)."""
    rows = []
    ids = [ctx.ids[i % len(ctx.ids)] for i in range(10_000)]
    with ctx.service("scoring", "j") as svc:
        svc.wait_serving()
        channel = grpc.insecure_channel(svc.target, options=OPTIONS)
        try:
            scoring = scoring_pb2_grpc.ScoringServiceStub(channel)
            infer = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
            predict = scoring_pb2.PredictRequest(customer_ids=ids)
            rows.append(_cancel_row("j Predict(10,000) cancelled after 0.1 s", svc,
                                    lambda: scoring.Predict.future(predict, timeout=120),
                                    lambda call: time.sleep(0.1), lambda call: call.result()))
            chunks = [scoring_pb2.ScoreChunk(chunk_id=c, customer_ids=ids) for c in range(40)]
            rows.append(_cancel_row("j StreamScore 40 x 10,000 cancelled after its first chunk", svc,
                                    lambda: scoring.StreamScore(iter(chunks), timeout=300), next, _drain))
            X = ctx.X[np.arange(1_000) % len(ctx.X)].astype(np.float32)
            req = inference_pb2.ModelInferRequest(
                model_name="churn", inputs=[inference_pb2.ModelInferRequest.InferInputTensor(
                    name="features", datatype="FP32", shape=list(X.shape))], raw_input_contents=[X.astype("<f4").tobytes()])
            rows.append(_cancel_row("j ModelStreamInfer 400 x 1,000 rows cancelled after its first answer", svc,
                                    lambda: infer.ModelStreamInfer(iter([req] * 400), timeout=300), next, _drain))
        finally:
            channel.close()
    return rows


SCENARIOS: dict[str, Callable[[Ctx], list[Row]]] = {
    "a": broken_models,
    "b": starvation,
    "c": huge_requests,
    "d": feedback_flood,
    "e": reloads,
    "f": hot_swap,
    "g": sigterm,
    "h": sigkill_worker,
    "i": score_file_resume,
    "j": cancellation,
}


def as_dict(row: Row) -> dict[str, Any]:
    return dataclasses.asdict(row)
