"""`tenure ingest`: a JSON-lines file through a real scoring server (summary, rejected events, exit status), and the
Kafka bridge's batching / commit plan and retry rule (no broker here: the consumer loop itself is not run)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import grpc
import pandas as pd
import pytest

from tenure.client import ScoringClient, TenureRpcError, order_event
from tenure.ingest import Record, consumer_config, plan_batch, send_until_applied
from tenure.store import FeatureSnapshot

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENURE_")}
    return subprocess.run([sys.executable, "-m", "tenure.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)


def order(event_id: str, cid: str, timestamp: float | str, quantity: float = 1, **extra: Any) -> str:
    return json.dumps({"event_id": event_id, "customer_id": cid, "timestamp": timestamp, "kind": "order",
                       "order_id": event_id, "channel": "web",
                       "lines": [{"product_id": "P-1", "category": "", "quantity": quantity, "amount": 12.5}],
                       **extra})


def test_ingest_a_file_prints_the_summary_and_the_rejected_events(serve: Any, trained_repo: Path,
                                                                  snapshot: FeatureSnapshot, tmp_path: Path,
                                                                  closed_port: int) -> None:
    target = serve("scoring", trained_repo).target
    a, b = (str(c) for c in snapshot.customer_ids[:2])
    t = snapshot.cutoff.timestamp() + 3_600
    good = [order("e-1", a, t), order("e-2", b, pd.Timestamp(t + 3_600, unit="s", tz="UTC").isoformat())]
    lines = [good[0], good[1], "{not json", "", order("e-bad", a, t + 60, quantity=0),
             order("e-typo", a, t + 90, chanel="web"), order("e-old", b, t - 86_400 * 60)]
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(lines) + "\n")
    run = cli("ingest", "--target", target, "--file", str(events), "--batch-events", "2")
    assert run.returncode == 1, run.stderr  # some rejected: 1; the good ones were applied all the same
    out = run.stdout
    assert ("received 4, applied 2, duplicates 0, before_snapshot 1, rejected 1; 2 customer updates; "
            "2 unreadable lines (not sent)") in out, out
    assert "line 3: not JSON" in out
    assert "line 5 (event e-bad): line 0: quantity=0.0" in out
    assert "line 6: unknown field(s) chanel for a order event" in out

    clean = tmp_path / "clean.jsonl"
    clean.write_text("\n".join(good) + "\n")
    again = cli("ingest", "--target", target, "--file", str(clean))
    assert again.returncode == 0, again.stderr
    assert "received 2, applied 0, duplicates 2" in again.stdout  # a replay is harmless

    down = cli("ingest", "--target", f"127.0.0.1:{closed_port}", "--file", str(clean))
    assert down.returncode == 2 and down.stderr.startswith("tenure ingest: error: UNAVAILABLE")
    both = cli("ingest", "--target", target, "--file", str(clean), "--from-kafka", "localhost:9092")
    assert both.returncode == 2 and "either --file" in both.stderr
    if importlib.util.find_spec("confluent_kafka") is None:
        kafka = cli("ingest", "--target", target, "--from-kafka", "localhost:9092", "--topic", "events")
        assert kafka.returncode == 2 and "pip install 'tenure[kafka]'" in kafka.stderr


def test_a_kafka_batch_commits_one_past_each_partitions_last_message_poison_messages_included() -> None:
    ok = order("k-1", "C1", 1.8e9).encode()
    two = (order("k-2", "C2", 1.8e9) + "\n" + order("k-3", "C3", 1.8e9)).encode()
    batch = plan_batch([
        Record("events", 0, 10, ok), Record("events", 1, 7, two), Record("events", 0, 11, b"{oops"),
        Record("events", 1, 8, b"\xff\xfe"), Record("events", 2, 3, None),
    ])
    assert [e.event_id for e in batch.events] == ["k-1", "k-2", "k-3"]
    assert batch.where == ["events/0@10", "events/1@7 line 1", "events/1@7 line 2"]
    assert batch.commit == {("events", 0): 12, ("events", 1): 9, ("events", 2): 4}
    assert batch.unreadable == ["events/0@11: not JSON: Expecting property name enclosed in double quotes at "
                                "column 2", "events/1@8: the value is not UTF-8 text", "events/2@3: empty message"]
    config = consumer_config("kafka:9092", "tenure-ingest")
    assert config["enable.auto.commit"] is False and config["enable.auto.offset.store"] is False


def test_the_bridge_retries_an_unreachable_service_until_stopped_and_raises_what_a_retry_cannot_fix(
        serve: Any, trained_repo: Path, snapshot: FeatureSnapshot, closed_port: int) -> None:
    event = order_event("s-1", str(snapshot.customer_ids[0]), snapshot.cutoff.timestamp() + 60, [("P-1", "", 1, 3.0)])
    stop, notices = threading.Event(), []

    def notice(text: str) -> None:  # the second failure stops the bridge (as SIGTERM would)
        notices.append(text)
        if len(notices) == 2:
            stop.set()

    with ScoringClient(f"127.0.0.1:{closed_port}", timeout=5) as down:
        assert send_until_applied(lambda: down.ingest_events([event]), stop, notice, first_delay_s=0.01) is None
    assert len(notices) == 2 and notices[0].startswith("IngestEvents failed (UNAVAILABLE")
    with ScoringClient(serve("scoring", trained_repo).target) as up:
        summary = send_until_applied(lambda: up.ingest_events([event]), threading.Event(), notices.append)
        assert summary is not None and summary.applied == 1
    with ScoringClient(serve("scoring", trained_repo, online_store="off").target) as off:
        with pytest.raises(TenureRpcError) as err:
            send_until_applied(lambda: off.ingest_events([event]), threading.Event(), notices.append)
        assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION and len(notices) == 2
