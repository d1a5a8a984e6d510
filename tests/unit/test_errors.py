"""One table maps domain errors to status codes; anything else is INTERNAL without leaking details."""
from __future__ import annotations

import grpc
import pytest

from services.core.errors import MAX_MESSAGE_CHARS, STATUS, status_for
from services.core.interceptor import Interceptor
from tenure import errors as E
from tenure.client import TenureRpcError
from tenure.v1 import scoring_pb2, scoring_pb2_grpc


def test_every_domain_error_has_a_status() -> None:
    def subclasses(cls: type) -> set[type]:
        return {c for s in cls.__subclasses__() for c in {s} | subclasses(s)}
    # Mapped by their own class or an ancestor (status_for walks the MRO); a ConfigError stops the process
    # at start and never reaches a call; TenureRpcError is what clients raise for a call that failed.
    unmapped = [c for c in subclasses(E.TenureError)
                if not issubclass(c, (E.ConfigError, TenureRpcError)) and not any(m in STATUS for m in c.__mro__)]
    assert unmapped == []
    assert status_for(E.UnknownCustomer("x"))[0] == grpc.StatusCode.NOT_FOUND
    assert status_for(E.InvalidInput("x"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert status_for(E.ModelUnavailable("x"))[0] == grpc.StatusCode.UNAVAILABLE


def test_messages_are_capped() -> None:
    _, message = status_for(E.InvalidInput("x" * 10_000))
    assert len(message) == MAX_MESSAGE_CHARS and message.endswith("...")


class Buggy(scoring_pb2_grpc.ScoringServiceServicer):
    def Score(self, request, context):  # type: ignore[no-untyped-def]
        raise KeyError("secret internal detail")

    def StreamScore(self, request_iterator, context):  # type: ignore[no-untyped-def]
        for chunk in request_iterator:
            if chunk.chunk_id == 1:
                raise E.InvalidInput(f"chunk {chunk.chunk_id} is bad")
            yield scoring_pb2.ScoreChunkResult(chunk_id=chunk.chunk_id)


def test_unexpected_errors_become_internal_and_domain_errors_keep_their_code() -> None:
    from concurrent.futures import ThreadPoolExecutor

    server = grpc.server(ThreadPoolExecutor(max_workers=2), interceptors=[Interceptor("off")])
    scoring_pb2_grpc.add_ScoringServiceServicer_to_server(Buggy(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = scoring_pb2_grpc.ScoringServiceStub(ch)
            with pytest.raises(grpc.RpcError) as err:
                stub.Score(scoring_pb2.ScoreRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.INTERNAL
            assert "secret" not in err.value.details() and "Score" in err.value.details()
            got = []
            with pytest.raises(grpc.RpcError) as err:
                for res in stub.StreamScore(iter([scoring_pb2.ScoreChunk(chunk_id=i) for i in range(3)]), timeout=5):
                    got.append(res.chunk_id)
            assert got == [0]
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "chunk 1 is bad" in err.value.details()
    finally:
        server.stop(0).wait()
