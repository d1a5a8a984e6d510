"""Open Inference Protocol tensors <-> numpy, strict: a request that does not match the model's
metadata is refused with a short message saying what was expected."""
from __future__ import annotations

import struct
from math import prod

import numpy as np

from services.core.models import ServedModel, TensorSpec
from services.core.wire import field_if, varint
from tenure.errors import InvalidInput, TooLarge
from tenure.v1 import inference_pb2 as pb

# datatype -> (numpy dtype, typed-contents field)
DATATYPES: dict[str, tuple[str, str | None]] = {
    "FP32": ("<f4", "fp32_contents"), "FP64": ("<f8", "fp64_contents"), "FP16": ("<f2", None),
    "INT64": ("<i8", "int64_contents"), "INT32": ("<i4", "int_contents"), "INT16": ("<i2", "int_contents"),
    "INT8": ("i1", "int_contents"), "UINT64": ("<u8", "uint64_contents"), "UINT32": ("<u4", "uint_contents"),
    "UINT16": ("<u2", "uint_contents"), "UINT8": ("u1", "uint_contents"), "BOOL": ("?", "bool_contents"),
    "BYTES": ("O", "bytes_contents"),
}
ITEMSIZE = {dtype: np.dtype(dtype).itemsize for dtype, _ in DATATYPES.values()}
FLOAT_DTYPES = frozenset(dtype for dtype, _ in DATATYPES.values() if np.dtype(dtype).kind == "f")
CONTENT_FIELDS = tuple(sorted({f for _, f in DATATYPES.values() if f}))
NAME_CHARS = 64


def short(text: str) -> str:
    """Client text quoted in a message is cut short: messages stay bounded."""
    return repr(text[:NAME_CHARS] + ("..." if len(text) > NAME_CHARS else ""))


def _shape_text(shape: tuple[int, ...] | list[int]) -> str:
    return "[" + ", ".join(str(d) for d in list(shape)[:8]) + (", ...]" if len(shape) > 8 else "]")


def _check_shape(name: str, shape: list[int], spec: TensorSpec) -> None:
    if len(shape) == 2 == len(spec.shape) and shape[0] > 0 and shape[1] >= 0 and spec.shape[0] == -1 and (
            spec.shape[1] in (-1, shape[1])):  # the common [rows, features] shape: a few compares
        return
    if len(shape) != len(spec.shape) or any(d < 0 for d in shape) or any(
            want != -1 and got != want for got, want in zip(shape, spec.shape)):
        raise InvalidInput(f"input {short(name)}: shape {_shape_text(shape)}, expected {_shape_text(spec.shape)} "
                           "(-1 = any size)")
    if spec.shape and spec.shape[0] == -1 and shape[0] == 0:
        raise InvalidInput(f"input {short(name)}: shape {_shape_text(shape)} has no rows")


def _decode_bytes(buf: bytes, n: int, name: str) -> np.ndarray:
    """BYTES raw format: each element is a 4-byte little-endian length then the bytes."""
    out: list[bytes] = []
    offset = 0
    for _ in range(n):
        if offset + 4 > len(buf):
            raise InvalidInput(f"input {short(name)}: raw BYTES content ends after {len(out)} of {n} elements")
        (length,) = struct.unpack_from("<I", buf, offset)
        offset += 4
        if offset + length > len(buf):
            raise InvalidInput(f"input {short(name)}: raw BYTES element {len(out)} is cut short")
        out.append(buf[offset:offset + length])
        offset += length
    if offset != len(buf):
        raise InvalidInput(f"input {short(name)}: {len(buf) - offset} bytes after the {n} BYTES elements")
    return _as_text(out, name)


def _as_text(values: list[bytes], name: str) -> np.ndarray:
    """BYTES elements for an ONNX string tensor, which holds text: UTF-8 or refused."""
    try:
        return np.array([v.decode("utf-8") for v in values], dtype=object)
    except UnicodeDecodeError as err:
        raise InvalidInput(f"input {short(name)}: a BYTES element is not UTF-8 text ({err.reason} at byte "
                           f"{err.start}); ONNX string tensors hold text") from err


def _typed(t: pb.ModelInferRequest.InferInputTensor, spec: TensorSpec, n: int) -> np.ndarray:
    dtype, field = DATATYPES[spec.datatype]
    if field is None:
        raise InvalidInput(f"input {short(t.name)}: {spec.datatype} has no typed contents; send raw_input_contents")
    others = [f for f in CONTENT_FIELDS if f != field and len(getattr(t.contents, f))]
    if others:
        raise InvalidInput(f"input {short(t.name)}: values in {others[0]} for a {spec.datatype} input; expected {field}")
    values = getattr(t.contents, field)
    if len(values) != n:
        raise InvalidInput(f"input {short(t.name)}: {len(values)} values in {field}, shape needs {n}")
    return _as_text(list(values), t.name) if dtype == "O" else np.asarray(values, dtype=dtype)


def _one_raw_input(req: pb.ModelInferRequest, specs: dict[str, TensorSpec], max_rows: int) -> dict[str, np.ndarray] | None:
    """The common request, checked in a few steps: one [rows, features] input of a fixed-size datatype in
    raw_input_contents, all valid. None for anything else (decode_inputs then checks it in full, and says
    what is wrong)."""
    inputs, raw = req.inputs, req.raw_input_contents
    if len(inputs) != 1 or len(raw) != 1 or len(specs) != 1:
        return None
    t = inputs[0]
    name = t.name
    spec = specs.get(name)
    if spec is None or t.datatype != spec.datatype or spec.datatype == "BYTES" or t.HasField("contents"):
        return None
    shape, want = list(t.shape), spec.shape
    if len(shape) != 2 or len(want) != 2 or want[0] != -1 or not 0 < shape[0] <= max_rows or not (
            shape[1] == want[1] or (want[1] == -1 and shape[1] >= 0)):
        return None
    dtype = DATATYPES[spec.datatype][0]
    data = raw[0]
    if len(data) != shape[0] * shape[1] * ITEMSIZE[dtype]:
        return None
    arr = np.frombuffer(data, dtype=dtype).reshape(shape)
    if dtype in FLOAT_DTYPES and not np.isfinite(arr).all():
        return None
    return {name: arr}


def decode_inputs(req: pb.ModelInferRequest, served: ServedModel, max_rows: int) -> dict[str, np.ndarray]:
    specs = served.input_by_name
    fast = _one_raw_input(req, specs, max_rows)
    if fast is not None:
        return fast
    if len(req.inputs) != len(specs):
        raise InvalidInput(f"{len(req.inputs)} inputs for model {short(served.name)}, which takes "
                           f"{len(specs)}: {', '.join(specs)}")
    raw = req.raw_input_contents
    if raw and len(raw) != len(req.inputs):
        raise InvalidInput(f"{len(raw)} raw_input_contents entries for {len(req.inputs)} inputs; expected one per input")
    feeds: dict[str, np.ndarray] = {}
    for i, t in enumerate(req.inputs):
        spec = specs.get(t.name)
        if spec is None:
            raise InvalidInput(f"input {short(t.name)} is not an input of model {short(served.name)}; "
                               f"expected {', '.join(specs)}")
        if t.name in feeds:
            raise InvalidInput(f"input {short(t.name)} appears twice")
        if t.datatype != spec.datatype:
            raise InvalidInput(f"input {short(t.name)}: datatype {short(t.datatype)}, expected {spec.datatype}")
        shape = list(t.shape)
        _check_shape(t.name, shape, spec)
        n = shape[0] * shape[1] if len(shape) == 2 else prod(shape)
        if spec.shape and spec.shape[0] == -1 and shape[0] > max_rows:
            raise TooLarge(f"input {short(t.name)}: {shape[0]} rows, at most {max_rows} per request")
        if raw:
            if t.HasField("contents") and t.contents.ByteSize():
                raise InvalidInput(f"input {short(t.name)}: both raw_input_contents and typed contents; send one")
            dtype = DATATYPES[spec.datatype][0]
            if dtype == "O":
                arr = _decode_bytes(raw[i], n, t.name)
            else:
                itemsize = ITEMSIZE[dtype]
                if len(raw[i]) != n * itemsize:
                    raise InvalidInput(f"input {short(t.name)}: raw_input_contents[{i}] has {len(raw[i])} bytes, "
                                       f"shape {_shape_text(shape)} of {spec.datatype} needs {n * itemsize}")
                arr = np.frombuffer(raw[i], dtype=dtype)
        else:
            arr = _typed(t, spec, n)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            _check_finite(t.name, arr)
        feeds[t.name] = arr.reshape(shape)
    return feeds


def _check_finite(name: str, arr: np.ndarray) -> None:
    """Float inputs hold finite numbers: NaN or infinity from a client is refused, as Score refuses it,
    instead of reaching the model as a "missing" value the caller may not have meant."""
    bad = np.flatnonzero(~np.isfinite(arr))
    if len(bad):
        raise InvalidInput(f"input {short(name)}: element {int(bad[0])} (flat index) is {arr.flat[int(bad[0])]}, "
                           f"{len(bad)} non-finite values in all; expected finite numbers")


def requested_outputs(req: pb.ModelInferRequest, served: ServedModel) -> list[int]:
    """Indices (graph order) of the outputs to return: the requested ones, or all."""
    if not req.outputs:
        return list(range(len(served.outputs)))
    index = served.output_index
    chosen: list[int] = []
    for o in req.outputs:
        if o.name not in index:
            raise InvalidInput(f"output {short(o.name)} is not an output of model {short(served.name)}; "
                               f"expected {', '.join(index)}")
        if index[o.name] in chosen:
            raise InvalidInput(f"output {short(o.name)} requested twice")
        chosen.append(index[o.name])
    return chosen


def _raw(arr: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in arr.ravel()]
        return b"".join(struct.pack("<I", len(p)) + p for p in parts)
    return np.ascontiguousarray(arr, dtype=DATATYPES[datatype][0]).tobytes()


def encode_response(req: pb.ModelInferRequest, served: ServedModel, results: list[np.ndarray],
                    chosen: list[int]) -> pb.ModelInferResponse:
    resp = pb.ModelInferResponse(model_name=served.name, model_version=served.version, id=req.id)
    for i in chosen:
        spec, arr = served.outputs[i], results[i]
        out = resp.outputs.add()
        out.name = spec.name
        out.datatype = spec.datatype
        out.shape.extend(arr.shape)
        resp.raw_output_contents.append(_raw(arr, spec.datatype))
    return resp




_HEADS: dict[tuple[str, ...], bytes] = {}
"""(model, version) -> its serialised model_name and model_version; (output, datatype) -> its name and
datatype: the constant parts of a ModelInferResponse, serialised once."""


def _head(*key: str) -> bytes:
    head = _HEADS.get(key)
    if head is None:
        if len(_HEADS) > 4096:  # models come and go with hot reloads: stay bounded
            _HEADS.clear()
        head = _HEADS[key] = field_if(1, key[0].encode()) + field_if(2, key[1].encode())
    return head


def encode_response_bytes(req: pb.ModelInferRequest, served: ServedModel, results: list[np.ndarray],
                          chosen: list[int]) -> bytes:
    """encode_response(...).SerializeToString(), written directly: the constant parts are serialised once
    per model version, the shapes and tensors appended (fields in number order, as protobuf writes them)."""
    rid = req.id
    parts = [_head(served.name, served.version), field_if(3, rid.encode()) if rid else b""]
    raws = []
    for i in chosen:
        spec, arr = served.outputs[i], results[i]
        shape = b"".join([varint(d) for d in arr.shape])
        parts.append(field_if(5, _head(spec.name, spec.datatype) + field_if(3, shape)))
        raw = _raw(arr, spec.datatype)
        raws.append(b"2" + varint(len(raw)) + raw)  # field 6, bytes (b"2" == 6 << 3 | 2); empty kept
    return b"".join(parts + raws)


def metadata(served: ServedModel) -> pb.ModelMetadataResponse:
    T = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=served.name, versions=[served.version], platform="onnxruntime_onnx",
        inputs=[T(name=s.name, datatype=s.datatype, shape=list(s.shape)) for s in served.inputs],
        outputs=[T(name=s.name, datatype=s.datatype, shape=list(s.shape)) for s in served.outputs])
