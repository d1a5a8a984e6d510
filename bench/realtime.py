"""`make bench-realtime` / `python -m bench.realtime`: the online feature store under load (issue 12).

One run (~2-4 minutes; the first also trains a small repository, ~2 minutes, cached in
/tmp/tenure-bench/realtime/repo): a real redis-server on a unix socket, two scoring replicas sharing it
(A ingests, B scores), a third with the embedded store, and:

  ingest     events/s through IngestEvents and StreamIngestEvents (batches of 500) into replica A, and A's
             CPU seconds per event from /proc (events per CPU second = per core); target >= 5,000/s per core.
             Checked: every event applied, and sampled customers' online rows (read from Redis) equal the rows
             an OnlineFeatures in this process computes from the same events.
  latency    an order event, then Score the customer until the answer changes, timed from sending the event:
             Redis (ingest on A, Score on B; target p99 <= 1 s) and embedded (target p99 <= 50 ms). Checked:
             every changed answer equals onnxruntime in this process on the online row computed here.
  interfere  Score p99 (h2load, 1 customer by id) on B idle vs while A ingests 1,000 events/s into the shared
             Redis (target: within 1.2x; median of 3 alternations), beside the in-process onnxruntime limit on
             the same models and row, and a control: the same ingest into replica D (its own embedded store,
             nothing B reads), the part of any slowdown that is the box's CPU rather than the shared store.

Pinning (2 cores): A, D, Redis and the ingest client on core 0; B, C and h2load on core 1. A wrong answer is a MISS.
Results: bench/out/realtime.md and realtime.json (BENCH_OUT / --out).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench import h2
from bench.prepare import Paths, log
from bench.procs import ForeignCpu, Server, cpu_seconds, free_port, ncpus

SCORE = "/tenure.v1.ScoringService/Score"
INGEST_CORE, SCORE_CORE = "0", "1"
BATCH = 500
INGEST_EVENTS = 20_000
"""Events per ingest mode (unary, stream)."""
SENDERS = 2
"""Concurrent ingest callers (each with its own customers: a customer's events stay in time order)."""
LATENCY_SAMPLES = 300
STEADY_RATE = 1_000
"""Events/s into replica A while B's Score is measured."""
TARGETS: dict[str, float] = {"ingest_per_core": 5_000.0, "redis_p99_ms": 1_000.0, "embedded_p99_ms": 50.0, "interference": 1.2}
DAY = 86_400.0


# -------------------------------------------------------------- the repository


def _build(repo: Path) -> None:
    """The tests' small shop (4,000 customers, seed 11) trained with the tests' settings (tests/conftest.py)."""
    from tenure.settings import TrainSettings
    from tenure.synthetic import generate_shop
    from training.pipeline import train_all

    shop = generate_shop(n_customers=4_000, seed=11, n_products=300)
    train_all(shop, repo, TrainSettings(propensity_train_customers=2_000, lgbm_threads=2))


def ensure_repo(p: Paths) -> Path:
    repo = p.cache / "realtime" / "repo"
    if any(repo.glob("features/*/online.npz")) and (repo / "churn").exists() and (repo / "lookalike").exists():
        return repo
    if repo.exists():
        shutil.rmtree(repo)
    repo.parent.mkdir(parents=True, exist_ok=True)
    log(f"training the small repository (4,000 customers) into {repo} (~2 min, once)")
    t0 = time.perf_counter()
    with open(p.logs / "realtime-train.log", "ab") as f:
        subprocess.run([p.py, "-m", "bench.realtime", "--build", str(repo)], cwd=p.root, stdout=f,
                       stderr=subprocess.STDOUT, check=True, timeout=1200, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    log(f"trained in {time.perf_counter() - t0:.0f}s")
    return repo


# -------------------------------------------------------------- events and references


class Orders:
    """Order events for the bench: timestamps after the snapshot cutoff, strictly increasing over the run (so
    each customer's events are in time order whichever caller sends them)."""

    def __init__(self, snapshot: Any, seed: int = 12) -> None:
        from tenure.v1 import events_pb2

        self.pb = events_pb2
        self.rng = random.Random(seed)
        self.products = [str(x) for x in snapshot.catalog.index]
        self.channels = list(snapshot.space.channels) or ["web"]
        self.t = snapshot.cutoff.timestamp() + DAY
        self.n = 0

    def order(self, cid: str) -> Any:
        self.n += 1
        self.t += 1.0
        rng = self.rng
        lines = [self.pb.EventLine(product_id=rng.choice(self.products), category="", quantity=float(rng.randint(1, 3)),
                                   amount=round(rng.uniform(4.0, 80.0), 2)) for _ in range(rng.randint(1, 3))]
        return self.pb.Event(event_id=f"rt-{self.n}", customer_id=cid, timestamp=self.t,
                             order=self.pb.OrderEvent(order_id=f"o-{self.n}", channel=rng.choice(self.channels),
                                                      lines=lines))


class Reference:
    """onnxruntime in this process on the churn and lookalike artifact files (1 thread)."""

    def __init__(self, repo: Path, feature_names: list[str]) -> None:
        import onnxruntime as ort

        from tenure.artifacts import latest_valid

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        self.runs = []
        for name in ("churn", "lookalike"):
            vdir, manifest = latest_valid(repo, name)
            sess = ort.InferenceSession(str(vdir / "model.onnx"), opts, providers=["CPUExecutionProvider"])
            cols = np.array([feature_names.index(f) for f in manifest.features])
            self.runs.append((sess, cols))

    def __call__(self, row: np.ndarray) -> tuple[float, float]:
        X = np.asarray(row, np.float32).reshape(1, -1)
        c, lk = (float(s.run(["probabilities"], {"features": np.ascontiguousarray(X[:, cols])})[0][0, 1])
                 for s, cols in self.runs)
        return c, lk

    def limit(self, row: np.ndarray, secs: float = 2.0) -> dict[str, float]:
        """p50/p99 (ms) of both models on one row, called back to back (the in-process limit of a Score)."""
        lat: list[float] = []
        end = time.perf_counter() + secs
        while time.perf_counter() < end or len(lat) < 100:
            t0 = time.perf_counter()
            self(row)
            lat.append(time.perf_counter() - t0)
        ms = np.array(lat) * 1e3
        return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "calls": len(lat)}


def close(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return all(abs(x - y) <= 1e-6 + 1e-5 * abs(y) for x, y in zip(a, b))


# -------------------------------------------------------------- the run


class Realtime:
    def __init__(self, a: argparse.Namespace, p: Paths) -> None:
        self.a, self.p = a, p
        self.out: dict[str, Any] = {"targets": TARGETS, "results": {}, "checks": {}, "notes": []}
        self.servers: list[Server] = []
        self.work = p.cache / "realtime"
        self.foreign = ForeignCpu(interval_s=1.0)

    # plumbing ------------------------------------------------------------------
    def start_scoring(self, name: str, cores: str, online_store: str) -> tuple[Server, str]:
        from services.demo import wait_serving

        port = free_port()
        target = f"127.0.0.1:{port}"
        srv = Server(name, [self.p.py, "-m", "tenure.cli", "serve", "scoring", "--port", str(port), "--models",
                            str(self.repo), "--ort-threads", "1"], self.p.logs / f"realtime-{name}.log", cores=cores,
                     env={"TENURE_ONLINE_STORE": online_store, "PYTHONWARNINGS": "ignore"}, cwd=self.p.root)
        srv.start()
        self.servers.append(srv)
        t0 = time.perf_counter()
        try:
            wait_serving(target, 180, srv.proc)
        except Exception as err:
            raise RuntimeError(f"{name} did not start: {err}; log {srv.log_path}: {srv.log_tail(6)}") from err
        log(f"{name} ready on {target} after {time.perf_counter() - t0:.1f}s (pid {srv.pid}, core {cores}, "
            f"online store {online_store or 'embedded'})")
        return srv, target

    def start_redis(self) -> str:
        import redis

        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        d = self.work / "redis"
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        sock = d / "redis.sock"
        srv = Server("redis", [exe, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700", "--save", "",
                               "--appendonly", "no", "--dir", str(d)], self.p.logs / "realtime-redis.log",
                     cores=self.a.redis_cores or None)
        srv.start()
        self.servers.append(srv)
        self.redis = srv
        url = f"unix://{sock}"
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 30
        while True:
            if not srv.alive():
                raise RuntimeError(f"redis-server exited: {srv.log_tail(4)}")
            try:
                if client.ping():
                    break
            except (redis.ConnectionError, FileNotFoundError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()
        log(f"redis-server ready on {url} (pid {srv.pid}, cores {self.a.redis_cores or 'any'})")
        return url

    @staticmethod
    def tree_cpu(srv: Server) -> Callable[[], float]:
        return lambda: sum(cpu_seconds(p) for p in srv.tree())

    def stop_all(self) -> None:
        if self.foreign._thread.is_alive():
            self.foreign.stop()
        for srv in reversed(self.servers):
            srv.stop(10)
        self.servers.clear()

    # phases --------------------------------------------------------------------
    def run(self) -> None:
        import grpc

        from services.core.events import to_event
        from tenure.online import OnlineFeatures
        from tenure.store import FeatureSnapshot
        from tenure.v1 import events_pb2_grpc, scoring_pb2_grpc

        self.p.logs.mkdir(parents=True, exist_ok=True)
        self.repo = ensure_repo(self.p)
        snap = FeatureSnapshot.load_latest(self.repo)
        self.snapshot = snap
        self.ref = Reference(self.repo, list(snap.feature_names))
        os.sched_setaffinity(0, {int(INGEST_CORE)} if ncpus() > 1 else os.sched_getaffinity(0))
        self.foreign.start()
        url = self.start_redis()
        A, ta = self.start_scoring("scoring-A", INGEST_CORE, url)
        B, tb = self.start_scoring("scoring-B", SCORE_CORE, url)
        C, tc = self.start_scoring("scoring-C-embedded", SCORE_CORE, "")
        _, td = self.start_scoring("scoring-D-control", INGEST_CORE, "")  # ingests beside A, its own store
        self.control = td
        chans = {t: grpc.insecure_channel(t) for t in (ta, tb, tc)}
        ingest = {t: events_pb2_grpc.EventServiceStub(ch) for t, ch in chans.items()}
        scoring = {t: scoring_pb2_grpc.ScoringServiceStub(ch) for t, ch in chans.items()}
        self.to_event = to_event
        # mirrors: this process's own online features, fed every event the servers get
        mirror = OnlineFeatures.open(snap, snap.version_dir, "", 3600)
        mirror_c = OnlineFeatures.open(snap, snap.version_dir, "", 3600)
        orders = Orders(snap)
        ids = [str(x) for x in snap.customer_ids]
        rng = random.Random(5)
        rng.shuffle(ids)
        lat_ids, lat_c_ids, steady_ids, bulk_ids = ids[:LATENCY_SAMPLES], ids[LATENCY_SAMPLES:2 * LATENCY_SAMPLES], \
            ids[2 * LATENCY_SAMPLES:2 * LATENCY_SAMPLES + 300], ids[2 * LATENCY_SAMPLES + 300:]
        try:
            for mode in ("IngestEvents", "StreamIngestEvents"):
                self.phase_ingest(mode, A, ta, bulk_ids, orders, mirror, url)
            self.phase_latency("redis", ingest[ta], scoring[tb], lat_ids, orders, mirror)
            self.phase_latency("embedded", ingest[tc], scoring[tc], lat_c_ids, orders, mirror_c)
            self.phase_interference(A, ta, B, tb, lat_ids[0], steady_ids, orders, mirror)
        finally:
            for ch in chans.values():
                ch.close()
            mirror.close()
            mirror_c.close()

    def _batches(self, customers: list[str], orders: Orders, n: int) -> list[list[Any]]:
        """n events over the customers, as SENDERS lists of requests (a customer's events all in one list)."""
        from tenure.v1 import events_pb2

        per: list[list[Any]] = [[] for _ in range(SENDERS)]
        for _ in range(n):
            k = orders.rng.randrange(len(customers))
            per[k % SENDERS].append(orders.order(customers[k]))
        return [[events_pb2.IngestEventsRequest(events=evs[i:i + BATCH]) for i in range(0, len(evs), BATCH)]
                for evs in per]

    def phase_ingest(self, mode: str, A: Server, ta: str, customers: list[str], orders: Orders, mirror: Any,
                     url: str) -> None:
        import grpc

        from tenure.online import OnlineFeatures
        from tenure.v1 import events_pb2_grpc

        log(f"ingest via {mode}: building {INGEST_EVENTS:,} order events")
        per = self._batches(customers, orders, INGEST_EVENTS)
        got: list[Any] = []
        errors: list[str] = []

        def send(reqs: list[Any]) -> None:
            with grpc.insecure_channel(ta) as ch:
                stub = events_pb2_grpc.EventServiceStub(ch)
                try:
                    if mode == "IngestEvents":
                        got.extend(stub.IngestEvents(r, timeout=60) for r in reqs)
                    else:
                        got.append(stub.StreamIngestEvents(iter(reqs), timeout=120))
                except grpc.RpcError as err:
                    errors.append(f"{err.code()}: {err.details()}")

        # warm-up: one small batch (connections, first Redis calls)
        cpu = self.tree_cpu(A)
        cpu0, r0, t0 = cpu(), cpu_seconds(self.redis.pid), time.perf_counter()
        threads = [threading.Thread(target=send, args=(reqs,)) for reqs in per]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall, server_s, redis_s = time.perf_counter() - t0, cpu() - cpu0, cpu_seconds(self.redis.pid) - r0
        applied = sum(r.applied for r in got)
        rejected = sum(r.rejected for r in got)
        # the answers: sampled customers' rows in Redis == this process's rows from the same events
        for reqs in per:
            for r in reqs:
                mirror.ingest([self.to_event(e) for e in r.events])
        touched = sorted({e.customer_id for reqs in per for r in reqs for e in r.events})
        sample = random.Random(1).sample(touched, min(200, len(touched)))
        shared = OnlineFeatures.open(self.snapshot, self.snapshot.version_dir, url, 3600)
        try:
            theirs = shared.vectors(sample)
        finally:
            shared.close()
        ours = mirror.vectors(sample)
        equal = sorted(theirs) == sorted(ours) == list(range(len(sample))) and all(
            np.array_equal(theirs[i], ours[i]) for i in ours)
        ok = not errors and applied == INGEST_EVENTS and rejected == 0 and equal
        res = {"mode": mode, "events": INGEST_EVENTS, "batch": BATCH, "callers": SENDERS, "wall_s": round(wall, 3),
               "events_s": INGEST_EVENTS / wall, "server_cpu_s": round(server_s, 3),
               "events_per_cpu_s": INGEST_EVENTS / max(server_s, 1e-9), "redis_cpu_s": round(redis_s, 3),
               "server_cpu_us_per_event": server_s / INGEST_EVENTS * 1e6, "applied": applied, "rejected": rejected,
               "rows_checked": len(sample), "rows_equal": equal, "errors": errors[:3], "ok": ok}
        self.out["results"][f"ingest {mode}"] = res
        log(f"ingest {mode}: {res['events_s']:,.0f} events/s wall, {res['events_per_cpu_s']:,.0f} events per server "
            f"CPU second ({res['server_cpu_us_per_event']:.0f} us/event; Redis {redis_s / INGEST_EVENTS * 1e6:.0f} "
            f"us/event), applied {applied:,}/{INGEST_EVENTS:,}, {len(sample)} rows equal: {equal}")

    def phase_latency(self, store: str, ingest: Any, scoring: Any, customers: list[str], orders: Orders,
                      mirror: Any) -> None:
        from tenure.v1 import common_pb2, events_pb2, scoring_pb2

        def answer(cid: str) -> tuple[float, float]:
            r = scoring.Score(scoring_pb2.ScoreRequest(customers=[common_pb2.CustomerRef(customer_id=cid)]),
                              timeout=10).results[0]
            return r.scores.churn_probability, r.scores.lookalike_score

        lat, wrong, unchanged, polls = [], 0, 0, []
        for cid in customers:
            before = answer(cid)
            ev = orders.order(cid)
            req = events_pb2.IngestEventsRequest(events=[ev])
            t0 = time.perf_counter()
            resp = ingest.IngestEvents(req, timeout=10)
            n = 0
            while True:
                now = answer(cid)
                n += 1
                if now != before or time.perf_counter() - t0 > 5.0:
                    break
            dt = time.perf_counter() - t0
            mirror.ingest([self.to_event(ev)])
            expected = self.ref(mirror.vector(cid))
            if now == before:
                unchanged += 1
                wrong += not close(now, expected)  # an event that does not move the scores: right if so
                continue
            lat.append(dt)
            polls.append(n)
            wrong += resp.applied != 1 or not close(now, expected)
        ms = np.array(lat) * 1e3 if lat else np.array([np.nan])
        target = TARGETS[f"{store}_p99_ms"]
        res: dict[str, Any] = {"store": store, "samples": len(customers), "changed": len(lat), "unchanged": unchanged,
               "wrong": wrong, "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
               "max_ms": float(ms.max()), "mean_polls": float(np.mean(polls)) if polls else 0.0,
               "path": "IngestEvents on replica A, Score on replica B" if store == "redis"
               else "IngestEvents and Score on replica C (embedded store)"}
        res["ok"] = wrong == 0 and res["p99_ms"] <= target
        self.out["results"][f"latency {store}"] = res
        log(f"event -> changed answer ({store}): p50 {res['p50_ms']:.2f} ms, p99 {res['p99_ms']:.2f} ms "
            f"({len(lat)} changed, {unchanged} unchanged, {wrong} wrong)")

    def phase_interference(self, A: Server, ta: str, B: Server, tb: str, cid: str, steady_ids: list[str],
                           orders: Orders, mirror: Any) -> None:
        import grpc

        from tenure.v1 import common_pb2, events_pb2, events_pb2_grpc, scoring_pb2

        body = scoring_pb2.ScoreRequest(customers=[common_pb2.CustomerRef(customer_id=cid)]).SerializeToString()
        frame = self.work / "score_frame.bin"
        frame.write_bytes(b"\x00" + struct.pack(">I", len(body)) + body)
        with grpc.insecure_channel(tb) as ch:
            raw = ch.unary_unary(SCORE, request_serializer=None, response_deserializer=None)(body, timeout=10)
            got = scoring_pb2.ScoreResponse.FromString(raw).results[0]
        expect = len(raw) + 5
        row = mirror.vector(cid)
        assert row is not None, "the scored customer has an online row (the latency phase ordered for them)"
        answer_ok = close((got.scores.churn_probability, got.scores.lookalike_score), self.ref(row))
        self.out["checks"]["interference Score answer"] = {"customer_id": cid, "ok": answer_ok,
                                                           "online_row": True}
        # the steady ingest: batches of 100 every 100 ms into replica A (the other replica), paced
        stop = threading.Event()
        sent = {"events": 0, "applied": 0, "secs": 0.0}
        pending: list[Any] = []

        def steady(target: str) -> None:
            per_batch = 100
            with grpc.insecure_channel(target) as ch:
                stub = events_pb2_grpc.EventServiceStub(ch)
                t0 = time.perf_counter()
                k = 0
                while not stop.is_set():
                    evs = [orders.order(steady_ids[orders.rng.randrange(len(steady_ids))]) for _ in range(per_batch)]
                    r = stub.IngestEvents(events_pb2.IngestEventsRequest(events=evs), timeout=30)
                    if target == ta:  # the control replica's events do not reach the shared store
                        pending.extend(evs)
                    sent["events"] += len(evs)
                    sent["applied"] += r.applied
                    k += 1
                    wait = t0 + k * per_batch / STEADY_RATE - time.perf_counter()
                    if wait > 0:
                        stop.wait(wait)
                sent["secs"] = time.perf_counter() - t0

        inproc = self.inproc_limit(row)
        runs: dict[str, list[dict[str, Any]]] = {}
        for rnd in range(self.a.rounds):
            for label in ("idle", "ingesting", "control"):
                th = None
                if label != "idle":
                    stop.clear()
                    th = threading.Thread(target=steady, args=(ta if label == "ingesting" else self.control,),
                                          daemon=True)
                    th.start()
                for conc in (1, 16):
                    self.foreign.mark("h2")
                    t0 = time.perf_counter()
                    r = h2.run(tb, SCORE, str(frame), expect, conc, 1, self.a.dur, 1.0, SCORE_CORE, self.tree_cpu(B))
                    share = self.foreign.close("h2") / max((time.perf_counter() - t0) * ncpus(), 1e-9)
                    r.update(label=label, round=rnd + 1, foreign_cpu_share=round(share, 3))
                    runs.setdefault(f"{label} c={conc}", []).append(r)
                    log(f"Score on B {label:9s} c={conc:2d} round {rnd + 1}: {r['req_s']:8,.0f} req/s p50 "
                        f"{r['p50_ms']:.3f} p99 {r['p99_ms']:.3f} ms errors {r['errors']} (other processes: "
                        f"{share:.0%} of the box)")
                if th is not None:
                    stop.set()
                    th.join()
        for i in range(0, len(pending), BATCH):
            mirror.ingest([self.to_event(e) for e in pending[i:i + BATCH]])
        res: dict[str, Any] = {"customer_id": cid, "inproc": inproc, "steady_events": sent["events"],
                               "steady_applied": sent["applied"], "runs": runs,
                               "ingest": f"{STEADY_RATE:,} events/s (batches of 100) into replica A, the other "
                                         "replica sharing the Redis"}
        for conc in (1, 16):
            idle = float(np.median([r["p99_ms"] for r in runs[f"idle c={conc}"]]))
            busy = float(np.median([r["p99_ms"] for r in runs[f"ingesting c={conc}"]]))
            control = float(np.median([r["p99_ms"] for r in runs[f"control c={conc}"]]))
            errs = sum(r["errors"] for k in (f"idle c={conc}", f"ingesting c={conc}") for r in runs[k])
            res[f"c={conc}"] = {"idle_p99_ms": idle, "ingesting_p99_ms": busy, "ratio": busy / idle,
                                "control_p99_ms": control, "ingesting_vs_control": busy / control,
                                "idle_vs_inproc": idle / inproc["p99_ms"], "ingesting_vs_inproc": busy / inproc["p99_ms"],
                                "errors": errs, "rounds": len(runs[f"idle c={conc}"]),
                                "foreign_cpu_share": float(np.mean([r["foreign_cpu_share"] for k in (
                                    f"idle c={conc}", f"ingesting c={conc}") for r in runs[k]])),
                                "ok": busy / idle <= TARGETS["interference"] and errs == 0 and answer_ok}
        self.out["results"]["interference"] = res

    def inproc_limit(self, row: np.ndarray) -> dict[str, float]:
        """The in-process limit, on B's core, with this process moved there for the measurement."""
        before = os.sched_getaffinity(0)
        if ncpus() > 1:
            os.sched_setaffinity(0, {int(SCORE_CORE)})
        try:
            self.ref.limit(row, 0.5)  # warm
            res = self.ref.limit(row, 2.0)
        finally:
            os.sched_setaffinity(0, before)
        log(f"in-process onnxruntime churn + lookalike on the same row (1 thread, core {SCORE_CORE}): "
            f"p50 {res['p50_ms']:.3f} ms, p99 {res['p99_ms']:.3f} ms")
        return res


# -------------------------------------------------------------- the report


def report(out: dict[str, Any]) -> str:
    R = out["results"]
    mark = {True: "PASS", False: "MISS"}
    lines = [f"# Tenure real-time benchmark ({out['date']}, {out['machine']})", "",
             "| measurement | result | target | verdict |", "|---|---|---|---|"]
    for mode in ("IngestEvents", "StreamIngestEvents"):
        r = R.get(f"ingest {mode}")
        if r is None:
            continue
        ok = r["ok"] and r["events_per_cpu_s"] >= TARGETS["ingest_per_core"]
        why = "" if r["ok"] else " (wrong answer: " + ("rows differ" if not r["rows_equal"] else
                                                        f"applied {r['applied']}/{r['events']} {r['errors']}") + ")"
        lines.append(f"| ingest via {mode} (Redis, batches of {r['batch']}, {r['callers']} callers) | "
                     f"**{r['events_per_cpu_s']:,.0f} events/s per core** ({r['server_cpu_us_per_event']:.0f} us of "
                     f"server CPU per event; {r['events_s']:,.0f} events/s wall; Redis "
                     f"{r['redis_cpu_s'] / r['events'] * 1e6:.0f} us/event){why} | >= 5,000/s per core | {mark[ok]} |")
    for store in ("redis", "embedded"):
        r = R.get(f"latency {store}")
        if r is None:
            continue
        lines.append(f"| event -> changed Score, {store} ({r['path']}) | p50 {r['p50_ms']:.2f} ms, "
                     f"**p99 {r['p99_ms']:.2f} ms** ({r['changed']} events, {r['wrong']} wrong answers, "
                     f"{r['unchanged']} unchanged) | p99 <= {TARGETS[f'{store}_p99_ms']:,.0f} ms | {mark[r['ok']]} |")
    r = R.get("interference")
    if r is not None:
        ip = r["inproc"]
        for conc in (1, 16):
            x = r[f"c={conc}"]
            lines.append(f"| Score p99 on replica B, c={conc}: idle vs while A ingests {STEADY_RATE:,}/s | "
                         f"{x['idle_p99_ms']:.3f} ms vs {x['ingesting_p99_ms']:.3f} ms = **{x['ratio']:.2f}x** "
                         f"({x['idle_vs_inproc']:.1f}x / {x['ingesting_vs_inproc']:.1f}x the in-process p99 "
                         f"{ip['p99_ms']:.3f} ms; median of {x['rounds']} rounds; other processes used "
                         f"{x['foreign_cpu_share']:.0%} of the box; control: {x['control_p99_ms']:.3f} ms while "
                         f"replica D ingests the same rate into its own embedded store, ingesting/control "
                         f"{x['ingesting_vs_control']:.2f}x) | <= 1.2x | {mark[x['ok']]} |")
    lines += ["", f"In-process limit: onnxruntime churn + lookalike on the scored customer's online row, 1 thread, "
              f"p50 {r['inproc']['p50_ms']:.3f} ms, p99 {r['inproc']['p99_ms']:.3f} ms." if r else ""]
    lines += [f"- {n}" for n in out["notes"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("BENCH_OUT", "bench/out"))
    ap.add_argument("--cache", default=None)
    ap.add_argument("--dur", type=float, default=float(os.environ.get("DUR", 5)), help="seconds per h2load run")
    ap.add_argument("--rounds", type=int, default=3, help="idle/ingesting alternations (the median p99 counts)")
    ap.add_argument("--redis-cores", default=INGEST_CORE, help="taskset cores of redis-server ('' for any)")
    ap.add_argument("--build", default="", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.build:
        _build(Path(a.build))
        return
    p = Paths.make(a.cache, a.out)
    if not h2.available():
        sys.exit("h2load is not installed (apt-get install nghttp2-client)")
    bench = Realtime(a, p)
    t0 = time.perf_counter()
    bench.out.update(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     machine=f"{ncpus()}-core {platform.machine()} {platform.system()}", cpus=ncpus())
    if ncpus() < 2:
        bench.out["notes"].append("one core only: nothing is pinned, every process shares it")
    try:
        bench.run()
    except Exception as err:
        bench.out["notes"].append(f"the run stopped early: {type(err).__name__}: {err}")
        log(f"FAILED: {err!r}")
    finally:
        bench.stop_all()
    bench.out["secs"] = round(time.perf_counter() - t0, 1)
    bench.out["notes"].append(
        f"Pinning: replica A (ingests) and this harness on core 0, redis-server on cores {a.redis_cores or 'any'}; "
        "replica D (control) on core 0; replica B (scores), replica C "
        "(embedded store) and h2load on core 1. Events/s per core = events / replica A's CPU seconds (/proc, "
        "its process tree) while ingesting; Redis's own CPU is shown apart.")
    bench.out["notes"].append(f"run took {bench.out['secs']:.0f}s")
    p.out.mkdir(parents=True, exist_ok=True)
    (p.out / "realtime.json").write_text(json.dumps(bench.out, indent=1, default=float))
    text = report(bench.out)
    (p.out / "realtime.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
