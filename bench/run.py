"""`make bench` / `python -m bench`: one run, every system, one table. See bench/README.md.

Phases (each one's failure is recorded and the run goes on; --only picks a subset):
  prepare   h2load, peer venvs (background), benchmark model, Tenure model repository, frames
  inproc    onnxruntime in-process: bench model 1 thread (pinned) and 2 threads, churn model
  baseline  the peers' bare grpc.aio handler (shared/bench/peers/baseline_server.py): "bare aio", a peer
  mlserver  MLServer 1.7.1 tuned, the peers' custom onnxruntime runtime
  pytriton  PyTriton 0.7.0, dynamic batching (max queue delay 0 us)
  yardstick bench/yardsticks.py: threaded grpcio echo (transport ceiling) and bare handler (ORT inline),
            Tenure's server type; they stay up through the tenure phase for the A/B repeats
  tenure    Tenure scoring + recommendation, 1 worker pinned: ModelInfer, Score, Predict, Recommend,
            StreamScore, A/B repeats of close targets, then the soak (unpinned)
  workers   Tenure scoring with --workers 2 (unpinned) vs the pinned 1 worker
  rescore   `python -m bench.rescore --customers N --json` (segmentation re-scoring, 1M customers)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench import h2, prepare, report
from bench.prepare import Paths, log
from bench.procs import CLIENT_CORE, SERVER_CORE, ForeignCpu, Server, cpu_seconds, free_port, ncpus, pin

MODELINFER = "/inference.GRPCInferenceService/ModelInfer"
SCORE = "/tenure.v1.ScoringService/Score"
PREDICT = "/tenure.v1.ScoringService/Predict"
RECOMMEND = "/tenure.v1.RecommendationService/Recommend"
CONC_1ROW = (1, 16, 64)
CONC_1024 = (1, 16)  # Tenure; the peers run 1024 rows at c=1 only (bench time)
CONC_1024_PEERS = (1,)
ECHO, BARE_T = "echo (threaded)", "bare (threaded)"
REL_TOL = 1e-5  # answer checks: relative tolerance against the models in-process
PIN_1W = f"server core {SERVER_CORE}, client core {CLIENT_CORE}"
UNPINNED = "unpinned (server and h2load share both cores)"
PHASES = ("inproc", "baseline", "mlserver", "pytriton", "yardstick", "tenure", "workers", "rescore")


def env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


class Bench:
    def __init__(self, a: argparse.Namespace, p: Paths) -> None:
        self.a, self.p = a, p
        self.rows: list[dict[str, Any]] = []
        self.inproc: list[dict[str, Any]] = []
        self.checks: dict[str, Any] = {}
        self.skipped: list[dict[str, str]] = []
        self.notes: list[str] = []
        self.rss: dict[str, Any] = {}
        self.soak: dict[str, Any] = {}
        self.phase_s: dict[str, float] = {}
        self.foreign = ForeignCpu(interval_s=1.0)
        self.foreign_phase: dict[str, float] = {}
        self.servers: list[Server] = []
        self.ref: np.ndarray | None = None
        self.use_h2 = True
        self.kserve: Any = None
        self.soak_frames: dict[str, tuple[str, int]] = {}
        self.by_target: dict[str, Server] = {}
        self.yard: dict[str, tuple[str, dict[int, tuple[str, int]]]] = {}
        """mode -> (target, rows -> (frame, reply bytes)) of the yardsticks still running."""
        self.repeats: dict[str, Any] = {}
        self.rescore: dict[str, Any] = {}
        self.t0 = time.perf_counter()

    # -------------------------------------------------------------- plumbing
    def skip(self, what: str, why: str) -> None:
        log(f"SKIP {what}: {why}")
        self.skipped.append({"what": what, "why": why})

    def client(self, *args: str, timeout: float = 120, cores: str | None = CLIENT_CORE) -> dict[str, Any]:
        """Run `python -m bench.client ARGS` (pinned to the client core); its JSON result."""
        cmd = pin(cores) + [self.p.py, "-m", "bench.client", *args]
        env = dict(os.environ, KSERVE_GEN_DIR=str(self.p.gen), PYTHONWARNINGS="ignore")
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.p.root, env=env)
        except subprocess.TimeoutExpired:
            return {"ok": False, "reason": f"client {args[0]} timed out after {timeout:.0f}s"}
        for line in reversed(r.stdout.strip().splitlines()):
            if line.startswith("{"):
                return dict(json.loads(line))
        return {"ok": False, "reason": f"client {args[0]} exit {r.returncode}: {r.stderr.strip()[-500:]}"}

    def start_server(self, name: str, cmd: list[str], cores: str | None, wait: tuple[str, str],
                     timeout_s: float, env: dict[str, str] | None = None, cwd: Path | None = None,
                     target: str = "") -> Server | None:
        """Start, then wait until healthy ('health', service) or until models are ready ('kserve', a,b)."""
        srv = Server(name, cmd, self.p.logs / f"{name}.log", cores=cores, env=env, cwd=cwd or self.p.root)
        with open(srv.log_path, "ab") as f:
            f.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(srv.cmd)}\n".encode())
        srv.start()
        self.servers.append(srv)
        t0 = time.perf_counter()
        kind, what = wait
        args = ["wait", "--target", target, "--kind", kind, "--timeout-s", str(timeout_s)]
        args += {"health": ["--service", what], "call": ["--frame", what]}.get(kind, ["--models", what])
        res = self.wait_ready(srv, args, timeout_s + 30)
        if not res.get("ok"):
            why = res.get("reason", "not ready")
            if not srv.alive():
                why = f"exited with {srv.proc.returncode if srv.proc else '?'} before it was ready"
            self.skip(name, f"{why}; log {srv.log_path}: " + srv.log_tail(4).replace("\n", " | "))
            self.stop(srv)
            return None
        self.by_target[target] = srv
        log(f"{name} ready on {target} after {time.perf_counter() - t0:.1f}s (pid {srv.pid}, "
            f"{'cores ' + cores if cores else 'unpinned'})")
        return srv

    def wait_ready(self, srv: Server, args: list[str], timeout_s: float) -> dict[str, Any]:
        """bench.client wait, given up as soon as the server process exits."""
        cmd = [self.p.py, "-m", "bench.client", *args]
        env = dict(os.environ, KSERVE_GEN_DIR=str(self.p.gen), PYTHONWARNINGS="ignore")
        w = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=self.p.root, env=env)
        deadline = time.monotonic() + timeout_s
        while w.poll() is None and srv.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        if w.poll() is None:
            w.kill()
            w.wait()
            return {"ok": False, "reason": "server exited" if not srv.alive() else f"not ready after {timeout_s:.0f}s"}
        out = w.stdout.read() if w.stdout else ""
        for line in reversed(out.strip().splitlines()):
            if line.startswith("{"):
                return dict(json.loads(line))
        return {"ok": False, "reason": f"wait exit {w.returncode}"}

    def stop(self, srv: Server | None) -> None:
        if srv is None:
            return
        code = srv.stop()
        log(f"{srv.name} stopped (exit {code})")
        if srv in self.servers:
            self.servers.remove(srv)

    def write_frame(self, name: str, body: bytes) -> str:
        self.p.frames.mkdir(parents=True, exist_ok=True)
        path = self.p.frames / f"{name}.bin"
        path.write_bytes(b"\x00" + struct.pack(">I", len(body)) + body)
        return str(path)

    def modelinfer_frame(self, name: str, model: str, rows: int, output: str | None) -> str:
        if self.kserve is None:
            sys.path.insert(0, str(self.p.gen))
            import kserve_v2_pb2

            self.kserve = kserve_v2_pb2
        pb = self.kserve
        X = np.load(self.p.model / "bench_X.npy", mmap_mode="r")
        req = pb.ModelInferRequest(model_name=model)
        t = req.inputs.add()
        t.name, t.datatype = "input", "FP32"
        t.shape.extend([rows, X.shape[1]])
        req.raw_input_contents.append(np.ascontiguousarray(X[:rows], dtype="<f4").tobytes())
        if output:
            req.outputs.add().name = output
        return self.write_frame(f"{name}_{rows}", req.SerializeToString())

    def load(self, target: str, path: str, frame: str, expect: int, conc: int, conns: int,
             cores: str | None, server_cpu: Callable[[], float] | None = None) -> dict[str, Any]:
        if self.use_h2:
            return h2.run(target, path, frame, expect, conc, conns, self.a.dur, self.a.warm, cores, server_cpu)
        return self.client("load", "--target", target, "--path", path, "--frame", frame, "--conc", str(conc),
                           "--conns", str(conns), "--dur", str(self.a.dur), "--warm", str(self.a.warm),
                           timeout=self.a.dur + self.a.warm + 90, cores=cores)

    def measure(self, system: str, mode: str, kind: str, target: str, path: str, frame: str, expect: int,
                rows: int, conc: int, conns: int = 1, pin_label: str = PIN_1W, cores: str | None = CLIENT_CORE,
                threads: int = 1, workers: int = 1, note: str = "",
                server_cpu: Callable[[], float] | None = None) -> dict[str, Any] | None:
        srv = self.by_target.get(target)
        if server_cpu is None and srv is not None:
            server_cpu = self.tree_cpu(srv)
        t0 = self.foreign_mark("measure")
        try:
            r = self.load(target, path, frame, expect, conc, conns, cores, server_cpu)
        except Exception as err:  # noqa: BLE001  (one failed measurement must not end the run)
            self.skip(f"{system} {mode} c={conc} rows={rows}", f"load generator failed: {err}")
            return None
        finally:
            share = self.foreign_share("measure", t0)
        if "req_s" not in r:
            self.skip(f"{system} {mode} c={conc} rows={rows}", r.get("reason", "no result"))
            return None
        rec = {"system": system, "mode": mode, "kind": kind, "pin": pin_label, "rows": rows, "threads": threads,
               "workers": workers, **r, "rows_s": r["req_s"] * rows, "note": note, "foreign_cpu_share": share}
        if r.get("server_cpu_s"):
            rec["req_per_cpu_s"] = r["requests"] / r["server_cpu_s"]
        self.rows.append(rec)
        log(f"{system:10s} {mode:34s} c={conc:3d}/{conns:2d}conn rows={rows:5d} req/s={r['req_s']:9,.0f} "
            f"rows/s={rec['rows_s']:11,.0f} p50={r['p50_ms']:7.2f} p99={r['p99_ms']:7.2f} "
            f"p99.9={r['p999_ms']:7.2f} ms err={r['errors']}"
            + (f"  (other processes took {share:.0%} of the box)" if share >= 0.05 else ""))
        return rec

    @staticmethod
    def tree_cpu(srv: Server) -> Callable[[], float]:
        return lambda: sum(cpu_seconds(p) for p in srv.tree())

    def foreign_mark(self, name: str) -> float:
        self.foreign.mark(name)
        return time.perf_counter()

    def foreign_share(self, name: str, t0: float) -> float:
        """CPU share of the box used by processes outside the harness since foreign_mark(name)."""
        return self.foreign.close(name) / max((time.perf_counter() - t0) * ncpus(), 1e-9)

    # -------------------------------------------------------------- KServe systems
    def check_modelinfer(self, label: str, target: str, frame: str, rows: int,
                         compare: bool = True) -> dict[str, Any] | None:
        res = self.client("check", "--target", target, "--frame", frame, "--kind", "modelinfer")
        if not res.get("ok"):
            self.skip(f"{label} ModelInfer rows={rows}",
                      f"check call failed: {res.get('code', '')} {res.get('details') or res.get('reason', '')}")
            return None
        got = np.asarray(res.get("prob1", []), np.float64)
        n = min(len(got), rows, 1024)
        diff = float(np.abs(got[:n] - self.ref[:n]).max()) if self.ref is not None and n and compare else None
        chk: dict[str, Any] = {"outputs": res.get("outputs"), "resp_bytes": res["resp_bytes"],
                               "max_abs_diff_vs_inproc": diff, "rows_checked": n, "ok": True}
        if not compare:  # the echo yardstick: a fixed reply of the right shape and size
            chk["ok"] = [o.get("shape") for o in res.get("outputs") or []] == [[1, 2]]
            chk["why"] = "" if chk["ok"] else f"expected one [1,2] output, got {res.get('outputs')}"
        elif diff is None:
            self.notes.append(f"{label}: ModelInfer rows={rows} answer not compared (no in-process reference)")
        elif n < rows or diff > 1e-4:
            chk["ok"] = False
            chk["why"] = f"ModelInfer rows={rows} differs from in-process ORT (max |diff| {diff:.2e}, {n} of {rows} rows)"
            self.notes.append(f"{label}: wrong answer: {chk['why']}")
        self.checks[f"{label} ModelInfer rows={rows}"] = chk
        return res

    def bench_kserve(self, system: str, mode: str, target: str, model: str, output: str | None,
                     slug: str) -> None:
        for rows, concs in ((1, CONC_1ROW), (1024, CONC_1024_PEERS)):
            frame = self.modelinfer_frame(slug, model, rows, output)
            chk = self.check_modelinfer(system, target, frame, rows)
            if chk is None:
                continue
            for c in concs:
                self.measure(system, mode, "modelinfer", target, MODELINFER, frame, chk["resp_bytes"], rows, c)

    # -------------------------------------------------------------- phases
    def phase_prepare(self) -> dict[str, prepare.VenvInstall]:
        p = self.p
        for d in (p.cache, p.logs, p.frames, p.out):
            d.mkdir(parents=True, exist_ok=True)
        if not p.peers.exists():
            self.skip("peers", f"{p.peers} not found (set TENURE_BENCH_PEERS)")
        why = prepare.ensure_h2load()
        if why:
            self.use_h2 = False
            self.notes.append(f"h2load unavailable ({why}): the Python grpc.aio client drives the unary "
                              "measurements and adds ~0.3 ms per request at c=1")
        installs: dict[str, prepare.VenvInstall] = {}
        wanted = {"mlserver": "mlserver", "pytriton": "pytriton"}
        for phase, name in wanted.items():
            if phase in self.a.only and p.peers.exists():
                installs[name] = prepare.VenvInstall(p, name).start()
        prepare.gen_protos(p)
        prepare.bench_model(p)
        if "tenure" in self.a.only or "workers" in self.a.only or "inproc" in self.a.only:
            try:
                prepare.tenure_repo(p)
            except Exception as err:  # noqa: BLE001
                self.skip("Tenure model repository", str(err))
        # no measurement may share the CPU with pip: wait for the installs here (they run beside the training)
        for inst in installs.values():
            inst.wait()
        return installs

    def phase_inproc(self) -> None:
        p = self.p
        secs = str(min(3.0, max(1.0, self.a.dur / 2)))
        ref = p.model / "ref_1024.npy"
        for threads, cores in ((1, SERVER_CORE), (2, None)):
            cmd = pin(cores) + [p.py, "-m", "bench.inproc", "bench", "--onnx", str(p.model / "model.onnx"),
                                "--X", str(p.model / "bench_X.npy"), "--threads", str(threads), "--secs", secs]
            if threads == 1:
                cmd += ["--ref-out", str(ref)]
            self._inproc(cmd, f"{threads} thread(s), {'core ' + cores if cores else 'both cores'}")
        if ref.exists():
            self.ref = np.load(ref)
        if (p.repo / "churn").exists():
            cmd = pin(SERVER_CORE) + [p.py, "-m", "bench.inproc", "churn", "--repo", str(p.repo), "--threads", "1",
                                      "--secs", secs, "--rows", str(self.a.stream_rows)]
            self._inproc(cmd, f"1 thread, core {SERVER_CORE}")
        else:
            self.skip("in-process churn model", f"no Tenure repository at {p.repo}")

    def _inproc(self, cmd: list[str], pin_label: str) -> None:
        t0 = self.foreign_mark("inproc")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=self.p.root)
        share = self.foreign_share("inproc", t0)
        got = [{**json.loads(ln), "foreign_cpu_share": share} for ln in r.stdout.splitlines() if ln.startswith("{")]
        if r.returncode != 0 or not got:
            self.skip(f"in-process {cmd[-1]}", f"exit {r.returncode}: {r.stderr[-400:]}")
        for g in got:
            g["pin"] = pin_label
            self.inproc.append(g)
            log(f"in-process {g['case']:16s} threads={g['threads']} batch={g['batch']:6d} "
                f"rows/s={g['rows_s']:11,.0f} p50={g['p50_us']:9.1f}us p99={g['p99_us']:9.1f}us")

    def phase_baseline(self) -> None:
        port = free_port()
        target = f"127.0.0.1:{port}"
        srv = self.start_server("bare-handler", [self.p.py, str(self.p.peers / "baseline_server.py"), "--port", str(port),
                                                 "--models", str(self.p.model)], SERVER_CORE, ("kserve", "churn-ort"),
                                60, env={"KSERVE_GEN_DIR": str(self.p.gen)}, target=target)
        if srv:
            try:
                self.bench_kserve("bare aio", "the peers' grpc.aio + ORT inline", target, "churn-ort", None, "bare")
            finally:
                self.stop(srv)

    def phase_mlserver(self, inst: prepare.VenvInstall | None) -> None:
        why = inst.wait() if inst else "not installed"
        if why or inst is None:
            self.skip("MLServer", why or "")
            return
        g, h, m = free_port(), free_port(), free_port()
        folder = prepare.mlserver_folder(self.p, g, h, m)
        mlserver = str(Path(inst.py).parent / "mlserver")
        target = f"127.0.0.1:{g}"
        srv = self.start_server("mlserver", [mlserver, "start", str(folder)], SERVER_CORE,
                                ("kserve", "churn-ort-custom"), 120, cwd=folder, target=target)
        if srv:
            try:
                self.bench_kserve("MLServer", "tuned, custom ORT runtime", target, "churn-ort-custom", None,
                                  "mlserver")
            finally:
                self.stop(srv)

    def phase_pytriton(self, inst: prepare.VenvInstall | None) -> None:
        why = inst.wait() if inst else "not installed"
        if why or inst is None:
            self.skip("PyTriton", why or "")
            return
        # the Python-backend stub links Debian's libpython but runs the venv's stdlib: point it at the
        # interpreter's own libpython (shared/bench/peers/RESULTS.md, surprise 7)
        libdir = subprocess.run([inst.py, "-c", "import sysconfig;print(sysconfig.get_config_var('LIBDIR'))"],
                                capture_output=True, text=True, timeout=60).stdout.strip()
        g = free_port(span=3) + 1  # PyTriton binds http = grpc-1 and metrics = grpc+1
        target = f"127.0.0.1:{g}"
        home = self.p.cache / "pytriton-home"  # its workspaces (a copy of tritonserver each), not ~/.cache/pytriton
        env = {"LD_LIBRARY_PATH": ":".join(x for x in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if x),
               "PYTRITON_HOME": str(home)}
        srv = self.start_server("pytriton", [inst.py, str(self.p.peers / "pytriton_server.py"), "--models",
                                             str(self.p.model), "--grpc-port", str(g)], SERVER_CORE,
                                ("kserve", "churn_onnx_db0"), 240, env=env, cwd=self.p.cache, target=target)
        if srv:
            try:
                self.bench_kserve("PyTriton", "dynamic batching, 0 us queue delay", target, "churn_onnx_db0", None,
                                  "pytriton")
            finally:
                self.stop(srv)
                for ws in home.glob("workspace_*"):  # left behind when it is killed rather than drained
                    shutil.rmtree(ws, ignore_errors=True)

    def phase_yardstick(self) -> None:
        """The threaded echo and bare servers (bench/yardsticks.py), pinned like Tenure; left running for
        the A/B repeats of the tenure phase (stopped after it)."""
        model = str(self.p.model / "model.onnx")
        frames = {rows: self.modelinfer_frame("tenure", "bench", rows, "probabilities") for rows in (1, 1024)}
        for mode, system, cases in (("echo", ECHO, ((1, CONC_1ROW),)), ("bare", BARE_T, ((1, CONC_1ROW), (1024, (1,))))):
            port = free_port()
            target = f"127.0.0.1:{port}"
            srv = self.start_server(f"yardstick-{mode}", [self.p.py, "-m", "bench.yardsticks", "--mode", mode, "--port",
                                                          str(port), "--model", model], SERVER_CORE,
                                    ("call", frames[1]), 60, target=target)
            if not srv:
                continue
            got: dict[int, tuple[str, int]] = {}
            for rows, concs in cases:
                chk = self.check_modelinfer(system, target, frames[rows], rows, compare=mode == "bare")
                if chk is None:
                    continue
                got[rows] = (frames[rows], chk["resp_bytes"])
                for c in concs:
                    self.measure(system, "threaded grpcio, Tenure's server type", "modelinfer", target, MODELINFER,
                                 frames[rows], chk["resp_bytes"], rows, c)
            self.rss[f"{srv.name}, after its runs"] = srv.rss()
            self.yard[mode] = (target, got)

    def stop_yardsticks(self) -> None:
        for mode, (target, _) in list(self.yard.items()):
            self.stop(self.by_target.get(target))
            del self.yard[mode]

    def ab_repeats(self, ts: str, mi: dict[int, tuple[str, int]] | None) -> None:
        """Targets whose ratio is within +-10 % of the threshold: alternating A/B pairs (Tenure, yardstick),
        >= 3, decided on the median ratio (report.target_rows uses res["repeats"])."""
        if not self.use_h2 or not self.yard:
            return
        frames: dict[str, tuple[str, str, int]] = {}
        if mi and 1 in mi:
            frames["ModelInfer"] = (MODELINFER, *mi[1])
        if "score" in self.soak_frames:
            frames["Score"] = (SCORE, *self.soak_frames["score"])
        res = {"rows": self.rows, "inprocess": self.inproc}
        for spec in report.ab_specs():
            key, what, conc, ymode, limit = spec["key"], spec["what"], spec["conc"], spec["mode"], spec["limit"]
            first = report.spec_ratio(res, spec)
            if first is None or what not in frames or ymode not in self.yard or abs(first / limit - 1) > 0.10:
                continue
            path, frame, expect = frames[what]
            ytarget, yframes = self.yard[ymode]
            ysrv, tsrv = self.by_target.get(ytarget), self.by_target.get(ts)
            if ysrv is None or tsrv is None or 1 not in yframes:
                continue
            pairs = []
            for _ in range(3):
                a = h2.run(ts, path, frame, expect, conc, 1, self.a.dur, self.a.warm, CLIENT_CORE, self.tree_cpu(tsrv))
                b = h2.run(ytarget, MODELINFER, yframes[1][0], yframes[1][1], conc, 1, self.a.dur, self.a.warm,
                           CLIENT_CORE, self.tree_cpu(ysrv))
                pairs.append({"tenure_req_s": a["req_s"], "yard_req_s": b["req_s"],
                              "ratio": a["req_s"] / b["req_s"] if b["req_s"] else None,
                              "tenure_errors": a["errors"], "yard_errors": b["errors"]})
                log(f"A/B {key}: Tenure {a['req_s']:,.0f} req/s, {ymode} {b['req_s']:,.0f} req/s, "
                    f"ratio {pairs[-1]['ratio'] or 0:.3f}")
            ratios = [q["ratio"] for q in pairs if q["ratio"] is not None]
            self.repeats[key] = {"first": first, "pairs": pairs,
                                 "median": float(np.median(ratios)) if ratios else None}

    def phase_rescore(self) -> None:
        if not (self.p.root / "bench" / "rescore.py").exists():
            self.skip("rescore", "bench/rescore.py is missing")
            return
        n = int(env_float("TENURE_BENCH_RESCORE_CUSTOMERS", 1_000_000))
        cmd = [self.p.py, "-m", "bench.rescore", "--customers", str(n), "--json"]
        t0 = self.foreign_mark("rescore-run")
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=self.p.root)
        except subprocess.TimeoutExpired:
            self.skip("rescore", "timed out after 900 s")
            return
        share = self.foreign_share("rescore-run", t0)
        got = next((json.loads(ln) for ln in reversed(r.stdout.strip().splitlines()) if ln.startswith("{")), None)
        if got is None:
            self.skip("rescore", f"exit {r.returncode}, no JSON: {r.stderr.strip()[-400:]}")
            return
        self.rescore = {**got, "cmd": " ".join(cmd[1:]), "exit": r.returncode, "foreign_cpu_share": share}
        log(f"rescore: {got.get('customers')} customers in {got.get('seconds')} s, peak RSS "
            f"{got.get('peak_rss_mib')} MiB, ok={got.get('ok')}")

    def tenure_cmd(self, service: str, port: int, workers: int = 1) -> list[str]:
        cmd = [self.p.py, "-m", "tenure.cli", "serve", service, "--port", str(port), "--models", str(self.p.repo),
               "--ort-threads", "1"]
        return cmd + (["--workers", str(workers)] if workers > 1 else [])

    def phase_tenure(self, do_workers: bool) -> None:
        p = self.p
        if not (p.repo / "churn").exists():
            self.skip("Tenure", f"no model repository at {p.repo} (see the prepare step above)")
            return
        help_text = subprocess.run([p.py, "-m", "tenure.cli", "serve", "--help"], capture_output=True, text=True,
                                   cwd=p.root, timeout=60).stdout
        has_workers = "--workers" in help_text
        try:
            from tenure.store import FeatureSnapshot

            ids = [str(x) for x in FeatureSnapshot.load_latest(p.repo).customer_ids[:100]]
        except Exception as err:  # noqa: BLE001
            self.skip("Tenure Score/Recommend", f"cannot read the feature snapshot: {err!r}")
            ids = []
        ps = free_port()
        pr = free_port()
        while pr == ps:
            pr = free_port()
        ts, tr = f"127.0.0.1:{ps}", f"127.0.0.1:{pr}"
        scoring = self.start_server("tenure-scoring", self.tenure_cmd("scoring", ps), SERVER_CORE, ("health", ""),
                                    180, target=ts)
        rec = self.start_server("tenure-recommendation", self.tenure_cmd("recommendation", pr), SERVER_CORE,
                                ("health", ""), 180, target=tr)
        try:
            mi = self.tenure_pinned(scoring, ts, rec, tr, ids)
            for srv in (scoring, rec):
                if srv:
                    self.rss[f"{srv.name} (1 worker), after the pinned runs"] = srv.rss()
            if scoring:
                self.ab_repeats(ts, mi)
            self.stop_yardsticks()
            for srv in (scoring, rec):
                if srv:
                    srv.repin("0,1" if ncpus() > 1 else "0")
            self.run_soak(scoring, ts, rec, tr, mi)
            for srv in (scoring, rec):
                if srv:
                    self.rss[f"{srv.name} (1 worker), after the soak"] = srv.rss()
        finally:
            self.stop(scoring)
            self.stop(rec)
        if not do_workers:
            return
        if not has_workers:
            self.skip("Tenure --workers 2", "not available: `tenure serve --help` lists no --workers option")
            return
        if mi is None:
            self.skip("Tenure --workers 2", "ModelInfer was not measurable on 1 worker, nothing to compare")
            return
        pw = free_port()
        tw = f"127.0.0.1:{pw}"
        srv2 = self.start_server("tenure-scoring-2w", self.tenure_cmd("scoring", pw, workers=2), None,
                                 ("health", ""), 180, target=tw)
        if not srv2:
            return
        try:
            # each wait is a new connection, which SO_REUSEPORT may hand to either worker: ask a few times
            for _ in range(6):
                ready = self.client("wait", "--target", tw, "--kind", "kserve", "--models", "bench",
                                    "--timeout-s", "60", timeout=120, cores=None)
                if not ready.get("ok"):
                    break
            if not ready.get("ok"):
                self.skip("Tenure --workers 2 ModelInfer", ready.get("reason", ""))
            else:
                self.workers_runs(tw, 2, mi, srv2)
            tree = srv2.rss()
            self.rss["tenure-scoring --workers 2 (after its runs)"] = tree
            self.notes.append(f"--workers 2: the server's process tree had {len(tree)} processes "
                              f"({', '.join(str(v['cmd'])[:60] for v in tree.values())})")
        finally:
            self.stop(srv2)

    def tenure_pinned(self, scoring: Server | None, ts: str, rec: Server | None, tr: str,
                      ids: list[str]) -> dict[int, tuple[str, int]] | None:
        """1 worker, server on core 0, client on core 1. Returns the ModelInfer check info (frames)."""
        mi: dict[int, tuple[str, int]] | None = None
        if scoring:
            ready = self.client("wait", "--target", ts, "--kind", "kserve", "--models", "bench", "--timeout-s", "30",
                                timeout=90)
            if not ready.get("ok"):
                self.skip("Tenure ModelInfer (all modes)", f"model 'bench' not served over the Open Inference "
                          f"Protocol: {ready.get('reason')}")
            else:
                mi = {}
                for rows, concs in ((1, CONC_1ROW), (1024, CONC_1024)):
                    frame = self.modelinfer_frame("tenure", "bench", rows, "probabilities")
                    chk = self.check_modelinfer("Tenure", ts, frame, rows)
                    if chk is None:
                        continue
                    mi[rows] = (frame, chk["resp_bytes"])
                    for c in concs:
                        self.measure("Tenure", "ModelInfer, 1 worker", "modelinfer", ts, MODELINFER, frame,
                                     chk["resp_bytes"], rows, c)
                if 1 in mi:
                    self.measure("Tenure", "ModelInfer, 1 worker", "modelinfer", ts, MODELINFER, mi[1][0], mi[1][1],
                                 1, 64, conns=16)
                mi = mi or None
            if ids:
                self.tenure_score(ts, ids[0])
                self.tenure_predict(ts, ids[0])
            self.tenure_stream(ts)
        if rec and ids:
            self.tenure_recommend(tr, ids)
        return mi

    def tenure_score(self, ts: str, cid: str) -> None:
        from tenure.v1 import common_pb2, scoring_pb2

        body = scoring_pb2.ScoreRequest(customers=[common_pb2.CustomerRef(customer_id=cid)]).SerializeToString()
        frame = self.write_frame("tenure_score", body)
        res = self.client("check", "--target", ts, "--path", SCORE, "--frame", frame, "--kind", "score")
        results = res.get("results") or [{}]
        if not res.get("ok") or "churn" not in results[0]:
            self.skip("Tenure Score", f"check call failed: {res.get('code', '')} "
                      f"{res.get('details') or res.get('reason') or results[0].get('error', '')}")
            return
        self.checks["Tenure Score"] = self.answer_check(
            {"customer_id": cid, **results[0], "resp_bytes": res["resp_bytes"],
             **self.churn_reference(cid, results[0]["churn"])}, cid, {"churn": "churn", "lookalike": "lookalike"})
        self.soak_frames["score"] = (frame, res["resp_bytes"])
        for c in CONC_1ROW:
            self.measure("Tenure", "Score, 1 customer by id", "score", ts, SCORE, frame, res["resp_bytes"], 1, c,
                         note=f"customer {cid}")

    def tenure_predict(self, ts: str, cid: str) -> None:
        """Every prediction about one customer (churn with 3 reasons, CLV, purchase, channels):
        reported, not a target of issue 3."""
        from tenure.v1 import scoring_pb2

        body = scoring_pb2.PredictRequest(customer_ids=[cid]).SerializeToString()
        frame = self.write_frame("tenure_predict", body)
        res = self.client("check", "--target", ts, "--path", PREDICT, "--frame", frame, "--kind", "predict")
        results = res.get("results") or [{}]
        if not res.get("ok") or "churn" not in results[0]:
            self.skip("Tenure Predict", f"check call failed: {res.get('code', '')} "
                      f"{res.get('details') or res.get('reason') or results[0].get('error', '')}")
            return
        chk = self.answer_check({"customer_id": cid, **results[0], "resp_bytes": res["resp_bytes"],
                                 **self.churn_reference(cid, results[0]["churn"])}, cid,
                                {"churn": "churn", "clv_predicted": "clv_predicted"})
        if chk["ok"] and results[0].get("reasons") != 3:
            chk.update(ok=False, why=f"expected 3 churn reasons, got {results[0].get('reasons')}")
        self.checks["Tenure Predict"] = chk
        for c in (1, 16):
            self.measure("Tenure", "Predict, 1 customer (every model + reasons)", "predict", ts, PREDICT, frame,
                         res["resp_bytes"], 1, c, note=f"customer {cid}")

    def answer_check(self, chk: dict[str, Any], cid: str, fields: dict[str, str]) -> dict[str, Any]:
        """chk + ok/why: the reply's fields (reply name -> services.core.predictions.PredictionTable name)
        against the repository's models run in-process (Predictor, no batching/fusion) on the customer's
        snapshot row, and the raw churn model via onnxruntime (churn_reference); REL_TOL relative."""
        bad: list[str] = []
        try:
            want = self.inproc_predictions(cid)
            chk["inproc"] = want
            for got_name, name in fields.items():
                w, g = want.get(name), chk.get(got_name)
                if w is None or g is None:
                    continue
                if not np.isclose(float(g), w, rtol=REL_TOL, atol=1e-7):
                    bad.append(f"{got_name} {g!r} vs in-process {w!r}")
        except Exception as err:  # noqa: BLE001
            chk["inproc_error"] = repr(err)[:200]
        if "churn_inproc" in chk and not np.isclose(chk["churn"], chk["churn_inproc"], rtol=REL_TOL, atol=1e-7):
            bad.append(f"churn {chk['churn']!r} vs the churn model via onnxruntime {chk['churn_inproc']!r}")
        chk["ok"], chk["why"] = not bad, "; ".join(bad)
        if bad:
            self.notes.append(f"wrong answer for customer {cid}: {chk['why']}")
        return chk

    def inproc_predictions(self, cid: str) -> dict[str, float]:
        from services.core.predictions import Predictor
        from tenure.settings import ServiceSettings

        if not hasattr(self, "_predictor"):
            self._predictor = Predictor.load(self.p.repo, ServiceSettings(ort_threads=1))
        pr = self._predictor
        row = pr.snapshot.index[cid]
        t = pr.predict(np.ascontiguousarray(pr.snapshot.X[row:row + 1], dtype=np.float32))
        out: dict[str, float] = {}
        for name in ("churn", "lookalike", "clv_predicted"):
            v = getattr(t, name, None)
            if v is not None:
                out[name] = float(np.asarray(v).ravel()[0])
        return out

    def churn_reference(self, cid: str, got: float) -> dict[str, Any]:
        """The churn probability in-process for that customer's snapshot row."""
        try:
            import onnxruntime as ort

            from tenure.artifacts import latest_valid
            from tenure.store import FeatureSnapshot

            snap = FeatureSnapshot.load_latest(self.p.repo)
            vdir, man = latest_valid(self.p.repo, "churn")
            x = snap.X[[snap.index[cid]]][:, [snap.feature_names.index(f) for f in man.features]]
            sess = ort.InferenceSession(str(Path(vdir) / "model.onnx"), providers=["CPUExecutionProvider"])
            want = float(sess.run(["probabilities"], {sess.get_inputs()[0].name: x.astype(np.float32)})[0][0, 1])
            return {"churn_inproc": want, "abs_diff": abs(want - got)}
        except Exception as err:  # noqa: BLE001
            return {"churn_inproc_error": repr(err)[:200]}

    def tenure_stream(self, ts: str) -> None:
        # A bulk churn job (the target's like-for-like: in-process churn alone), then every score.
        for scores, mode in (("churn", "StreamScore churn only, inline features"),
                             ("", "StreamScore churn + lookalike, inline features")):
            self.tenure_stream_one(ts, scores, mode)

    def tenure_stream_one(self, ts: str, scores: str, mode: str) -> None:
        churn = sorted((self.p.repo / "churn").iterdir())
        onnx = next((str(d / "model.onnx") for d in reversed(churn) if (d / "model.onnx").exists()), "")
        t0 = self.foreign_mark("stream")
        res = self.client("stream", "--target", ts, "--repo", str(self.p.repo), "--rows", str(self.a.stream_rows),
                          "--chunk", str(self.a.chunk), "--churn-onnx", onnx, "--timeout-s", "300", "--scores", scores, timeout=420)
        share = self.foreign_share("stream", t0)
        self.checks[f"Tenure {mode}"] = res
        if "rows_s" not in res:
            self.skip(f"Tenure {mode}", res.get("error") or res.get("reason") or "no result")
            return
        cpu = res.get("client_cpu_frac", 0)
        note = (f"1 stream, {res['chunks']} chunks x {res['chunk_rows']} rows inline (pre-serialised), "
                f"first result {res.get('first_result_ms') or 0:.0f} ms, client CPU {cpu:.0%} of its core")
        if cpu >= 0.9:
            note += " (CLIENT PEGGED ITS CORE: the figure is a lower bound)"
        diff = res.get("max_abs_diff_vs_inproc_chunk0")
        sdiff = res.get("max_abs_diff_vs_inproc_samples")
        bad = []
        if not res.get("ok"):
            bad.append(f"rows back {res.get('rows_back')} of {res.get('rows_sent')}, failures {res.get('failures')}, "
                       f"in order {res.get('in_order')}, chunks with a wrong row count {res.get('n_chunks_wrong_rows')}")
        if diff is None or diff > 1e-4 or sdiff is None or sdiff > 1e-4:
            bad.append(f"churn vs in-process churn model: chunk 0 max |diff| {diff}, "
                       f"{res.get('sampled_rows_per_chunk')} rows of every chunk max |diff| {sdiff}")
        res["check_ok"], res["why"] = not bad, "; ".join(bad)
        if bad:
            self.notes.append(f"Tenure {mode}: wrong answer: {res['why']}")
        n_err = res["rows_sent"] - res["rows_back"] + res["failures"]
        rec = {"system": "Tenure", "mode": mode, "kind": "stream", "pin": PIN_1W,
               "rows": res["chunk_rows"], "threads": 1, "workers": 1, "client": "python-grpc.aio", "conc": 1,
               "conns": 1, "requests": res["chunks"], "errors": n_err, "secs": res["secs"],
               "req_s": res["chunks"] / res["secs"], "rows_s": res["rows_s"], "p50_ms": None, "p99_ms": None,
               "p999_ms": None, "note": note, "rows_total": res["rows_back"], "ok": res["ok"],
               "foreign_cpu_share": share}
        self.rows.append(rec)
        log(f"Tenure     StreamScore {res['rows_back']:,} rows in {res['secs']:.1f}s = {res['rows_s']:,.0f} rows/s "
            f"(client CPU {cpu:.0%}, ok={res['ok']})")

    def tenure_recommend(self, tr: str, ids: list[str]) -> None:
        from tenure.v1 import recommendation_pb2

        ids_file = self.p.frames / "customer_ids.txt"
        ids_file.write_text("\n".join(ids))
        pick = self.client("pick", "--target", tr, "--ids-file", str(ids_file), "--k", "10", timeout=300)
        if "customer_id" not in pick or pick.get("code"):
            self.skip("Tenure Recommend", f"no answer: {pick.get('code', '')} {pick.get('details') or pick.get('reason')}")
            return
        cid = pick["customer_id"]
        if not pick.get("ok"):
            self.notes.append(f"Recommend: no customer among the first {len(ids)} has >= 200 candidates scored; "
                              f"measured {cid} with {pick.get('candidates_scored')}")
        body = recommendation_pb2.RecommendRequest(customer_id=cid, k=10).SerializeToString()
        frame = self.write_frame("tenure_recommend", body)
        res = self.client("check", "--target", tr, "--path", RECOMMEND, "--frame", frame, "--kind", "recommend")
        if not res.get("ok"):
            self.skip("Tenure Recommend", f"check call failed: {res.get('code')} {res.get('details')}")
            return
        self.checks["Tenure Recommend"] = self.recommend_check(cid, res)
        self.soak_frames["recommend"] = (frame, res["resp_bytes"])
        for c in CONC_1ROW:
            self.measure("Tenure", "Recommend k=10", "recommend", tr, RECOMMEND, frame, res["resp_bytes"], 1, c,
                         note=f"candidates_scored={res.get('candidates_scored')}")

    def recommend_check(self, cid: str, res: dict[str, Any]) -> dict[str, Any]:
        """The returned items against services.recommendation.engine's ranking in-process (same repository)."""
        chk = {"customer_id": cid, **{k: res.get(k) for k in ("items", "candidates_scored", "top", "resp_bytes")}}
        bad: list[str] = []
        try:
            from services.recommendation.engine import Recommender
            from tenure.settings import ServiceSettings

            eng = Recommender.load(self.p.repo, ServiceSettings(ort_threads=1))
            r = eng.recommend(cid, 10, [], "")
            want = [(str(eng.snapshot.catalog.product_ids[i]), float(sc)) for i, sc in zip(r.products, r.scores)]
            got = [(str(p), float(sc)) for p, sc in res.get("ranked") or []]
            chk["inproc_top"] = [(p, round(sc, 4)) for p, sc in want[:3]]
            if [p for p, _ in got] != [p for p, _ in want]:
                bad.append(f"items {[p for p, _ in got]} vs in-process {[p for p, _ in want]}")
            elif not np.allclose([g for _, g in got], [w for _, w in want], rtol=REL_TOL, atol=1e-7):
                bad.append("item scores differ from in-process beyond 1e-5 relative")
            if res.get("candidates_scored") != r.candidates_scored:
                bad.append(f"candidates_scored {res.get('candidates_scored')} vs in-process {r.candidates_scored}")
        except Exception as err:  # noqa: BLE001
            chk["inproc_error"] = repr(err)[:200]
            bad.append(f"in-process ranking failed: {err!r}"[:200])
        chk["ok"], chk["why"] = not bad, "; ".join(bad)
        if bad:
            self.notes.append(f"Recommend wrong answer for {cid}: {chk['why']}")
        return chk

    def workers_runs(self, target: str, workers: int, mi: dict[int, tuple[str, int]], server: Server) -> None:
        """Like-for-like runs for the workers comparison: 16 connections (SO_REUSEPORT spreads connections,
        not requests), h2load unpinned, server unpinned; the CPU seconds the server's processes and
        h2load used are recorded, to show how the two cores were shared."""
        mode = f"ModelInfer, {workers} worker{'s' if workers > 1 else ''}"
        for rows, conc in ((1, 64),):
            if rows in mi:
                self.measure("Tenure", mode, "modelinfer", target, MODELINFER, mi[rows][0], mi[rows][1], rows, conc,
                             conns=16, pin_label=UNPINNED, cores=None, threads=workers, workers=workers,
                             server_cpu=lambda: sum(cpu_seconds(p) for p in server.tree()))

    def run_soak(self, scoring: Server | None, ts: str, rec: Server | None, tr: str,
                 mi: dict[int, tuple[str, int]] | None) -> None:
        secs = self.a.soak_s
        if secs <= 0:
            self.skip("soak", "soak length 0")
            return
        loads = []
        if scoring and mi and 1 in mi:
            loads.append(("tenure-scoring", "ModelInfer 1 row", ts, MODELINFER, *mi[1], 32))
        if scoring and "score" in self.soak_frames:
            loads.append(("tenure-scoring", "Score by id", ts, SCORE, *self.soak_frames["score"], 32))
        if rec and "recommend" in self.soak_frames:
            loads.append(("tenure-recommendation", "Recommend k=10", tr, RECOMMEND, *self.soak_frames["recommend"], 32))
        servers = {s.name: s for s in (scoring, rec) if s}
        if not loads or not self.use_h2:
            self.skip("soak", "nothing to load" if not loads else "needs h2load")
            return
        log(f"soak: {secs:.0f}s full load on {', '.join(sorted({x[0] for x in loads}))} "
            f"({', '.join(x[1] + ' c=' + str(x[6]) for x in loads)}), all unpinned")
        before = {n: sum(int(str(v["VmRSS"])) for v in s.rss().values()) for n, s in servers.items()}
        procs = [h2.background(t, path, f, conc, secs) for (_, _, t, path, f, _, conc) in loads]
        t0 = time.perf_counter()
        series: dict[str, list[tuple[float, int]]] = {n: [] for n in servers}
        while any(pr.poll() is None for pr in procs) and time.perf_counter() - t0 < secs + 60:
            now = time.perf_counter() - t0
            for n, s in servers.items():
                series[n].append((round(now, 1), sum(int(str(v["VmRSS"])) for v in s.rss().values())))
            time.sleep(1.0)
        for pr in procs:
            if pr.poll() is None:
                pr.kill()
        settle = min(10.0, max(1.0, secs * 0.1))
        for (name, what, _t, _path, _f, expect, conc), pr in zip(loads, procs):
            out = (pr.stdout.read() if pr.stdout else "")
            try:
                done, succ, data = h2.parse(out)
                ok = h2.ok_count(done, succ, data, expect)
                self.soak.setdefault("loads", []).append({"service": name, "load": what, "conc": conc,
                                                          "req_s": ok / secs, "errors": done - ok})
            except RuntimeError as err:
                self.soak.setdefault("loads", []).append({"service": name, "load": what, "error": str(err)[:300]})
        for n, pts in series.items():
            alive = servers[n].alive()
            after = [kb for t, kb in pts if t >= settle]
            if not after:
                continue
            start, end, peak = after[0], after[-1], max(kb for _, kb in pts)
            self.soak.setdefault("services", {})[n] = {
                "secs": secs, "settle_s": settle, "rss_before_load_kb": before[n], "rss_start_kb": start,
                "rss_end_kb": end, "rss_peak_kb": peak, "growth_pct": (end - start) / start * 100,
                "alive_after": alive, "samples": pts}
            log(f"soak {n}: RSS before {before[n] / 1024:.0f} MiB, start {start / 1024:.0f}, end {end / 1024:.0f}, "
                f"peak {peak / 1024:.0f} MiB, growth {(end - start) / start * 100:+.1f}%")

    # -------------------------------------------------------------- main
    def run(self) -> None:
        only = self.a.only
        if (self.p.model / "ref_1024.npy").exists():  # from an earlier run's inproc phase (same model)
            self.ref = np.load(self.p.model / "ref_1024.npy")
        self.foreign.start()
        t = time.perf_counter()
        installs = self.phase_prepare()
        self.phase_s["prepare"] = time.perf_counter() - t
        for name, fn in (("inproc", self.phase_inproc), ("baseline", self.phase_baseline),
                         ("mlserver", lambda: self.phase_mlserver(installs.get("mlserver"))),
                         ("pytriton", lambda: self.phase_pytriton(installs.get("pytriton"))),
                         ("yardstick", self.phase_yardstick),
                         ("tenure", lambda: self.phase_tenure("workers" in only)),
                         ("rescore", self.phase_rescore)):
            if name not in only and not (name == "tenure" and "workers" in only):
                continue
            if name in ("baseline", "mlserver", "pytriton") and not self.p.peers.exists():
                continue
            t = time.perf_counter()
            log(f"== {name}")
            self.foreign.mark(name)
            try:
                fn()
            except Exception as err:  # noqa: BLE001  (report what failed, keep the rest)
                import traceback

                traceback.print_exc()
                self.skip(name, f"phase failed: {err!r}")
            self.phase_s[name] = time.perf_counter() - t
            self.foreign_phase[name] = self.foreign.close(name)
            if self.foreign_phase[name] > 0.05 * self.phase_s[name] * ncpus():
                log(f"NOTE: processes outside the harness used {self.foreign_phase[name]:.0f} core-seconds "
                    f"during {name} ({self.foreign_phase[name] / (self.phase_s[name] * ncpus()):.0%} of the box)")

    def results(self) -> dict[str, Any]:
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=self.p.root).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                    text=True, cwd=self.p.root).stdout.strip())
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), platform.processor())
        mem = next((ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                    if ln.startswith("MemTotal")), "0")
        return {
            "meta": {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cpus": ncpus(), "cpu": cpu,
                     "mem_gib": round(int(mem) / 2**20, 1), "python": platform.python_version(),
                     "git": git + ("-dirty" if dirty else ""), "dur_s": self.a.dur, "warm_s": self.a.warm,
                     "soak_s": self.a.soak_s, "stream_rows": self.a.stream_rows, "chunk_rows": self.a.chunk,
                     "load_generator": "h2load" if self.use_h2 else "python grpc.aio",
                     "phases_s": {k: round(v, 1) for k, v in self.phase_s.items()},
                     "total_s": round(time.perf_counter() - self.t0, 1), "cache": str(self.p.cache),
                     "foreign_cpu": {**self.foreign.stop(), "by_phase_core_s": {
                         k: round(v, 1) for k, v in self.foreign_phase.items()}},
                     "peers": str(self.p.peers)},
            "inprocess": self.inproc, "rows": self.rows, "checks": self.checks, "rss": self.rss,
            "soak": self.soak, "skipped": self.skipped, "notes": self.notes, "repeats": self.repeats,
            "rescore": self.rescore,
        }


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("BENCH_OUT", "bench/out"))
    ap.add_argument("--cache", default=None, help="default $TENURE_BENCH_CACHE or /tmp/tenure-bench")
    ap.add_argument("--dur", type=float, default=env_float("DUR", 5), help="seconds per measurement")
    ap.add_argument("--warm", type=float, default=env_float("WARM", 1), help="warm-up seconds before each")
    ap.add_argument("--soak-s", type=float, default=env_float("TENURE_BENCH_SOAK_S", 120),
                    help="full-load soak for the RSS growth check (0 skips it)")
    ap.add_argument("--stream-rows", type=int, default=int(env_float("TENURE_BENCH_STREAM_ROWS", 1_000_000)))
    ap.add_argument("--chunk", type=int, default=10_000, help="StreamScore rows per chunk")
    ap.add_argument("--only", default=os.environ.get("ONLY", ",".join(PHASES)),
                    help=f"comma list of phases: {','.join(PHASES)}")
    a = ap.parse_args()
    a.only = {x.strip() for x in a.only.split(",") if x.strip()}
    p = Paths.make(a.cache, a.out)
    bench = Bench(a, p)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    log(f"cache {p.cache}; peers {p.peers}; out {p.out}; DUR={a.dur:g}s WARM={a.warm:g}s soak={a.soak_s:g}s")
    try:
        bench.run()
    except KeyboardInterrupt:
        bench.skip("run", "interrupted")
    finally:
        for srv in list(bench.servers):
            bench.stop(srv)
        res = bench.results()
        p.out.mkdir(parents=True, exist_ok=True)
        (p.out / "results.json").write_text(json.dumps(res, indent=1, default=str))
        md = report.markdown(res)
        (p.out / "results.md").write_text(md)
        print("\n" + md, flush=True)
        log(f"wrote {p.out / 'results.json'} and {p.out / 'results.md'} in {res['meta']['total_s']:.0f}s")


if __name__ == "__main__":
    main()
