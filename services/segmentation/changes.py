"""Segment moves: each re-scoring of the base is compared with the last one, and every customer
whose segment changed is recorded, in one SQLite file under the service's state directory.

A re-scoring is identified by its key (the snapshot and model versions it used): starting the
service again on the same versions, or a second worker process on the same port, records nothing
new. Moves get increasing sequence numbers, so a subscriber resumes after the last one it saw.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from services.core import metrics
from tenure import sqlite

RFM, LIFECYCLE, CLUSTER, GRID = 1, 2, 3, 4
"""Segment families, as in the contract's SegmentFamily enum."""
FAMILY_NAMES = {RFM: "rfm", LIFECYCLE: "lifecycle", CLUSTER: "cluster", GRID: "grid"}
MAX_SEQUENCE = 2**63 - 1
"""Sequence numbers are SQLite integers (signed 64-bit): no move is ever numbered above this."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS rescorings (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT UNIQUE NOT NULL, snapshot_cutoff TEXT NOT NULL,
    at REAL NOT NULL, models TEXT NOT NULL, customers INTEGER NOT NULL, moves INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS assignments (
    customer_id TEXT NOT NULL, family INTEGER NOT NULL, segment TEXT NOT NULL,
    PRIMARY KEY (customer_id, family)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS moves (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, rescoring_id INTEGER NOT NULL, customer_id TEXT NOT NULL,
    family INTEGER NOT NULL, from_segment TEXT NOT NULL, to_segment TEXT NOT NULL, at REAL NOT NULL);
"""


@dataclass(frozen=True)
class Rescoring:
    id: int
    snapshot_cutoff: str
    at: float
    models: list[tuple[str, str]]
    moves: int


@dataclass(frozen=True)
class Move:
    seq: int
    customer_id: str
    family: int
    from_segment: str
    to_segment: str
    rescoring_id: int
    at: float


class SegmentLog:
    """The moves recorded so far; thread-safe (one connection per call)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._changed = threading.Condition()
        with sqlite.connect(self.path) as db:
            db.executescript(SCHEMA)

    def record(self, key: str, snapshot_cutoff: str, models: list[tuple[str, str]], customer_ids: np.ndarray,
               families: dict[int, np.ndarray]) -> Rescoring:
        """Compare these assignments with the stored ones, record the moves, store these instead.
        The first re-scoring records no moves (there is nothing to move from)."""
        now = time.time()
        ids = np.asarray(customer_ids).astype(str)
        new = pd.concat([pd.DataFrame({"customer_id": ids, "family": fam, "segment": np.asarray(seg).astype(str)})
                         for fam, seg in families.items()], ignore_index=True)
        with sqlite.transaction(self.path) as db:
            row = db.execute("SELECT id FROM rescorings WHERE key = ?", (key,)).fetchone()
            if row is not None:  # already recorded (a restart, or another worker)
                return self.rescoring(int(row[0]))
            old = pd.read_sql_query("SELECT customer_id, family, segment FROM assignments", db)
            cur = db.execute("INSERT INTO rescorings (key, snapshot_cutoff, at, models, customers, moves) "
                             "VALUES (?, ?, ?, ?, ?, 0)", (key, snapshot_cutoff, now, json.dumps(models), len(ids)))
            rid = int(cur.lastrowid or 0)
            both = new.merge(old, on=["customer_id", "family"], suffixes=("", "_old"))
            moved = both[both["segment"] != both["segment_old"]]
            db.executemany("INSERT INTO moves (rescoring_id, customer_id, family, from_segment, to_segment, at) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           ((rid, c, int(f), o, n, now) for c, f, o, n in
                            zip(moved["customer_id"], moved["family"], moved["segment_old"], moved["segment"])))
            db.execute("UPDATE rescorings SET moves = ? WHERE id = ?", (len(moved), rid))
            db.execute("DELETE FROM assignments")
            db.executemany("INSERT INTO assignments VALUES (?, ?, ?)",
                           zip(new["customer_id"], new["family"].astype(int), new["segment"]))
        metrics.RESCORINGS.inc()
        for family, count in moved["family"].value_counts().items():
            metrics.SEGMENT_MOVES.labels(FAMILY_NAMES.get(int(family), str(family))).inc(int(count))
        with self._changed:
            self._changed.notify_all()
        return self.rescoring(rid)

    def rescoring(self, rid: int) -> Rescoring:
        with sqlite.connect(self.path) as db:
            r = db.execute("SELECT id, snapshot_cutoff, at, models, moves FROM rescorings WHERE id = ?",
                           (rid,)).fetchone()
        return Rescoring(int(r[0]), r[1], float(r[2]), [tuple(m) for m in json.loads(r[3])], int(r[4]))

    def moves(self, after: int, families: set[int] | None = None, limit: int = 1_000) -> list[Move]:
        if after >= MAX_SEQUENCE:  # nothing can follow it (and SQLite cannot bind a larger integer)
            return []
        query = "SELECT seq, customer_id, family, from_segment, to_segment, rescoring_id, at FROM moves WHERE seq > ?"
        args: list[object] = [after]
        if families:
            query += f" AND family IN ({','.join('?' * len(families))})"
            args += sorted(families)
        with sqlite.connect(self.path) as db:
            rows = db.execute(query + " ORDER BY seq LIMIT ?", (*args, limit)).fetchall()
        return [Move(*r) for r in rows]

    def follow(self, after: int, families: set[int] | None, keep_going: bool,
               active: Callable[[], bool], poll_s: float = 1.0) -> Iterator[Move]:
        """Moves after `after`, in order; with keep_going, wait for new ones while active() holds.
        Polls too, so moves recorded by another worker process arrive within poll_s."""
        while True:
            batch = self.moves(after, families)
            for move in batch:
                yield move
                after = move.seq
            if batch:
                continue
            if not keep_going or not active():
                return
            with self._changed:
                self._changed.wait(poll_s)
