"""The serving path's shortcuts give exactly what the general code gives: metric values, response bytes,
decoded inputs (services.core.metrics.fast_*, services.scoring.oip_convert, services.scoring.convert)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.core.metrics import LATENCY_BUCKETS, fast_add, fast_observe
from services.core.models import ServedModel, TensorSpec
from services.scoring import oip_convert as convert
from services.scoring.convert import score_response, score_response_bytes, score_response_tail
from services.scoring.engine import RowScores
from tenure.errors import InvalidInput, TooLarge
from tenure.v1 import common_pb2
from tenure.v1 import inference_pb2 as pb


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in registry.collect() for s in m.samples}


def test_fast_observe_and_add_match_prometheus_client() -> None:
    regs = CollectorRegistry(), CollectorRegistry()
    hists = [Histogram("h", "h", ["m"], buckets=LATENCY_BUCKETS, registry=r).labels("x") for r in regs]
    gauges = [Gauge("g", "g", ["m"], registry=r).labels("x") for r in regs]
    counters = [Counter("c", "c", ["m"], registry=r).labels("x") for r in regs]
    observe, add_g, add_c = fast_observe(hists[1]), fast_add(gauges[1]), fast_add(counters[1])
    for amount in (0.0, 0.0005, 0.0007, 0.001, 2.5, 29.9, 30.0, 31.0, 1e9, -1.0, math.nan):
        hists[0].observe(amount)
        observe(amount)
    for _ in range(3):
        gauges[0].inc()
        add_g(1)
        counters[0].inc()
        add_c(1)
    gauges[0].dec()
    add_g(-1)
    a, b = _samples(regs[0]), _samples(regs[1])
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == b[key] or (math.isnan(a[key]) and math.isnan(b[key])), key


MODEL = ServedModel("m", "v1", None, [TensorSpec("input", "FP32", (-1, 3))],  # type: ignore[arg-type]
                    [TensorSpec("label", "INT64", (-1,)), TensorSpec("probabilities", "FP32", (-1, 2)),
                     TensorSpec("names", "BYTES", (-1,))], None)


@pytest.mark.parametrize("rows", [1, 3, 200])
@pytest.mark.parametrize("request_id", ["", "req-1", "x" * 300])
@pytest.mark.parametrize("chosen", [[0, 1, 2], [1], [2, 0]])
def test_response_bytes_are_the_message_serialised(rows: int, request_id: str, chosen: list[int]) -> None:
    rng = np.random.default_rng(rows)
    results = [rng.integers(0, 2, rows).astype(np.int64), rng.random((rows, 2)).astype(np.float32),
               np.array([f"n{i}" for i in range(rows)], dtype=object)]
    req = pb.ModelInferRequest(model_name="m", id=request_id)
    want = convert.encode_response(req, MODEL, results, chosen).SerializeToString()
    assert convert.encode_response_bytes(req, MODEL, results, chosen) == want


def _request(rows: int, values: np.ndarray | None = None, **tensor: object) -> pb.ModelInferRequest:
    x = np.arange(rows * 3, dtype="<f4").reshape(rows, 3) if values is None else values
    req = pb.ModelInferRequest(model_name="m")
    req.inputs.add(**{"name": "input", "datatype": "FP32", "shape": list(x.shape), **tensor})
    req.raw_input_contents.append(x.tobytes())
    return req


def test_one_raw_input_shortcut_decodes_as_the_general_path() -> None:
    got = convert.decode_inputs(_request(4), MODEL, 10)
    assert list(got) == ["input"] and got["input"].shape == (4, 3) and got["input"].dtype == np.float32
    np.testing.assert_array_equal(got["input"], np.arange(12, dtype="<f4").reshape(4, 3))


@pytest.mark.parametrize("req, error, match", [
    (_request(1, np.array([[0, np.nan, 1]], "<f4")), InvalidInput, "element 1 .* non-finite"),
    (_request(11), TooLarge, "11 rows, at most 10"),
    (_request(2, shape=[2, 4]), InvalidInput, r"shape \[2, 4\], expected \[-1, 3\]"),
    (_request(2, datatype="FP64"), InvalidInput, "datatype 'FP64', expected FP32"),
    (_request(2, name="other"), InvalidInput, "'other' is not an input"),
])
def test_requests_the_shortcut_leaves_get_the_full_check(req: pb.ModelInferRequest, error: type[Exception],
                                                         match: str) -> None:
    with pytest.raises(error, match=match):
        convert.decode_inputs(req, MODEL, 10)


@pytest.mark.parametrize("rows", [1, 4])
@pytest.mark.parametrize("horizon", [0, 90, 400])
@pytest.mark.parametrize("missing", [(), ("clv", "channel")])
def test_score_bytes_are_the_message_serialised(rows: int, horizon: int, missing: tuple[str, ...]) -> None:
    churn = np.array([0.93568909, 0.0, 0.5, 1e-8][:rows], np.float32)
    look = np.array([5.49e-5, 1.0, 0.25, 0.0][:rows], np.float32)
    bands = np.array([3, 0, 2, 1][:rows])
    keys = ["C000001", "", "é-ü", "x" * 200][:rows]
    versions = [common_pb2.ModelVersion(name="features", version="v1"), common_pb2.ModelVersion(name="churn")]
    scores = RowScores(churn, look, {})
    want = score_response(keys, scores, bands, horizon, versions, missing).SerializeToString()
    assert score_response_bytes(keys, scores, bands, horizon, score_response_tail(versions, missing)) == want


def test_score_bytes_leave_the_uncommon_answers_to_the_message() -> None:
    churn, look, bands = np.array([0.5], np.float32), np.array([0.5], np.float32), np.array([2])
    assert score_response_bytes(["a"], RowScores(churn, look, {0: InvalidInput("x")}), bands, 90, b"") is None
    assert score_response_bytes(["a"], RowScores(churn, None, {}), bands, 90, b"") is None
    assert score_response_bytes(["a"], RowScores(None, look, {}), None, 90, b"") is None
