"""`tenure ingest`: events from a JSON-lines file or a Kafka topic into a service's EventService.

The format is tenure.client.events' (one event per line). A file is read and sent in batches (IngestEvents, at
most 10,000 events each); the summary and every rejected event (line number, event id, why) are printed. Exit
status: 0 when every event was applied, a duplicate or before the snapshot (a replay is harmless), 1 when some
line could not be read or some event was rejected (the others were still sent and applied), 2 on an error that
stopped the run (unreachable service, unreadable file; batches sent before it stay applied: sending the file
again is safe, event ids make repeats duplicates).

Kafka (--from-kafka, needs the kafka extra: confluent-kafka): a consumer in group --group reads --topic (one
event, or several JSON lines, per message value), and after each batch's IngestEvents succeeded commits the
batch's offsets: at-least-once (a crash or a stop before the commit redelivers the batch; event ids make that
harmless). A failed call is retried with backoff while it is transient (UNAVAILABLE, DEADLINE_EXCEEDED,
RESOURCE_EXHAUSTED, ABORTED); any other failure stops the bridge without committing. Messages that are not
events are reported and committed (a poison message must not block the partition). SIGINT / SIGTERM stop it
cleanly: the batch in flight finishes (or is left uncommitted), the consumer leaves its group, exit 0.
"""
from __future__ import annotations

import functools
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Sequence

from tenure.client import events as ev
from tenure.errors import ConfigError
from tenure.v1 import events_pb2

if TYPE_CHECKING:
    from tenure.client import BaseClient

MAX_SHOWN = 1_000
"""Rejected events printed one by one (the rest are counted)."""
TRANSIENT = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED")


@dataclass
class Report:
    """What an ingest run did: the services' summary plus the lines that could not be read."""

    summary: events_pb2.IngestEventsResponse = field(default_factory=events_pb2.IngestEventsResponse)
    unreadable: int = 0
    problems: list[str] = field(default_factory=list)
    """'where: why' per unreadable line or rejected event (at most MAX_SHOWN)."""
    more: int = 0
    """Problems beyond MAX_SHOWN."""

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_SHOWN:
            self.problems.append(text)
        else:
            self.more += 1

    def add(self, part: events_pb2.IngestEventsResponse, where: Sequence[str]) -> None:
        """Add one batch's summary; where[i] names event i of the batch (a line number, a Kafka offset)."""
        for r in part.results:
            if r.outcome == events_pb2.EVENT_REJECTED:
                self.problem(f"{where[r.index]} (event {r.event_id}): {r.error.message}")
        ev.merge(self.summary, part, offset=self.summary.received)

    @property
    def failed(self) -> bool:
        return bool(self.unreadable or self.summary.rejected)

    def lines(self) -> list[str]:
        s = self.summary
        out = [f"received {s.received:,}, applied {s.applied:,}, duplicates {s.duplicates:,}, before_snapshot "
               f"{s.before_snapshot:,}, rejected {s.rejected:,}; {s.customers_changed:,} customer updates"
               + (f"; {self.unreadable:,} unreadable lines (not sent)" if self.unreadable else "")]
        if self.problems:
            out.append("rejected:")
            out += [f"  {p}" for p in self.problems]
            if self.more:
                out.append(f"  ... and {self.more:,} more")
        return out


def ingest_file(client: BaseClient, path: Path, batch_events: int = ev.DEFAULT_BATCH_EVENTS,
                on_batch: Callable[[Report], None] | None = None) -> Report:
    """Send the events of a JSON-lines file in batches; unreadable lines are reported, the rest still sent."""
    report = Report()
    with open(path, encoding="utf-8") as f:
        batch: list[events_pb2.Event] = []
        where: list[str] = []

        def send() -> None:
            report.add(client.ingest_events(batch, batch_events=len(batch)), where)
            batch.clear()
            where.clear()
            if on_batch is not None:
                on_batch(report)

        for number, item in ev.read_jsonl(f):
            if isinstance(item, str):
                report.unreadable += 1
                report.problem(f"line {number}: {item}")
                continue
            batch.append(item)
            where.append(f"line {number}")
            if len(batch) == batch_events:
                send()
        if batch:
            send()
    return report


# -- Kafka -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One Kafka message as the bridge needs it (confluent_kafka.Message: Record.of(message))."""

    topic: str
    partition: int
    offset: int
    value: bytes | None

    @classmethod
    def of(cls, message: Any) -> "Record":
        return cls(message.topic(), message.partition(), message.offset(), message.value())


@dataclass
class KafkaBatch:
    events: list[events_pb2.Event]
    where: list[str]
    """Per event: topic/partition@offset (and the line within the message when it holds several)."""
    unreadable: list[str]
    """'topic/partition@offset: why' per message (line) that is not an event."""
    commit: dict[tuple[str, int], int]
    """(topic, partition) -> the offset to commit once the events are applied: the last message's offset + 1."""


def plan_batch(records: Sequence[Record]) -> KafkaBatch:
    """The events of a batch of messages (in order), the messages that are not events, and the offsets to commit
    after the events were applied: per partition one past its highest offset in the batch, unreadable messages
    included (committed too: a poison message must not block its partition)."""
    events: list[events_pb2.Event] = []
    where: list[str] = []
    unreadable: list[str] = []
    commit: dict[tuple[str, int], int] = {}
    for r in records:
        name = f"{r.topic}/{r.partition}@{r.offset}"
        key = (r.topic, r.partition)
        commit[key] = max(commit.get(key, -1), r.offset + 1)
        try:
            text = (r.value or b"").decode("utf-8")
        except UnicodeDecodeError:
            unreadable.append(f"{name}: the value is not UTF-8 text")
            continue
        items = list(ev.read_jsonl(text.splitlines()))
        if not items:
            unreadable.append(f"{name}: empty message")
        for line, item in items:
            at = name if len(items) == 1 else f"{name} line {line}"
            if isinstance(item, str):
                unreadable.append(f"{at}: {item}")
            else:
                events.append(item)
                where.append(at)
    return KafkaBatch(events, where, unreadable, commit)


def send_until_applied(send: Callable[[], events_pb2.IngestEventsResponse], stop: threading.Event,
                       notice: Callable[[str], None], first_delay_s: float = 0.5,
                       max_delay_s: float = 30.0) -> events_pb2.IngestEventsResponse | None:
    """send() until it succeeds; transient failures are retried with exponential backoff, others raised. None when
    stop is set while waiting (the batch was not applied as far as the bridge knows: not committed)."""
    from tenure.client import TenureRpcError

    delay = first_delay_s
    while True:
        try:
            return send()
        except TenureRpcError as err:
            if err.code.name not in TRANSIENT:
                raise
            notice(f"IngestEvents failed ({err.code.name}: {err.details[:200]}); retrying in {delay:.1f}s")
        if stop.wait(delay):
            return None
        delay = min(delay * 2, max_delay_s)


def consumer_config(bootstrap: str, group: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """librdkafka settings: offsets committed by the bridge only (after IngestEvents), from the earliest offset
    when the group has none."""
    return {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
            "enable.auto.offset.store": False, "auto.offset.reset": "earliest", **(extra or {})}


def kafka_bridge(client: BaseClient, bootstrap: str, topic: str, group: str, out: IO[str], err: IO[str],
                 batch_events: int = ev.DEFAULT_BATCH_EVENTS, poll_s: float = 1.0,
                 stop: threading.Event | None = None) -> Report:
    """Consume --topic in batches of up to batch_events messages until stop is set (SIGINT / SIGTERM in the CLI);
    per batch: IngestEvents (retried while transient), then commit. Returns the running report."""
    try:
        from confluent_kafka import Consumer, KafkaException, TopicPartition
    except ImportError as exc:
        raise ConfigError("tenure ingest --from-kafka needs confluent-kafka: pip install 'tenure[kafka]'") from exc
    stop = stop or threading.Event()
    report = Report()
    consumer = Consumer(consumer_config(bootstrap, group))
    consumer.subscribe([topic])
    print(f"consuming {topic} from {bootstrap} as group {group}; Ctrl-C (or SIGTERM) stops", file=err, flush=True)
    try:
        while not stop.is_set():
            messages = consumer.consume(num_messages=batch_events, timeout=poll_s)
            records = []
            for m in messages:
                problem = m.error()
                if problem is not None:
                    if problem.fatal():
                        raise KafkaException(problem)
                    print(f"kafka: {problem}", file=err, flush=True)
                    continue
                records.append(Record.of(m))
            if not records:
                continue
            batch = plan_batch(records)
            for text in batch.unreadable:
                report.unreadable += 1
                report.problem(text)
            if batch.events:
                part = send_until_applied(functools.partial(client.ingest_events, batch.events, batch_events=batch_events),
                                          stop, lambda text: print(text, file=err, flush=True))
                if part is None:
                    break  # stopped while the service was unreachable: not committed, redelivered next time
                report.add(part, batch.where)
                for r in part.results:
                    if r.outcome == events_pb2.EVENT_REJECTED:
                        print(f"rejected {batch.where[r.index]} (event {r.event_id}): {r.error.message}", file=out)
            for text in batch.unreadable:
                print(f"unreadable {text}", file=out)
            try:
                consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in batch.commit.items()],
                                asynchronous=False)
            except KafkaException as exc:  # e.g. the partitions moved to another consumer: it gets them again
                print(f"kafka: commit failed ({exc}); the batch will be delivered again (harmless)", file=err)
            s = report.summary
            print(f"batch of {len(records):,} messages: total {s.received:,} received, {s.applied:,} applied, "
                  f"{s.duplicates:,} duplicates, {s.rejected:,} rejected", file=out, flush=True)
    finally:
        consumer.close()
    return report


def stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGINT and SIGTERM set `stop` (instead of raising KeyboardInterrupt); returns what restores the handlers."""
    old = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

    return restore


def run_ingest(target: str, file: str | None, bootstrap: str | None, topic: str | None, group: str,
               batch_events: int, out: IO[str], err: IO[str]) -> int:
    """`tenure ingest`: the exit status (module docstring)."""
    from tenure.client import BaseClient

    if bool(file) == bool(bootstrap):
        raise ConfigError("give either --file EVENTS.jsonl or --from-kafka BOOTSTRAP --topic TOPIC")
    if bootstrap and not topic:
        raise ConfigError("--from-kafka needs --topic")
    if not 1 <= batch_events <= ev.MAX_BATCH_EVENTS:
        raise ConfigError(f"--batch-events {batch_events}: expected 1 to {ev.MAX_BATCH_EVENTS:,}")
    with BaseClient.from_env(target) as client:  # TLS / token from the TENURE_* environment
        if file:
            report = ingest_file(client, Path(file), batch_events)
            print("\n".join(report.lines()), file=out)
            return 1 if report.failed else 0
        assert topic is not None and bootstrap is not None
        stop = threading.Event()
        restore = stop_on_signals(stop)
        try:
            report = kafka_bridge(client, bootstrap, topic, group, out, err, batch_events, stop=stop)
        finally:
            restore()
        print("stopped; " + report.lines()[0], file=out)
        return 0

