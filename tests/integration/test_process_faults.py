"""Process faults with real service processes: SIGTERM drains (no in-flight call fails, the process always
exits), worker supervision with retrying clients, and `tenure score-file` resuming after being killed or
after the service died."""
from __future__ import annotations

import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tenure.store import FeatureSnapshot
from tenure.v1 import inference_pb2 as pb
from tenure.v1 import inference_pb2_grpc, scoring_pb2, scoring_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 90.0
"""Safety net for waits on events; never a bound the tests assert on."""


class ServiceProc:
    """`python -m services.scoring` (or `tenure serve scoring ...`) as a subprocess; its stderr (JSON log
    lines of the parent and its workers) collected by a thread."""

    def __init__(self, repo: Path, *, args: tuple[str, ...] = (), port: int = 0, **env: str) -> None:
        cmd = [sys.executable, "-m", "services.scoring"] if not args else [sys.executable, "-m", "tenure.cli", *args]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                     env={**os.environ, "TENURE_MODELS_DIR": str(repo),
                                          "TENURE_SCORING_PORT": str(port), "TENURE_RELOAD_INTERVAL_S": "0", **env})
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = port

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def messages(self) -> list[str]:
        out = []
        for line in list(self.lines):
            if line.startswith("{"):
                try:
                    out.append(json.loads(line)["msg"])
                except ValueError:
                    pass
        return out

    def wait_for(self, pattern: str, count: int = 1) -> list[str]:
        """Block until `count` log messages match `pattern` (or fail with the log)."""
        deadline = time.monotonic() + WAIT_S
        with self._changed:
            while True:
                found = [m for m in self.messages() if re.search(pattern, m)]
                if len(found) >= count:
                    return found
                assert self._reader.is_alive(), f"the process ended without {count}x {pattern!r}:\n{self.log()}"
                assert time.monotonic() < deadline, f"no {count}x {pattern!r} in the log:\n{self.log()}"
                self._changed.wait(0.5)

    def start(self) -> "ServiceProc":
        from services.demo import wait_serving

        if not self.port:
            self.port = int(self.wait_for(r"listening on port")[0].rsplit(" ", 1)[1])
        wait_serving(self.target, timeout_s=WAIT_S, proc=self.proc)  # type: ignore[arg-type]
        return self

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return "".join(self.lines[-60:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def procs() -> Any:
    started: list[ServiceProc] = []

    def start(*a: Any, **kw: Any) -> ServiceProc:
        sp = ServiceProc(*a, **kw)
        started.append(sp)
        return sp

    yield start
    for sp in started:
        sp.stop()


def _oip_request(X: np.ndarray) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(model_name="churn", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="features", datatype="FP32", shape=list(X.shape))], raw_input_contents=[X.tobytes()])


def test_sigterm_lets_every_in_flight_call_finish(trained_repo: Path, procs: Any) -> None:
    # Enough bulk slots that none of the ten Predict calls is refused for load; a lame duck with room to
    # spare for a loaded CI machine (the default is 0.5 s).
    sp = procs(trained_repo, TENURE_SHUTDOWN_GRACE_S="60", TENURE_BULK_CALLS="12", TENURE_SERVER_THREADS="16",
               TENURE_SHUTDOWN_LAME_DUCK_S="2").start()
    ids = FeatureSnapshot.load_latest(trained_repo).customer_ids[:2_000].tolist()
    with grpc.insecure_channel(sp.target) as ch:
        stub = scoring_pb2_grpc.ScoringServiceStub(ch)
        stub.GetModelInfo(scoring_pb2.GetModelInfoRequest(), timeout=30)  # connected
        feed: queue.Queue[scoring_pb2.ScoreChunk | None] = queue.Queue()
        stream = stub.StreamScore(iter(feed.get, None), timeout=WAIT_S)
        feed.put(scoring_pb2.ScoreChunk(chunk_id=0, customer_ids=ids))
        answers = [next(stream)]
        calls = [stub.Predict.future(scoring_pb2.PredictRequest(customer_ids=ids, reasons=5), timeout=WAIT_S)
                 for _ in range(10)]
        sp.proc.send_signal(signal.SIGTERM)  # the calls were just sent: some still on their way in
        for c in range(1, 6):  # the open stream goes on after the signal
            feed.put(scoring_pb2.ScoreChunk(chunk_id=c, customer_ids=ids))
        feed.put(None)
        answers += list(stream)
        results = [call.result() for call in calls]  # raises on any failed call
        assert [a.chunk_id for a in answers] == list(range(6))
        assert all(len(r.results) == len(ids) for r in results)
    assert sp.proc.wait(timeout=WAIT_S) == 0
    assert any("stopped" in m for m in sp.messages()), sp.log()


@pytest.mark.parametrize("round_", range(3))
def test_process_exits_after_streams_were_served(trained_repo: Path, procs: Any, round_: int) -> None:
    sp = procs(trained_repo, TENURE_SHUTDOWN_GRACE_S="3").start()
    snap = FeatureSnapshot.load_latest(trained_repo)
    ids, X = snap.customer_ids[:1_000].tolist(), snap.X[:300].astype(np.float32)
    with grpc.insecure_channel(sp.target) as ch:
        stub = scoring_pb2_grpc.ScoringServiceStub(ch)
        oip = inference_pb2_grpc.GRPCInferenceServiceStub(ch)
        assert len(list(stub.StreamScore(iter([scoring_pb2.ScoreChunk(chunk_id=c, customer_ids=ids)
                                               for c in range(8)]), timeout=WAIT_S))) == 8
        assert len(list(oip.ModelStreamInfer(iter([_oip_request(X)] * 8), timeout=WAIT_S))) == 8
        # streams the client walks away from, with requests still coming and answers pending
        cancelled = stub.StreamScore(iter([scoring_pb2.ScoreChunk(chunk_id=c, customer_ids=ids) for c in range(40)]),
                                     timeout=WAIT_S)
        next(cancelled)
        cancelled.cancel()
        cancelled = oip.ModelStreamInfer(iter([_oip_request(X)] * 40), timeout=WAIT_S)
        next(cancelled)
        cancelled.cancel()
        # and one still open (not half-closed) at the signal: cancelled when the grace runs out
        feed: queue.Queue[scoring_pb2.ScoreChunk | None] = queue.Queue()
        still_open = stub.StreamScore(iter(feed.get, None), timeout=WAIT_S)
        feed.put(scoring_pb2.ScoreChunk(chunk_id=0, customer_ids=ids))
        next(still_open)
        sp.proc.send_signal(signal.SIGTERM)
        try:
            code = sp.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the service was still running 60 s after SIGTERM (grace 3 s):\n{sp.log()}")
        feed.put(None)
    assert code == 0, sp.log()


def test_sigterm_while_models_load_exits_cleanly(trained_repo: Path, procs: Any) -> None:
    """The signal arrives while the loader threads are inside onnxruntime: no SIGABRT, exit code 0."""
    rng = random.Random(5)
    for _ in range(4):
        sp = procs(trained_repo, TENURE_SHUTDOWN_GRACE_S="5")
        sp.wait_for(r"listening on port")  # the loaders start right after
        time.sleep(rng.uniform(0, 0.3))
        sp.proc.send_signal(signal.SIGTERM)
        assert sp.proc.wait(timeout=WAIT_S) == 0, sp.log()


def _workers(parent: int) -> set[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return {int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()}


@pytest.mark.slow
def test_killed_worker_is_restarted_and_retrying_clients_see_no_failure(trained_repo: Path, procs: Any) -> None:
    from services.client import RETRY_OPTIONS
    from tenure.cli import _free_port

    port = _free_port(0)
    sp = procs(trained_repo, args=("serve", "scoring", "--port", str(port), "--workers", "2", "--models",
                                   str(trained_repo)), port=port, TENURE_SHUTDOWN_GRACE_S="10").start()
    sp.wait_for(r"worker \d listening on port", count=2)
    before = _workers(sp.proc.pid)
    assert len(before) == 2
    ids = FeatureSnapshot.load_latest(trained_repo).customer_ids[:50].tolist()
    stop = threading.Event()
    ok, failed = [0], []

    def call_in_a_loop() -> None:
        # Its own channel (connection) each: the kernel spreads them over both workers.
        with grpc.insecure_channel(sp.target, options=list(RETRY_OPTIONS)) as ch:
            stub = scoring_pb2_grpc.ScoringServiceStub(ch)
            while not stop.is_set():
                try:
                    stub.Predict(scoring_pb2.PredictRequest(customer_ids=ids), timeout=30)
                    ok[0] += 1
                except grpc.RpcError as err:
                    failed.append(f"{err.code().name}: {err.details()}")  # type: ignore[attr-defined]

    threads = [threading.Thread(target=call_in_a_loop) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        while ok[0] < 50:
            time.sleep(0.05)
        victim = sorted(before)[0]
        os.kill(victim, signal.SIGKILL)
        sp.wait_for(r"exited with code -9 .*restarting it")
        sp.wait_for(r"worker \d restarted as pid")
        sp.wait_for(r"worker \d listening on port", count=3)  # the new one serves
        after = _workers(sp.proc.pid)
        assert len(after) == 2 and victim not in after and len(after & before) == 1
        served = ok[0]
        while ok[0] < served + 50:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failed, failed[:5]
    sp.proc.send_signal(signal.SIGTERM)
    assert sp.proc.wait(timeout=WAIT_S) == 0, sp.log()


# ------------------------------------------------------------------------------------------- score-file


@pytest.fixture(scope="module")
def big_input(trained_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~100k rows of ids (each customer many times, shuffled), plus a row number to tell rows apart."""
    ids = FeatureSnapshot.load_latest(trained_repo).customer_ids.tolist()
    rows = (ids * (100_000 // len(ids) + 1))[:100_000]
    random.Random(3).shuffle(rows)
    path = tmp_path_factory.mktemp("score-file") / "customers.parquet"
    pq.write_table(pa.table({"customer_id": rows, "row": np.arange(len(rows))}), path)
    return path


def _score_file_cmd(target: str, input_path: Path, output: Path) -> list[str]:
    return [sys.executable, "-m", "tenure.cli", "score-file", "--target", target, "--input", str(input_path),
            "--output", str(output), "--chunk-rows", "1000", "--part-chunks", "2"]


def _parts_done(output: Path) -> int:
    try:
        return len(json.loads((output.parent / (output.name + ".parts") / "manifest.json").read_text())["parts"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.fixture(scope="module")
def reference(trained_repo: Path, big_input: Path, tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    """The output of a run that was never interrupted."""
    sp = ServiceProc(trained_repo)
    try:
        sp.start()
        out = tmp_path_factory.mktemp("reference") / "scores.parquet"
        run = subprocess.run(_score_file_cmd(sp.target, big_input, out), cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, run.stderr
        assert not (out.parent / "scores.parquet.parts").exists()
        return pq.read_table(out)
    finally:
        sp.stop()


def _assert_same_as_reference(output: Path, reference: pa.Table, big_input: Path) -> None:
    got = pq.read_table(output)
    assert got.num_rows == pq.read_metadata(big_input).num_rows  # every row once: none lost, none twice
    assert got.column("customer_id").to_pylist() == pq.read_table(big_input).column("customer_id").to_pylist()
    assert got.equals(reference)
    assert not (output.parent / (output.name + ".parts")).exists()


@pytest.mark.slow
def test_score_file_killed_at_random_points_resumes_exactly_once(
        trained_repo: Path, big_input: Path, reference: pa.Table, procs: Any, tmp_path: Path) -> None:
    sp = procs(trained_repo).start()
    rng = random.Random(20261129)
    n_parts = 50
    for attempt in range(2):
        out = tmp_path / f"scores-{attempt}.parquet"
        resumed_kills = 0
        for _ in range(2):  # kill it twice, at seeded points, then let it finish
            target_parts = _parts_done(out) + rng.randint(1, 12)
            job = subprocess.Popen(_score_file_cmd(sp.target, big_input, out), cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + WAIT_S
            while _parts_done(out) < target_parts and job.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.05))  # also in the middle of writing a part or the manifest
            if job.poll() is None:
                job.kill()
                resumed_kills += 1
            job.wait()
        assert resumed_kills, "the job finished before it could be killed"
        assert _parts_done(out) < n_parts
        run = subprocess.run(_score_file_cmd(sp.target, big_input, out), cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, run.stderr
        assert "parts from an earlier run" in run.stdout
        _assert_same_as_reference(out, reference, big_input)


@pytest.mark.slow
def test_score_file_when_the_service_dies_exits_2_and_resumes(
        trained_repo: Path, big_input: Path, reference: pa.Table, procs: Any, tmp_path: Path,
        closed_port: int) -> None:
    sp = procs(trained_repo).start()
    out = tmp_path / "scores.parquet"
    job = subprocess.Popen(_score_file_cmd(sp.target, big_input, out), cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + WAIT_S
    while _parts_done(out) < 3 and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    sp.proc.kill()  # the service dies mid-job
    _, stderr = job.communicate(timeout=WAIT_S)
    assert job.returncode == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tenure score-file: error: UNAVAILABLE: "), stderr
    assert "run the same command again to resume" in lines[0] and "scores.parquet.parts/" in lines[0]
    saved = _parts_done(out)
    assert 3 <= saved < 50

    again = procs(trained_repo).start()  # restarted (on another port)
    run = subprocess.run(_score_file_cmd(again.target, big_input, out), cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert f", {saved} of 50 parts from an earlier run" in run.stdout
    _assert_same_as_reference(out, reference, big_input)

    # Stale parts of another input are not mixed in: the run starts over and says so. The dead service's
    # port may have been handed to `again`, so the first run goes to a port that refuses connections.
    failed = subprocess.run(_score_file_cmd(f"127.0.0.1:{closed_port}", big_input, out), cwd=ROOT,
                            capture_output=True, text=True, timeout=300)  # nothing scored, the manifest written
    assert failed.returncode == 2 and (tmp_path / "scores.parquet.parts" / "manifest.json").exists(), failed.stderr
    other = tmp_path / "other.parquet"
    pq.write_table(pq.read_table(big_input).slice(0, 30_000), other)
    run = subprocess.run(_score_file_cmd(again.target, other, out), cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert "starting over" in run.stderr and "different input or different arguments" in run.stderr
    assert pq.read_table(out).equals(reference.slice(0, 30_000))
