"""tenure.client against real servers on port 0: every client class, sync and asyncio, pandas in and out,
per-row errors, deadlines, TLS + token, and the README's examples (examples/*.py) run as they are."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest
from test_security import (  # noqa: F401  (fixtures and helpers reused, not copied)
    ANALYST,
    CHECKOUT,
    Certs,
    certs,
    open_channel,
    tls_scoring,
    tokens_file,
)

from tenure.client import (
    OUTCOME_NAMES,
    AsyncEventClient,
    AsyncInferenceClient,
    AsyncRecommendationClient,
    AsyncScoringClient,
    AsyncSegmentationClient,
    InferenceClient,
    RecommendationClient,
    ScoringClient,
    SecurityConfigError,
    SegmentationClient,
    TenureRpcError,
    order_event,
    recommendations_frame,
    return_event,
    where,
)
from tenure.store import FeatureSnapshot

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("onnxruntime", "onnx", "lightgbm", "sklearn", "scipy", "prometheus_client", "opentelemetry")


@pytest.fixture(scope="module")
def ids(snapshot: FeatureSnapshot) -> list[str]:
    return [str(c) for c in snapshot.customer_ids[:6]]


def test_import_loads_no_serving_or_training_stack() -> None:
    code = ("import json, sys, tenure.client; "
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


# --------------------------------------------------------------------------------------------- scoring


def check_scoring(score: pd.DataFrame, predicted: pd.DataFrame, by_id: pd.DataFrame, inline: pd.DataFrame,
                  ids: list[str]) -> None:
    assert list(score.customer_id) == [*ids, "nobody"]
    assert score.error.iloc[:-1].isna().all() and score.error.iloc[-1].startswith("NOT_FOUND: ")
    assert score.churn_probability.iloc[:-1].between(0, 1).all() and np.isnan(score.churn_probability.iloc[-1])
    assert set(score.churn_band.iloc[:-1]) <= {"low", "medium", "high"}
    assert list(predicted.customer_id) == [*ids, "nobody"]
    assert predicted.error.iloc[-1].startswith("NOT_FOUND: ") and predicted.error.iloc[:-1].isna().all()
    np.testing.assert_allclose(predicted.churn_probability.iloc[:-1], score.churn_probability.iloc[:-1], atol=1e-6)
    assert predicted.attrs["snapshot_cutoff"] and predicted.attrs["models"]
    # the bulk path (StreamScore) by id and with inline features gives the same scores, in the input's order
    assert list(by_id.index) == list(inline.index) and not by_id.attrs["inline_features"]
    assert inline.attrs["inline_features"]
    np.testing.assert_allclose(by_id.churn_probability, inline.churn_probability, atol=1e-6)
    first = by_id.loc[by_id.customer_id == ids[0], "churn_probability"].iloc[0]
    assert first == pytest.approx(score.churn_probability.iloc[0], abs=1e-6)


def frames(snapshot: FeatureSnapshot, n: int = 50) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The same n customers by id (reversed index) and with every feature column."""
    features = pd.DataFrame(snapshot.X[:n], columns=snapshot.feature_names)
    features.insert(0, "customer_id", [str(c) for c in snapshot.customer_ids[:n]])
    features.index = range(100 + n, 100, -1)
    return features[["customer_id"]], features


def test_scoring_client(scoring_server: Any, snapshot: FeatureSnapshot, ids: list[str]) -> None:
    by_id, inline = frames(snapshot)
    with ScoringClient(scoring_server.target) as client:
        assert client.health() == "SERVING"
        assert list(client.model_info().customer_features) == list(snapshot.feature_names)
        check_scoring(client.score([*ids, "nobody"]), client.predict([*ids, "nobody"], reasons=2, batch_rows=4),
                      client.score_frame(by_id, chunk_rows=16), client.score_frame(inline, chunk_rows=16), ids)
        with pytest.raises(TenureRpcError) as err:
            client.score(["x"] * 20_000)  # more rows than the server's max_batch_rows
        assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and err.value.details


def test_async_scoring_client(scoring_server: Any, snapshot: FeatureSnapshot, ids: list[str]) -> None:
    by_id, inline = frames(snapshot)

    async def run() -> None:
        async with AsyncScoringClient(scoring_server.target) as client:
            assert await client.health() == "SERVING"
            score, predicted, a, b = await asyncio.gather(
                client.score([*ids, "nobody"]), client.predict([*ids, "nobody"], batch_rows=4),
                client.score_frame(by_id, chunk_rows=16), client.score_frame(inline, chunk_rows=16))
            check_scoring(score, predicted, a, b, ids)

    asyncio.run(run())


def test_a_tiny_deadline_on_a_bulk_call_surfaces_as_deadline_exceeded(
        scoring_server: Any, segmentation_server: Any, snapshot: FeatureSnapshot) -> None:
    frame = pd.DataFrame({"customer_id": [str(c) for c in snapshot.customer_ids]})
    with ScoringClient(scoring_server.target) as scoring, SegmentationClient(segmentation_server.target) as seg:
        for call in (lambda: scoring.score_frame(frame, timeout=1e-6), lambda: seg.export_audience(timeout=1e-6)):
            with pytest.raises(TenureRpcError) as err:
                call()
            assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED

    async def run() -> None:
        async with AsyncSegmentationClient(segmentation_server.target) as client:
            with pytest.raises(TenureRpcError) as err:
                await client.export_audience(timeout=1e-6)
            assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED

    asyncio.run(run())


# -------------------------------------------------------------------------------------- recommendation


def test_recommendation_clients(own_recommendation_server: Any, ids: list[str]) -> None:
    target = own_recommendation_server.target
    with RecommendationClient(target) as client:
        shown = client.recommend(ids[0], k=3)
        frame = recommendations_frame(shown)
        assert list(frame["rank"]) == [1, 2, 3] and frame.product_id.is_unique and frame.source.notna().all()
        basket = client.recommend_for_basket([frame.product_id.iloc[0], (frame.product_id.iloc[1], 2)], k=4)
        assert 0 < len(basket.items) <= 4
        events = pd.DataFrame({"customer_id": ids[0], "product_id": list(frame.product_id) + ["P-nope"],
                               "kind": ["impression"] * 3 + ["click"], "position": [1, 2, 3, 4],
                               "request_id": shown.request_id})
        ack = client.record_feedback(events)
        assert ack.recorded == 3 and [f.row for f in ack.failures] == [3]
        assert ack.failures[0].error.code == grpc.StatusCode.NOT_FOUND.value[0]
        assert client.feedback_report().total.impressions >= 3
        with pytest.raises(TenureRpcError) as err:
            client.recommend("nobody")
        assert err.value.code == grpc.StatusCode.NOT_FOUND and "nobody" in err.value.details
        with pytest.raises(ValueError, match="impression, click, purchase"):
            client.record_feedback([{"customer_id": ids[0], "product_id": "P1", "kind": "like"}])

    async def run() -> None:
        async with AsyncRecommendationClient(target) as client:
            shown, report = await asyncio.gather(client.recommend(ids[1], k=2), client.feedback_report())
            assert len(shown.items) == 2 and report.total.impressions >= 3
            basket = await client.recommend_for_basket([shown.items[0].product.product_id], k=2)
            assert basket.items
            ack = await client.record_feedback([{"customer_id": ids[1], "product_id": shown.items[0].product.product_id,
                                                 "kind": "impression", "position": 1}])
            assert ack.recorded == 1

    asyncio.run(run())


# ---------------------------------------------------------------------------------------- segmentation


def test_segmentation_clients(segmentation_server: Any, ids: list[str]) -> None:
    target = segmentation_server.target
    with SegmentationClient(target) as client:
        segments = client.get_segments([*ids, "nobody"])
        assert list(segments.customer_id) == [*ids, "nobody"] and segments.rfm_segment.iloc[:-1].notna().all()
        assert segments.error.iloc[-1].startswith("NOT_FOUND: ") and segments.error.iloc[:-1].isna().all()
        catalog = client.describe_segments()
        assert catalog.customers > 0
        risky = [where("churn", "top%", 20), ("recency_days", ">=", 0)]
        page = client.export_audience(*risky, order_by="churn", limit=5)
        assert len(page) == 5 and page.attrs["count"] > 5 and page.churn.is_monotonic_decreasing
        rest = client.export_audience(*risky, order_by="churn", limit=3, cursor=page.cursor.iloc[-1])
        assert list(rest.position) == [6, 7, 8] and rest.attrs["skipped"] == 5
        profile = client.profile_group(conditions=[where("churn", "top%", 20)], top=4)
        assert len(profile) == 4 and profile.attrs["group_size"] == page.attrs["count"]
        lifecycle = client.profile_group(lifecycle="active", top=2)
        assert len(lifecycle) == 2
        look = client.lookalike_audience(5)
        assert list(look["rank"]) == [1, 2, 3, 4, 5] and look.score.is_monotonic_decreasing
        view = client.customer_360(ids[0], recommendations=2)
        assert view.customer_id == ids[0] and len(view.recommendations) == 2
        assert len(recommendations_frame(view.recommendations)) == 2
        assert all(m.sequence for m in client.segment_changes(timeout=30))
        with pytest.raises(TenureRpcError) as err:
            list(client.watch_job("no-such-job"))
        assert err.value.code == grpc.StatusCode.NOT_FOUND
        with pytest.raises(ValueError, match="exactly one"):
            client.profile_group(top=3)

    async def run() -> None:
        async with AsyncSegmentationClient(target) as client:
            segments, page, view = await asyncio.gather(client.get_segments(ids), client.export_audience(limit=3),
                                                        client.customer_360(ids[1]))
            assert list(segments.customer_id) == ids and len(page) == 3 and view.customer_id == ids[1]
            assert (await client.describe_segments()).customers == catalog.customers
            assert len(await client.lookalike_audience(3)) == 3
            assert len(await client.profile_group(rfm_segment=segments.rfm_segment.iloc[0], top=2)) == 2
            with SegmentationClient(target) as sync_client:
                expected = [c.sequence for c in sync_client.segment_changes(timeout=30)]
            assert [c.sequence async for c in client.segment_changes(timeout=30)] == expected
            with pytest.raises(TenureRpcError) as err:
                [job async for job in client.watch_job("no-such-job")]
            assert err.value.code == grpc.StatusCode.NOT_FOUND

    asyncio.run(run())


# ------------------------------------------------------------------------------------------- inference


def test_inference_clients(scoring_server: Any, snapshot: FeatureSnapshot) -> None:
    X = snapshot.X[:8].astype(np.float32)
    with InferenceClient(scoring_server.target) as client, ScoringClient(scoring_server.target) as scoring:
        assert client.live() and client.ready() and client.ready("churn") and not client.ready("nope")
        assert client.server_metadata().name == "tenure"
        assert [t.name for t in client.model_metadata("churn").inputs] == ["features"]
        out = client.infer("churn", X)
        assert out["probabilities"].shape == (8, 2) and out["label"].shape == (8,)
        same = client.infer("churn", {"features": X}, outputs=["probabilities"])
        assert list(same) == ["probabilities"]
        np.testing.assert_array_equal(same["probabilities"], out["probabilities"])
        scored = scoring.score([str(c) for c in snapshot.customer_ids[:8]])
        np.testing.assert_allclose(out["probabilities"][:, 1], scored.churn_probability, atol=1e-5)
        with pytest.raises(TenureRpcError) as err:
            client.infer("churn", X[:, :3])
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and "expected" in err.value.details

    async def run() -> None:
        async with AsyncInferenceClient(scoring_server.target) as client:
            assert await client.live() and await client.ready("churn")
            meta, got = await asyncio.gather(client.model_metadata("churn"), client.infer("churn", X))
            assert meta.platform == "onnxruntime_onnx"
            np.testing.assert_allclose(got["probabilities"], out["probabilities"], atol=1e-6)
            with pytest.raises(TenureRpcError) as err:
                await client.model_metadata("nope")
            assert err.value.code == grpc.StatusCode.NOT_FOUND

    asyncio.run(run())


# -------------------------------------------------------------------------------------------------- events


def test_ingest_events_changes_the_answers_and_a_replay_changes_nothing(
        serve: Any, trained_repo: Path, snapshot: FeatureSnapshot) -> None:
    """Its own scoring server (embedded store): an order for the customer most likely to churn lowers the churn
    score; batches, a stream and the asyncio client give the same summary; a replay is all duplicates."""
    target = serve("scoring", trained_repo).target
    with ScoringClient(target) as client:
        before = client.score([str(c) for c in snapshot.customer_ids])
        row = before.loc[before.churn_probability.idxmax()]
        cid, t = str(row.customer_id), snapshot.cutoff.timestamp() + 3_600
        events = [
            order_event("o-1", cid, t, [("P-1", "", 2, 40.0), {"product_id": "P-2", "amount": 15.5}], order_id="o1",
                        channel="web"),
            {"event_id": "o-2", "customer_id": cid, "timestamp": t + 60, "kind": "order", "order_id": "o2",
             "lines": [{"product_id": "P-3", "category": "", "quantity": 1, "amount": 9.0}]},  # the JSON-lines format
            order_event("o-old", cid, t - 86_400 * 30, [("P-1", "", 1, 5.0)]),  # before the snapshot's cutoff
            return_event("r-1", cid, t + 120, [("P-1", "", 1, 40.0)], order_id="o1"),
            order_event("o-bad", cid, t + 180, [("P-1", "", 0, 5.0)]),  # quantity 0: rejected, saying why
        ]
        summary = client.ingest_events(events, batch_events=2)  # three IngestEvents calls, one summary
        assert (summary.received, summary.applied, summary.before_snapshot, summary.rejected) == (5, 3, 1, 1)
        assert summary.customers_changed == 2  # per batch that changed it: the first and the second
        by_index = {r.index: (OUTCOME_NAMES[r.outcome], r.event_id, r.error.message) for r in summary.results}
        assert by_index.keys() == {2, 4}  # indexes count across the batches
        assert by_index[2][:2] == ("before_snapshot", "o-old")
        assert by_index[4][:2] == ("rejected", "o-bad") and "quantity" in by_index[4][2]
        after = client.score([cid]).churn_probability.iloc[0]
        assert after < row.churn_probability, (cid, row.churn_probability, after)
        again = client.ingest_events(events[:2], stream=True)  # one StreamIngestEvents call: nothing changes
        assert (again.received, again.duplicates, again.applied) == (2, 2, 0)
        assert [(r.index, OUTCOME_NAMES[r.outcome]) for r in again.results] == [(0, "duplicate"), (1, "duplicate")]
        assert client.score([cid]).churn_probability.iloc[0] == after
        with pytest.raises(ValueError, match="batch_events"):
            client.ingest_events(events, batch_events=10_001)

    async def run() -> None:
        async with AsyncEventClient(target) as events_client:
            answer = await events_client.ingest_events(events[3:4], stream=True)
            assert (answer.received, answer.duplicates) == (1, 1)

    asyncio.run(run())


def test_round_robin_spreads_calls_over_every_address_of_the_target(serve: Any, trained_repo: Path,
                                                                    snapshot: FeatureSnapshot) -> None:
    """Two scoring servers, each with its own embedded store, behind one target of two addresses (as a headless
    Service's DNS name gives): the same event sent again and again is applied once per server it reaches."""
    a, b = (serve("scoring", trained_repo).target for _ in range(2))
    target = f"ipv4:{a},{b}"
    cid, t = str(snapshot.customer_ids[0]), snapshot.cutoff.timestamp() + 3_600

    def applied(event_id: str, round_robin: bool, calls: int) -> int:
        event = order_event(event_id, cid, t, [("P-1", "", 1, 10.0)])
        total = 0
        with ScoringClient(target, round_robin=round_robin) as client:
            for _ in range(calls):
                total += client.ingest_events([event]).applied
                if total == 2:
                    break
        return total

    assert applied("pick-first", round_robin=False, calls=20) == 1  # one connection: one server saw it
    assert applied("round-robin", round_robin=True, calls=200) == 2  # both servers saw it


# ------------------------------------------------------------------------------------------ TLS, token


def test_tls_and_token_options(tls_scoring: Any, certs: Certs, ids: list[str], tmp_path: Path,  # noqa: F811
                               monkeypatch: pytest.MonkeyPatch) -> None:
    ca = str(certs.ca.cert)
    token_file = tmp_path / "token"
    token_file.write_text(ANALYST + "\n")
    with ScoringClient(tls_scoring.target, ca_file=ca, token=ANALYST) as client:
        assert client.score(ids[:2]).error.isna().all()
    with ScoringClient(tls_scoring.target, ca_file=ca, token_file=str(token_file), server_name="localhost") as client:
        assert len(client.predict(ids[:1])) == 1
    for kwargs, code in (({"ca_file": ca}, grpc.StatusCode.UNAUTHENTICATED),
                         ({"ca_file": ca, "token": CHECKOUT}, grpc.StatusCode.PERMISSION_DENIED),
                         ({"token": ANALYST}, grpc.StatusCode.UNAVAILABLE)):  # plaintext to a TLS server
        with ScoringClient(tls_scoring.target, timeout=30, **kwargs) as client, pytest.raises(TenureRpcError) as err:
            client.score(ids[:1])
        assert err.value.code == code, kwargs
    with pytest.raises(SecurityConfigError, match="cannot read the token file"):
        ScoringClient(tls_scoring.target, ca_file=ca, token_file=str(tmp_path / "absent"))
    # the constructor reads no environment; from_env does (arguments still win)
    monkeypatch.setenv("TENURE_TLS_CA_FILE", ca)
    monkeypatch.setenv("TENURE_TOKEN_FILE", str(token_file))
    with ScoringClient.from_env(tls_scoring.target) as client:
        assert client.health() == "SERVING" and client.score(ids[:1]).error.isna().all()
    with ScoringClient.from_env(tls_scoring.target, token=CHECKOUT) as client, pytest.raises(TenureRpcError) as err:
        client.score(ids[:1])
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED

    async def run() -> None:
        async with AsyncInferenceClient(tls_scoring.target, ca_file=ca, token=ANALYST) as client:
            assert await client.ready("churn")
        async with AsyncScoringClient.from_env(tls_scoring.target) as client:
            assert (await client.score(ids[:2])).error.isna().all()
        async with AsyncScoringClient(tls_scoring.target, ca_file=ca) as client:
            with pytest.raises(TenureRpcError) as err:
                await client.score(ids[:1])
            assert err.value.code == grpc.StatusCode.UNAUTHENTICATED

    asyncio.run(run())


# ------------------------------------------------------------------------------------- README examples

EXAMPLES = ("client_sync.py", "client_async.py", "client_pandas.py")


@pytest.mark.parametrize("name", EXAMPLES)
def test_readme_examples_run_against_real_servers(name: str, scoring_server: Any, own_recommendation_server: Any,
                                                  segmentation_server: Any, tmp_path: Path) -> None:
    """examples/*.py as printed in the README, with the default ports pointed at the test servers."""
    code = (ROOT / "examples" / name).read_text()
    for port, server in (("50051", scoring_server), ("50052", own_recommendation_server),
                         ("50053", segmentation_server)):
        code = code.replace(f'"127.0.0.1:{port}"', f'"{server.target}"')
    script = tmp_path / name
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENURE_")}
    run = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**env, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip()
    if name == "client_sync.py":
        assert "NOT_FOUND" in run.stdout and "1 feedback event recorded" in run.stdout


def test_readme_shows_the_tested_examples() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in EXAMPLES:
        assert (ROOT / "examples" / name).read_text().strip() in readme, f"README.md lacks examples/{name} as is"
