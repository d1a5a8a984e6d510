"""Yardsticks for `make bench`: two threaded grpcio servers of Tenure's server type serving
`/inference.GRPCInferenceService/ModelInfer` of Tenure's proto (the model name is ignored).

  echo  a generic handler, no (de)serialisation: raw bytes in, one pre-serialised reply out (the reply
        Tenure's ModelInfer gives for a 1-row request: output "probabilities" [1,2] FP32 raw). The
        transport ceiling of one core.
  bare  the generated servicer; ModelInfer decodes raw_input_contents[0] with np.frombuffer and calls
        onnxruntime inline (1 intra-op thread, Tenure's SessionOptions), raw_output_contents out.

  python -m bench.yardsticks --mode echo|bare --port P --model PATH/model.onnx [--threads N]

Prints "READY port=P" on stdout when serving; SIGTERM/SIGINT stop it.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort

from services.core import handlers
from tenure.settings import ServiceSettings
from tenure.v1 import inference_pb2 as pb
from tenure.v1 import inference_pb2_grpc as pb_grpc

SERVICE = "inference.GRPCInferenceService"
METHOD = "ModelInfer"
OUTPUT = "probabilities"
# Same length as a Tenure version id (the reply's size matches Tenure's for the bench model).
VERSION = "20260101T000000000000Z"
# services.core.server.MAX_MESSAGE_BYTES (importing server/runtime would add ~80 MiB of RSS to a yardstick).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}
DATATYPE = {np.dtype(v).str: k for k, v in DTYPES.items()}


def make_server(threads: int) -> grpc.Server:
    """Tenure's server type and the options that matter (build_service with default settings)."""
    s = ServiceSettings()
    return grpc.server(
        ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rpc"),
        options=[("grpc.max_receive_message_length", s.max_request_bytes),
                 ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.so_reuseport", 0)],
        maximum_concurrent_rpcs=s.max_concurrent_rpcs,
    )


def default_threads() -> int:
    return handlers.server_threads(ServiceSettings())


def session_options(threads: int) -> ort.SessionOptions:
    """services.core.runtime.session_options, copied (see MAX_MESSAGE_BYTES)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def session(model: str) -> ort.InferenceSession:
    return ort.InferenceSession(model, sess_options=session_options(1), providers=["CPUExecutionProvider"])


def infer_response(sess: ort.InferenceSession, x: np.ndarray, names: list[str], model_name: str, version: str,
                   req_id: str = "") -> pb.ModelInferResponse:
    """A ModelInferResponse like Tenure's: model name, version, id, one raw output per name."""
    outs = sess.run(names, {sess.get_inputs()[0].name: x})
    resp = pb.ModelInferResponse(model_name=model_name, model_version=version, id=req_id)
    for name, arr in zip(names, outs):
        arr = np.ascontiguousarray(arr)
        t = resp.outputs.add()
        t.name = name
        t.datatype = DATATYPE.get(arr.dtype.str, "FP32")
        t.shape.extend(arr.shape)
        resp.raw_output_contents.append(arr.tobytes())
    return resp


def echo_reply(sess: ort.InferenceSession, model_name: str, version: str) -> bytes:
    """Tenure's 1-row reply shape: probabilities [1,2] FP32 (for a row of zeros: same size, any values)."""
    n = sess.get_inputs()[0].shape[1]
    x = np.zeros((1, int(n) if isinstance(n, int) else 40), np.float32)
    return infer_response(sess, x, [OUTPUT], model_name, version).SerializeToString()


def add_echo(server: grpc.Server, reply: bytes) -> None:
    def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
        return reply

    handler = grpc.unary_unary_rpc_method_handler(handle, request_deserializer=None, response_serializer=None)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler}),))


class Bare(pb_grpc.GRPCInferenceServiceServicer):
    """ModelInfer only: the first input's raw bytes through onnxruntime inline."""

    def __init__(self, sess: ort.InferenceSession, version: str) -> None:
        self.sess = sess
        self.version = version
        self.outputs = {o.name for o in sess.get_outputs()}

    def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.ServicerContext) -> pb.ModelInferResponse:
        if not request.inputs or not request.raw_input_contents:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected one input with raw_input_contents")
        t = request.inputs[0]
        dtype = DTYPES.get(t.datatype)
        if dtype is None or len(t.shape) != 2:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected a 2-d FP32 input")
        x = np.frombuffer(request.raw_input_contents[0], dtype=dtype)
        if x.size != t.shape[0] * t.shape[1]:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"expected {t.shape[0] * t.shape[1]} values, got {x.size}")
        names = [o.name for o in request.outputs] or [OUTPUT]
        unknown = [n for n in names if n not in self.outputs]
        if unknown:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown output(s) {unknown}; expected {sorted(self.outputs)}")
        return infer_response(self.sess, x.reshape(int(t.shape[0]), int(t.shape[1])).astype(np.float32, copy=False),
                              names, request.model_name, self.version, request.id)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.yardsticks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("echo", "bare"), required=True)
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    ap.add_argument("--model", required=True, help="the bench model.onnx")
    ap.add_argument("--threads", type=int, default=0, help="handler threads (default: Tenure's default, "
                                                           f"{default_threads()})")
    ap.add_argument("--reply-name", default="bench", help="echo: model_name in the fixed reply")
    ap.add_argument("--reply-version", default=VERSION, help="model_version in replies")
    a = ap.parse_args(argv)
    sess = session(a.model)
    server = make_server(a.threads or default_threads())
    if a.mode == "echo":
        add_echo(server, echo_reply(sess, a.reply_name, a.reply_version))
    else:
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(Bare(sess, a.reply_version), server)
    port = server.add_insecure_port(f"127.0.0.1:{a.port}")
    if port == 0:
        sys.exit(f"cannot bind 127.0.0.1:{a.port}")
    server.start()
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"READY port={port}", flush=True)
    stop.wait()
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
