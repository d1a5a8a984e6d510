"""`tenure serve` as a real process: it starts on port 0, answers, and drains on SIGTERM."""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import grpc

from tenure.store import FeatureSnapshot
from tenure.v1 import scoring_pb2, scoring_pb2_grpc


def test_serve_process_answers_and_drains_on_sigterm(trained_repo: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tenure.cli", "serve", "scoring", "--port", "0",
                             "--models", str(trained_repo)], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TENURE_SHUTDOWN_GRACE_S": "20"})
    try:
        port = None
        lines = []
        for line in proc.stderr:  # structured logs: one JSON object per line
            lines.append(line)
            if not line.startswith("{"):
                continue  # native libraries (onnxruntime) may write plain lines to stderr
            entry = json.loads(line)
            if "listening on port" in entry["msg"]:
                port = int(entry["msg"].rsplit(" ", 1)[1])
                break
        assert port, "".join(lines)
        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
        from services.demo import wait_serving
        wait_serving(f"127.0.0.1:{port}", timeout_s=60)

        ids = FeatureSnapshot.load_latest(trained_repo).customer_ids[:2_000].tolist()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = scoring_pb2_grpc.ScoringServiceStub(ch)
            # A bulk stream in flight (its first chunk answered) when SIGTERM arrives still gets all
            # its results, including those of chunks it sends after the signal.
            feed: queue.Queue[scoring_pb2.ScoreChunk | None] = queue.Queue()
            call = stub.StreamScore(iter(feed.get, None), timeout=30)
            feed.put(scoring_pb2.ScoreChunk(chunk_id=0, customer_ids=ids))
            results = [next(call)]
            proc.send_signal(signal.SIGTERM)
            for c in range(1, 40):
                feed.put(scoring_pb2.ScoreChunk(chunk_id=c, customer_ids=ids))
            feed.put(None)
            results += list(call)
            assert [r.chunk_id for r in results] == list(range(40))
            assert all(len(r.customer_ids) == len(ids) for r in results)
            assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def start_two_workers(repo: Path) -> tuple[subprocess.Popen[bytes], int, list[int]]:
    """`tenure serve scoring --workers 2` on a free port, SERVING; returns (parent, port, worker pids)."""
    from services.demo import wait_serving
    from tenure.cli import _free_port

    port = _free_port(0)
    proc = subprocess.Popen([sys.executable, "-m", "tenure.cli", "serve", "scoring", "--port", str(port),
                             "--workers", "2", "--models", str(repo)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_serving(f"127.0.0.1:{port}", timeout_s=90, proc=proc)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    except BaseException:
        proc.kill()
        raise
    # Worker processes run spawn_main; multiprocessing's resource tracker is a child too.
    workers = [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
    return proc, port, workers


def test_two_workers_share_one_port_and_stop_together(trained_repo: Path) -> None:
    from tenure.v1 import inference_pb2 as pb
    from tenure.v1 import inference_pb2_grpc

    proc, port, workers = start_two_workers(trained_repo)
    try:
        assert len(workers) == 2
        if len(os.sched_getaffinity(0)) >= 2:  # each worker keeps to a core of its own
            cores = [os.sched_getaffinity(w) for w in workers]
            assert all(len(c) == 1 for c in cores) and cores[0] != cores[1]
        X = FeatureSnapshot.load_latest(trained_repo).X[:1]
        req = pb.ModelInferRequest(model_name="churn", inputs=[pb.ModelInferRequest.InferInputTensor(
            name="features", datatype="FP32", shape=list(X.shape))], raw_input_contents=[X.tobytes()])
        for _ in range(20):  # separate connections: the kernel spreads them over the workers
            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                assert inference_pb2_grpc.GRPCInferenceServiceStub(ch).ModelInfer(req, timeout=10).outputs
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_workers_stop_when_their_parent_is_killed(trained_repo: Path) -> None:
    import time

    proc, _port, workers = start_two_workers(trained_repo)
    assert len(workers) == 2
    proc.kill()  # no chance to forward anything to the workers
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.2)
    alive = [w for w in workers if Path(f"/proc/{w}").exists() and b"zombie" not in Path(f"/proc/{w}/status").read_bytes().lower()]
    assert not alive, f"workers {alive} outlived their parent"
