"""Load generator run as a separate process (`python -m faults.load SPEC.json OUT.json`), so that its
client threads do not share a GIL with the harness's latency probe.

SPEC (JSON): scoring / recommendation targets, mix (call kinds: score, predict, infer, recommend; client i
runs mix[i % len(mix)]), clients, seconds, ids (customer ids), score_rows, predict_rows, retries (of
UNAVAILABLE, with a short back-off, on a fresh connection of its own per client), timeout_s, X (feature rows
for infer), refs ({"score"|"infer": {"A"|"B": [probabilities]}}) and version_kind ({version: "A"|"B"}) to tell
answers that mix versions. Every call is recorded in OUT: [kind, t_start, t_end (time.time()), status name,
attempts, mixed, version named in the answer (churn; propensity for recommend)].
"""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from tenure.v1 import (
    inference_pb2,
    inference_pb2_grpc,
    recommendation_pb2,
    recommendation_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
)

CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 64 << 20),
                   ("grpc.max_send_message_length", 64 << 20)]
"""A connection of each client's own: with workers sharing a port, clients spread over the workers."""


def _mixed(values: list[float], version: str, kind: str, spec: dict[str, Any]) -> bool:
    """Whether the answer's numbers belong to another version than the one it names (refs A and B differ)."""
    refs = spec.get("refs", {}).get(kind)
    which = spec.get("version_kind", {}).get(version)
    if not refs or which not in ("A", "B"):
        return False
    own, other = np.asarray(refs[which], np.float32), np.asarray(refs["B" if which == "A" else "A"], np.float32)
    got = np.asarray(values, np.float32)
    if got.shape != own.shape:
        return True
    telling = np.abs(own - other) > 1e-3
    return bool(np.any(np.abs(got - own)[telling] > np.abs(got - other)[telling]))


class Client:
    def __init__(self, spec: dict[str, Any], kind: str) -> None:
        self.spec = spec
        self.kind = kind
        self.channel: grpc.Channel | None = None
        self._open()
        ids = spec["ids"]
        self.score_req = scoring_pb2.ScoreRequest(
            customers=[{"customer_id": c} for c in ids[:spec.get("score_rows", 1)]], scores=["churn"])
        n = spec.get("predict_rows", 10)
        self.predict_req = scoring_pb2.PredictRequest(customer_ids=[ids[i % len(ids)] for i in range(n)])
        X = np.asarray(spec.get("X", [[0.0]]), np.float32)
        Tensor = inference_pb2.ModelInferRequest.InferInputTensor
        self.infer_req = inference_pb2.ModelInferRequest(
            model_name="churn", inputs=[Tensor(name="features", datatype="FP32", shape=list(X.shape))],
            raw_input_contents=[X.astype("<f4").tobytes()])
        self.i = 0

    def _open(self) -> None:
        if self.channel is not None:
            self.channel.close()
        target = self.spec["recommendation"] if self.kind == "recommend" else self.spec["scoring"]
        self.channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.scoring = scoring_pb2_grpc.ScoringServiceStub(self.channel)
        self.infer = inference_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        self.rec = recommendation_pb2_grpc.RecommendationServiceStub(self.channel)

    def once(self) -> tuple[bool, str]:
        """One call: (whether the answer mixes versions, the churn version it names)."""
        timeout = self.spec.get("timeout_s", 30)
        if self.kind == "score":
            resp = self.scoring.Score(self.score_req, timeout=timeout)
            version = next((m.version for m in resp.models if m.name == "churn"), "")
            return _mixed([r.scores.churn_probability for r in resp.results], version, "score", self.spec), version
        if self.kind == "predict":
            resp = self.scoring.Predict(self.predict_req, timeout=timeout)
            churn = {m.version for m in resp.models if m.name == "churn"}
            return len(churn) > 1, ",".join(sorted(churn))
        if self.kind == "infer":
            resp = self.infer.ModelInfer(self.infer_req, timeout=timeout)
            idx = [o.name for o in resp.outputs].index("probabilities")
            proba = np.frombuffer(resp.raw_output_contents[idx], "<f4").reshape(-1, 2)[:, 1]
            return _mixed(proba.tolist(), resp.model_version, "infer", self.spec), resp.model_version
        ids = self.spec["ids"]
        self.i += 1
        resp = self.rec.Recommend(recommendation_pb2.RecommendRequest(customer_id=ids[self.i % len(ids)], k=10),
                                  timeout=timeout)
        return False, resp.model.version

    def call(self) -> tuple[str, int, bool, str]:
        retries = self.spec.get("retries", 0)
        attempt = 0
        while True:
            attempt += 1
            try:
                return ("OK", attempt, *self.once())
            except grpc.RpcError as err:
                code = err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN
                if code == grpc.StatusCode.UNAVAILABLE and attempt <= retries:
                    time.sleep(min(0.05 * 2 ** attempt, 1.0))
                    self._open()
                    continue
                return code.name, attempt, False, ""


def run(spec: dict[str, Any]) -> list[list[Any]]:
    mix = spec["mix"]
    clients = [Client(spec, mix[i % len(mix)]) for i in range(spec["clients"])]
    stop_at = time.time() + spec["seconds"]
    stop_file = Path(spec["stop_file"]) if spec.get("stop_file") else None
    records: list[list[Any]] = []
    lock = threading.Lock()

    def loop(client: Client) -> None:
        while time.time() < stop_at and not (stop_file is not None and stop_file.exists()):
            t0 = time.time()
            code, attempts, mixed, version = client.call()
            with lock:
                records.append([client.kind, t0, time.time(), code, attempts, mixed, version])
            if code != "OK":
                time.sleep(0.01)  # a dead server answers at once: do not spin

    threads = [threading.Thread(target=loop, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        if c.channel is not None:
            c.channel.close()
    return records


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    records = run(spec)
    Path(sys.argv[2]).write_text(json.dumps({"calls": records}))


if __name__ == "__main__":
    main()
