"""The Open Inference Protocol on the scoring service, through real stubs and tritonclient."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from tenure.artifacts import latest_valid
from tenure.store import FeatureSnapshot
from tenure.v1 import inference_pb2 as pb
from tenure.v1 import inference_pb2_grpc

Req = pb.ModelInferRequest
Tensor = pb.ModelInferRequest.InferInputTensor


@pytest.fixture(scope="module")
def X(trained_repo: Path) -> np.ndarray:
    return FeatureSnapshot.load_latest(trained_repo).X[:16].astype(np.float32)


@pytest.fixture
def stub(scoring_server, channel_to) -> inference_pb2_grpc.GRPCInferenceServiceStub:  # type: ignore[no-untyped-def]
    return inference_pb2_grpc.GRPCInferenceServiceStub(channel_to(scoring_server))


def reference(repo: Path, X: np.ndarray) -> np.ndarray:
    vdir, _ = latest_valid(repo, "churn")
    sess = ort.InferenceSession(str(vdir / "model.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(["probabilities"], {"features": X})[0]


def raw_request(X: np.ndarray, **overrides) -> pb.ModelInferRequest:  # type: ignore[no-untyped-def]
    fields = {"name": "features", "datatype": "FP32", "shape": list(X.shape)}
    fields.update({k: v for k, v in overrides.items() if k in fields})
    req = Req(model_name=overrides.get("model_name", "churn"), id="r1", inputs=[Tensor(**fields)],
              raw_input_contents=[overrides.get("raw", X.astype("<f4").tobytes())])
    return req


def test_raw_and_typed_requests_match_in_process_onnxruntime(stub, X, trained_repo) -> None:  # type: ignore[no-untyped-def]
    want = reference(trained_repo, X)
    resp = stub.ModelInfer(raw_request(X))
    assert resp.model_name == "churn" and resp.id == "r1" and resp.model_version
    names = [o.name for o in resp.outputs]
    assert names == ["label", "probabilities"]
    proba = np.frombuffer(resp.raw_output_contents[1], "<f4").reshape(list(resp.outputs[1].shape))
    np.testing.assert_allclose(proba, want, atol=1e-6)

    typed = Req(model_name="churn", inputs=[Tensor(name="features", datatype="FP32", shape=[5, X.shape[1]],
                                                   contents=pb.InferTensorContents(fp32_contents=X[:5].ravel()))],
                outputs=[Req.InferRequestedOutputTensor(name="probabilities")])
    resp = stub.ModelInfer(typed)
    assert [o.name for o in resp.outputs] == ["probabilities"] and list(resp.outputs[0].shape) == [5, 2]
    np.testing.assert_allclose(np.frombuffer(resp.raw_output_contents[0], "<f4").reshape(5, 2), want[:5], atol=1e-6)


def test_server_and_model_metadata(stub, X) -> None:  # type: ignore[no-untyped-def]
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="churn")).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name="nope")).ready
    assert stub.ServerMetadata(pb.ServerMetadataRequest()).name == "tenure"
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="churn"))
    assert meta.platform == "onnxruntime_onnx" and len(meta.versions) == 1
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("features", "FP32", [-1, X.shape[1]])]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [("label", "INT64", [-1]),
                                                                            ("probabilities", "FP32", [-1, 2])]
    for name in ("lookalike", "propensity"):
        assert stub.ModelReady(pb.ModelReadyRequest(name=name)).ready
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def malformed(X: np.ndarray) -> dict[str, tuple[pb.ModelInferRequest, grpc.StatusCode, str]]:
    F = X.shape[1]
    one = X[:1]
    INV, NF = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    cases = {
        "unknown model": (raw_request(one, model_name="nope"), NF, "not loaded"),
        "unknown version": (Req(model_name="churn", model_version="v0", inputs=[Tensor(name="features", datatype="FP32", shape=[1, F])],
                                raw_input_contents=[one.tobytes()]), NF, "no version"),
        "wrong input name": (raw_request(one, name="input"), INV, "expected features"),
        "INT32 bytes for FP32": (raw_request(one, datatype="INT32", raw=one.astype("<i4").tobytes()), INV, "expected FP32"),
        "FP64 datatype": (raw_request(one, datatype="FP64", raw=one.astype("<f8").tobytes()), INV, "expected FP32"),
        "wrong feature count": (raw_request(X[:1, :-1], shape=[1, F - 1]), INV, f"expected [-1, {F}]"),
        "rank 1": (raw_request(one, shape=[F]), INV, "shape"),
        "negative dim": (raw_request(one, shape=[-1, F]), INV, "shape"),
        "zero rows": (raw_request(one, shape=[0, F], raw=b""), INV, "no rows"),
        "short raw bytes": (raw_request(one, raw=one.tobytes()[:-4]), INV, f"needs {4 * F}"),
        "long raw bytes": (raw_request(one, raw=one.tobytes() + b"\0" * 4), INV, f"needs {4 * F}"),
        "shape says 2 rows, bytes hold 1": (raw_request(one, shape=[2, F]), INV, f"needs {8 * F}"),
        "duplicate input": (Req(model_name="churn", inputs=[Tensor(name="features", datatype="FP32", shape=[1, F])] * 2,
                                raw_input_contents=[one.tobytes()] * 2), INV, "takes 1"),
        "raw and typed": (Req(model_name="churn", inputs=[Tensor(name="features", datatype="FP32", shape=[1, F],
                                                                 contents=pb.InferTensorContents(fp32_contents=one.ravel()))],
                              raw_input_contents=[one.tobytes()]), INV, "both"),
        "two raw entries for one input": (Req(model_name="churn", inputs=[Tensor(name="features", datatype="FP32", shape=[1, F])],
                                              raw_input_contents=[one.tobytes(), one.tobytes()]), INV, "one per input"),
        "typed values in the wrong field": (Req(model_name="churn", inputs=[Tensor(name="features", datatype="FP32", shape=[1, F],
                                                                                   contents=pb.InferTensorContents(int_contents=[1] * F))]),
                                            INV, "expected fp32_contents"),
        "typed value count": (Req(model_name="churn", inputs=[Tensor(name="features", datatype="FP32", shape=[1, F],
                                                                     contents=pb.InferTensorContents(fp32_contents=[1.0] * (F + 1)))]),
                              INV, f"needs {F}"),
        "no inputs": (Req(model_name="churn"), INV, "takes 1"),
        "unknown output": (Req(model_name="churn", inputs=[Tensor(name="features", datatype="FP32", shape=[1, F])],
                               raw_input_contents=[one.tobytes()], outputs=[Req.InferRequestedOutputTensor(name="prob")]),
                           INV, "expected label, probabilities"),
        "duplicate output": (Req(model_name="churn", inputs=[Tensor(name="features", datatype="FP32", shape=[1, F])],
                                 raw_input_contents=[one.tobytes()],
                                 outputs=[Req.InferRequestedOutputTensor(name="label")] * 2), INV, "twice"),
        "unbounded client text": (raw_request(one, name="x" * 100_000), INV, "expected features"),
        "empty datatype": (raw_request(one, datatype=""), INV, "expected FP32"),
    }
    return cases


def test_malformed_requests_are_refused_precisely(stub, X) -> None:  # type: ignore[no-untyped-def]
    for label, (request, code, needle) in malformed(X).items():
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(request)
        assert err.value.code() == code, (label, err.value.code(), err.value.details())
        assert needle in err.value.details(), (label, err.value.details())
        assert len(err.value.details()) <= 1024, label


def test_too_many_rows_is_resource_exhausted(stub, X) -> None:  # type: ignore[no-untyped-def]
    big = np.zeros((10_001, X.shape[1]), np.float32)
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(raw_request(big))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "at most 10000" in err.value.details()


def test_stream_infer_answers_each_request_in_order(stub, X, trained_repo) -> None:  # type: ignore[no-untyped-def]
    want = reference(trained_repo, X)
    bad = raw_request(X[:1], datatype="INT32")
    requests = [raw_request(X[i:i + 1]) for i in range(10)]
    requests.insert(4, bad)
    for i, r in enumerate(requests):
        r.id = str(i)
    responses = list(stub.ModelStreamInfer(iter(requests)))
    assert len(responses) == 11
    assert responses[4].error_message.startswith("INVALID_ARGUMENT") and "expected FP32" in responses[4].error_message
    good = [r for i, r in enumerate(responses) if i != 4]
    assert [r.infer_response.id for r in good] == [str(i) for i in range(11) if i != 4]
    got = np.array([np.frombuffer(r.infer_response.raw_output_contents[1], "<f4") for r in good])
    np.testing.assert_allclose(got, want[:10], atol=1e-6)


TRITON_CLIENT = r"""
import json, sys
import numpy as np
import tritonclient.grpc as tc

url, F = sys.argv[1], int(sys.argv[2])
X = np.array(json.loads(sys.stdin.read()), dtype=np.float32)
client = tc.InferenceServerClient(url)
out = {"live": client.is_server_live(), "ready": client.is_server_ready(), "model_ready": client.is_model_ready("churn")}
meta = client.get_model_metadata("churn", as_json=True)
out["inputs"] = meta["inputs"]
inp = tc.InferInput("features", list(X.shape), "FP32")
inp.set_data_from_numpy(X)
res = client.infer("churn", [inp], outputs=[tc.InferRequestedOutput("probabilities")])
out["probabilities"] = res.as_numpy("probabilities").tolist()
bad = tc.InferInput("features", [1, F], "INT32")
bad.set_data_from_numpy(np.zeros((1, F), np.int32))
try:
    client.infer("churn", [bad])
    out["bad"] = "OK"
except tc.InferenceServerException as err:
    out["bad"] = err.status()
results = []
client.start_stream(callback=lambda result, error: results.append(str(error) if error else result.as_numpy("probabilities").tolist()))
for i in range(3):
    one = tc.InferInput("features", [1, F], "FP32")
    one.set_data_from_numpy(X[i:i + 1])
    client.async_stream_infer("churn", [one], request_id=str(i))
client.stop_stream()
out["stream"] = results
print(json.dumps(out))
"""


def test_tritonclient_works_unchanged(scoring_server, X, trained_repo) -> None:  # type: ignore[no-untyped-def]
    # tritonclient registers the same inference.* protobuf symbols as our stubs: own process.
    proc = subprocess.run([sys.executable, "-c", TRITON_CLIENT, scoring_server.target, str(X.shape[1])],
                          input=json.dumps(X[:4].tolist()), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["live"] and out["ready"] and out["model_ready"]
    assert out["inputs"] == [{"name": "features", "datatype": "FP32", "shape": ["-1", str(X.shape[1])]}]
    want = reference(trained_repo, X[:4])
    np.testing.assert_allclose(np.array(out["probabilities"]), want, atol=1e-6)
    assert out["bad"] == "StatusCode.INVALID_ARGUMENT"
    np.testing.assert_allclose(np.array(out["stream"]).reshape(3, 2), want[:3], atol=1e-6)
