"""OIP datatypes beyond FP32: a real ONNX model with FP64, INT64 and BYTES tensors, served."""
from __future__ import annotations

import struct

import grpc
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tenure.v1 import inference_pb2 as pb
from tenure.v1 import inference_pb2_grpc
from training.export import import_onnx

Tensor = pb.ModelInferRequest.InferInputTensor


@pytest.fixture(scope="module")
def typed_server(tmp_path_factory, start_server):  # type: ignore[no-untyped-def]
    """A model that doubles FP64, adds one to INT64 and echoes strings, in its own repository."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["x2"]),
         helper.make_node("Add", ["n", "one"], ["n1"]),
         helper.make_node("Identity", ["s"], ["s_out"])],
        "typed",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [None, 2]),
         helper.make_tensor_value_info("n", TensorProto.INT64, [None]),
         helper.make_tensor_value_info("s", TensorProto.STRING, [None])],
        [helper.make_tensor_value_info("x2", TensorProto.DOUBLE, [None, 2]),
         helper.make_tensor_value_info("n1", TensorProto.INT64, [None]),
         helper.make_tensor_value_info("s_out", TensorProto.STRING, [None])],
        initializer=[helper.make_tensor("one", TensorProto.INT64, [1], [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    repo = tmp_path_factory.mktemp("typed-repo")
    path = repo / "typed.onnx"
    onnx.save(model, path)
    import_onnx(repo, "typed", path)
    from services.scoring.__main__ import make_service

    # Only the OIP side can load here (no churn or feature snapshot), so overall health stays
    # NOT_SERVING; the tests wait for the model itself with ModelReady.
    return start_server(make_service, repo, wait=False)


def wait_ready(stub) -> None:  # type: ignore[no-untyped-def]
    import time
    deadline = time.monotonic() + 30
    while not stub.ModelReady(pb.ModelReadyRequest(name="typed")).ready:
        assert time.monotonic() < deadline, "the typed model never became ready"
        time.sleep(0.1)


def bytes_raw(values: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def test_fp64_int64_bytes_raw_and_typed(typed_server, channel_to) -> None:  # type: ignore[no-untyped-def]
    stub = inference_pb2_grpc.GRPCInferenceServiceStub(channel_to(typed_server))
    wait_ready(stub)
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="typed"))
    assert [(t.name, t.datatype) for t in meta.inputs] == [("x", "FP64"), ("n", "INT64"), ("s", "BYTES")]
    x = np.array([[1.5, -2.0], [3.25, 0.0]])
    n = np.array([7, -1], np.int64)
    s = ["churn".encode(), "na\u00efve \u2014 ok".encode()]
    raw = pb.ModelInferRequest(model_name="typed", inputs=[
        Tensor(name="x", datatype="FP64", shape=[2, 2]), Tensor(name="n", datatype="INT64", shape=[2]),
        Tensor(name="s", datatype="BYTES", shape=[2])],
        raw_input_contents=[x.astype("<f8").tobytes(), n.astype("<i8").tobytes(), bytes_raw(s)])
    typed = pb.ModelInferRequest(model_name="typed", inputs=[
        Tensor(name="x", datatype="FP64", shape=[2, 2], contents=pb.InferTensorContents(fp64_contents=x.ravel())),
        Tensor(name="n", datatype="INT64", shape=[2], contents=pb.InferTensorContents(int64_contents=n)),
        Tensor(name="s", datatype="BYTES", shape=[2], contents=pb.InferTensorContents(bytes_contents=s))])
    for request in (raw, typed):
        resp = stub.ModelInfer(request)
        out = {o.name: (o, r) for o, r in zip(resp.outputs, resp.raw_output_contents)}
        assert out["x2"][0].datatype == "FP64"
        np.testing.assert_array_equal(np.frombuffer(out["x2"][1], "<f8").reshape(2, 2), 2 * x)
        np.testing.assert_array_equal(np.frombuffer(out["n1"][1], "<i8"), n + 1)
        assert out["s_out"][0].datatype == "BYTES" and out["s_out"][1] == bytes_raw(s)


def test_bad_bytes_and_int_payloads(typed_server, channel_to) -> None:  # type: ignore[no-untyped-def]
    stub = inference_pb2_grpc.GRPCInferenceServiceStub(channel_to(typed_server))
    wait_ready(stub)
    good = [Tensor(name="x", datatype="FP64", shape=[1, 2]), Tensor(name="n", datatype="INT64", shape=[1])]
    base = [np.zeros(2).tobytes(), np.zeros(1, np.int64).tobytes()]
    cases = {
        "BYTES length prefix past the end": bytes_raw([b"abc"])[:-1],
        "trailing bytes after the BYTES elements": bytes_raw([b"abc"]) + b"x",
        "not UTF-8 text": bytes_raw([b"\xff\xfe"]),
    }
    for label, payload in cases.items():
        req = pb.ModelInferRequest(model_name="typed", inputs=[*good, Tensor(name="s", datatype="BYTES", shape=[1])],
                                   raw_input_contents=[*base, payload])
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(req)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, label
    req = pb.ModelInferRequest(model_name="typed", inputs=[
        Tensor(name="x", datatype="FP64", shape=[1, 2]),
        Tensor(name="n", datatype="INT64", shape=[1], contents=pb.InferTensorContents(int_contents=[1])),
        Tensor(name="s", datatype="BYTES", shape=[1], contents=pb.InferTensorContents(bytes_contents=[b"a"]))])
    req.inputs[0].contents.fp64_contents.extend([0.0, 0.0])
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(req)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "expected int64_contents" in err.value.details()
