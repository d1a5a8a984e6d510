"""Segment moves: each re-scoring of the base is compared with the last one, and every customer
whose segment changed is recorded, in one SQLite file under the service's state directory.

A re-scoring is identified by its key (the snapshot and model versions it used): starting the
service again on the same versions, or a second worker process on the same port, records nothing
new. Moves get increasing sequence numbers, so a subscriber resumes after the last one it saw.

Real-time moves (`record_events`): after events change a customer's online feature row, the
customer's segments are compared with their current assignment (the last online one under the
same snapshot version, else the re-scoring's) and each family that changed is recorded at once in
the same moves table (rescoring_id 0, the event id): one sequence for both kinds, so resuming
after a sequence number loses nothing. The online assignments are kept per snapshot version (the
online store's namespace): a new snapshot version starts from its re-scoring again. A re-scoring
still compares with the previous re-scoring's assignment, not with real-time moves: a move already
heard from an event is recorded again by the re-scoring whose snapshot includes the event.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, NamedTuple

import numpy as np
import pandas as pd

from services.core import metrics
from tenure import sqlite

RFM, LIFECYCLE, CLUSTER, GRID = 1, 2, 3, 4
"""Segment families, as in the contract's SegmentFamily enum."""
FAMILY_NAMES = {RFM: "rfm", LIFECYCLE: "lifecycle", CLUSTER: "cluster", GRID: "grid"}
MAX_SEQUENCE = 2**63 - 1
"""Sequence numbers are SQLite integers (signed 64-bit): no move is ever numbered above this."""
ASSIGNMENTS_FILE = "segments-assignments-{rid}.npz"
ASSIGNMENTS_GLOB = "segments-assignments-*.npz"
"""The last re-scoring's assignments, next to segments.sqlite: one columnar file (customer ids sorted,
per family int32 codes into its segment names), written before the re-scoring's transaction commits."""
Coded = tuple[np.ndarray, np.ndarray]
"""(codes, names): a family's segment per customer is names[code] (-1: none)."""


class Assignments(NamedTuple):
    ids: np.ndarray
    """Customer ids, sorted, unique."""
    families: dict[int, Coded]


def _coded(values: np.ndarray | Coded) -> Coded:
    if isinstance(values, tuple):
        codes, names = values
        return np.asarray(codes, np.int32), np.asarray(names).astype(str)
    codes, uniques = pd.factorize(np.asarray(values).astype(str))
    return codes.astype(np.int32), np.asarray(uniques, dtype=str)


def _save(path: Path, ids: np.ndarray, families: dict[int, Coded]) -> None:
    """Sorted by id, written to a temporary file and renamed (readers never see half a file)."""
    order = np.argsort(ids, kind="stable")
    arrays = {"customer_ids": ids[order]}
    for family, (codes, names) in families.items():
        arrays[f"codes_{family}"], arrays[f"names_{family}"] = codes[order], names
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    with open(tmp, "wb") as out:
        np.savez(out, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, path)


def load_assignments(path: Path) -> Assignments:
    with np.load(path, allow_pickle=False) as z:
        families = {int(k.split("_", 1)[1]): (z[k], z["names_" + k.split("_", 1)[1]]) for k in z.files
                    if k.startswith("codes_")}
        return Assignments(z["customer_ids"], families)


def _moves(old: Assignments, ids: np.ndarray, new: dict[int, Coded]
           ) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """(family, customer ids, from, to) of the customers in both whose segment changed, per family
    present in both; in the order of ids."""
    if not len(old.ids):
        return
    if len(old.ids) == len(ids) and np.array_equal(old.ids, ids):
        pos, both = np.arange(len(ids)), np.ones(len(ids), bool)
    else:
        pos = np.minimum(np.searchsorted(old.ids, ids), len(old.ids) - 1)
        both = old.ids[pos] == ids
    for family, (codes, names) in new.items():
        if family not in old.families:
            continue
        old_codes, old_names = old.families[family]
        # old name code -> new name code (-2: a name the new assignment does not use)
        lookup = {n: i for i, n in enumerate(names.tolist())}
        translate = np.array([lookup.get(n, -2) for n in old_names.tolist()] + [-3], np.int64)
        was = np.full(len(ids), -1, np.int64)
        was[both] = old_codes[pos[both]]
        was = translate[was]  # -1 (not assigned before) -> -3, the last entry
        changed = (was != -3) & (was != codes)
        rows = np.flatnonzero(changed)
        if len(rows):
            yield family, ids[rows], old_names[old_codes[pos[rows]]], names[codes[rows]]

SCHEMA = """
CREATE TABLE IF NOT EXISTS rescorings (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT UNIQUE NOT NULL, snapshot_cutoff TEXT NOT NULL,
    at REAL NOT NULL, models TEXT NOT NULL, customers INTEGER NOT NULL, moves INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS assignments (
    customer_id TEXT NOT NULL, family INTEGER NOT NULL, segment TEXT NOT NULL,
    PRIMARY KEY (customer_id, family)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS moves (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, rescoring_id INTEGER NOT NULL, customer_id TEXT NOT NULL,
    family INTEGER NOT NULL, from_segment TEXT NOT NULL, to_segment TEXT NOT NULL, at REAL NOT NULL,
    event_id TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS online_assignments (
    customer_id TEXT NOT NULL, family INTEGER NOT NULL, segment TEXT NOT NULL, snapshot TEXT NOT NULL,
    PRIMARY KEY (customer_id, family)) WITHOUT ROWID;
"""
MOVE_COLUMNS = "seq, customer_id, family, from_segment, to_segment, rescoring_id, at, event_id"


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
    event_id: str = ""
    """The event behind a real-time move (rescoring_id 0); empty for a re-scoring's."""


class SegmentLog:
    """The moves recorded so far; thread-safe (one connection per call)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._changed = threading.Condition()
        self._online_version: str | None = None
        """The snapshot version whose online assignments this process last recorded (older ones are dropped)."""
        with sqlite.connect(self.path) as db:
            db.executescript(SCHEMA)
            if "event_id" not in {r[1] for r in db.execute("PRAGMA table_info(moves)")}:  # a file of an older build
                db.execute("ALTER TABLE moves ADD COLUMN event_id TEXT NOT NULL DEFAULT ''")

    def record(self, key: str, snapshot_cutoff: str, models: list[tuple[str, str]], customer_ids: np.ndarray,
               families: Mapping[int, np.ndarray | Coded]) -> Rescoring:
        """Compare these assignments with the stored ones, record the moves, store these instead.
        The first re-scoring records no moves (there is nothing to move from). A family is an array
        of segment names per customer, or (codes, names) (a segment is names[code])."""
        now = time.time()
        ids = np.asarray(customer_ids).astype(str)
        coded = {int(f): _coded(v) for f, v in families.items()}
        with sqlite.transaction(self.path) as db:
            row = db.execute("SELECT id FROM rescorings WHERE key = ?", (key,)).fetchone()
            if row is not None:  # already recorded (a restart, or another worker)
                return self.rescoring(int(row[0]))
            previous = db.execute("SELECT MAX(id) FROM rescorings").fetchone()[0]
            old = self._load(db, previous)
            cur = db.execute("INSERT INTO rescorings (key, snapshot_cutoff, at, models, customers, moves) "
                             "VALUES (?, ?, ?, ?, ?, 0)", (key, snapshot_cutoff, now, json.dumps(models), len(ids)))
            rid = int(cur.lastrowid or 0)
            moved: dict[int, int] = {}
            if old is not None:
                for family, cid, was, now_in in _moves(old, ids, coded):
                    moved[family] = len(cid)
                    db.executemany("INSERT INTO moves (rescoring_id, customer_id, family, from_segment, to_segment, "
                                   "at) VALUES (?, ?, ?, ?, ?, ?)",
                                   ((rid, c, family, o, n, now) for c, o, n in
                                    zip(cid.tolist(), was.tolist(), now_in.tolist())))
            db.execute("UPDATE rescorings SET moves = ? WHERE id = ?", (sum(moved.values()), rid))
            _save(self._file(rid), ids, coded)
            db.execute("DELETE FROM assignments")  # a state written before the columnar files
        for stale in self.path.parent.glob(ASSIGNMENTS_GLOB):
            number = stale.name.split("-")[-1].split(".")[0]
            if number.isdigit() and int(number) < rid:
                stale.unlink(missing_ok=True)
        metrics.RESCORINGS.inc()
        for family, count in moved.items():
            if count:
                metrics.SEGMENT_MOVES.labels(FAMILY_NAMES.get(family, str(family))).inc(count)
        with self._changed:
            self._changed.notify_all()
        return self.rescoring(rid)

    def _file(self, rid: int) -> Path:
        return self.path.parent / ASSIGNMENTS_FILE.format(rid=rid)

    def _load(self, db: sqlite3.Connection, rid: int | None) -> Assignments | None:
        """The assignments of re-scoring rid (its columnar file; the SQLite table of an older state)."""
        if rid is None:
            return None
        if self._file(rid).exists():
            return load_assignments(self._file(rid))
        rows = db.execute("SELECT customer_id, family, segment FROM assignments ORDER BY family, customer_id").fetchall()
        if not rows:
            return None
        frame = pd.DataFrame(rows, columns=["customer_id", "family", "segment"])
        ids = np.unique(frame["customer_id"].to_numpy(str))
        out: dict[int, Coded] = {}
        for family, part in frame.groupby("family"):
            names = np.full(len(ids), "", dtype=object)
            names[np.searchsorted(ids, part["customer_id"].to_numpy(str))] = part["segment"].to_numpy(object)
            present = np.zeros(len(ids), bool)
            present[np.searchsorted(ids, part["customer_id"].to_numpy(str))] = True
            codes, uniques = pd.factorize(names)
            out[int(family)] = (np.where(present, codes, -1).astype(np.int32), np.asarray(uniques, dtype=str))
        return Assignments(ids, out)

    def current(self) -> Assignments | None:
        """The assignments of the last re-scoring."""
        with sqlite.connect(self.path) as db:
            return self._load(db, db.execute("SELECT MAX(id) FROM rescorings").fetchone()[0])

    def assignments(self, ids: np.ndarray | list[str]) -> dict[int, np.ndarray]:
        """The stored segment of each id per family ('' where the id has none)."""
        current = self.current()
        if current is None:
            return {}
        want = np.asarray(ids).astype(str)
        pos = np.clip(np.searchsorted(current.ids, want), 0, max(len(current.ids) - 1, 0))
        known = (current.ids[pos] == want) if len(current.ids) else np.zeros(len(want), bool)
        out = {}
        for family, (codes, names) in current.families.items():
            c = np.where(known, codes[pos], -1) if len(current.ids) else np.full(len(want), -1)
            out[family] = np.where(c >= 0, np.append(names, "")[c], "").astype(object)
        return out

    def assignment_counts(self) -> dict[int, tuple[int, int]]:
        """Per family: (assignments, distinct customers) stored."""
        current = self.current()
        if current is None:
            return {}
        distinct = len(np.unique(current.ids))
        return {f: (int((codes >= 0).sum()), distinct if (codes >= 0).all() else -1)
                for f, (codes, _) in current.families.items()}

    def latest_rescoring(self) -> int | None:
        """The id of the last re-scoring recorded (by any process), None before the first."""
        with sqlite.connect(self.path) as db:
            rid = db.execute("SELECT MAX(id) FROM rescorings").fetchone()[0]
        return None if rid is None else int(rid)

    def record_events(self, snapshot_version: str, customer_ids: list[str], event_ids: list[str],
                      new: Mapping[int, np.ndarray], batch: Mapping[int, np.ndarray]) -> list[Move]:
        """Real-time moves: customer i's segments are now new[family][i] after event event_ids[i]; their current
        assignment is the last one recorded here under snapshot_version, else batch[family][i] (the re-scoring's;
        '' for a customer it does not hold). Each family whose segment differs is recorded as a move (rescoring_id
        0) and becomes the current assignment. In one transaction (one writer at a time across worker processes):
        the same change heard twice (two workers sharing the state directory) is recorded once."""
        now = time.time()
        moves: list[tuple[str, int, str, str, str]] = []
        with sqlite.transaction(self.path) as db:
            if self._online_version != snapshot_version:  # a new snapshot starts from its re-scoring
                db.execute("DELETE FROM online_assignments WHERE snapshot != ?", (snapshot_version,))
                self._online_version = snapshot_version
            last: dict[tuple[str, int], str] = {}
            for start in range(0, len(customer_ids), 500):
                part = customer_ids[start:start + 500]
                last.update(((c, int(f)), s) for c, f, s in db.execute(
                    "SELECT customer_id, family, segment FROM online_assignments WHERE snapshot = ? AND customer_id "
                    f"IN ({','.join('?' * len(part))})", (snapshot_version, *part)))
            for i, cid in enumerate(customer_ids):
                for family, names in new.items():
                    to = str(names[i])
                    was = last.get((cid, family))
                    if was is None:
                        was = str(batch[family][i]) if family in batch else ""
                    if to != was:
                        moves.append((cid, family, was, to, event_ids[i]))
            cur = db.execute("SELECT COALESCE(MAX(seq), 0) FROM moves").fetchone()[0]
            db.executemany("INSERT INTO moves (rescoring_id, customer_id, family, from_segment, to_segment, at, "
                           "event_id) VALUES (0, ?, ?, ?, ?, ?, ?)", ((c, f, o, n, now, e) for c, f, o, n, e in moves))
            db.executemany("INSERT OR REPLACE INTO online_assignments (customer_id, family, segment, snapshot) "
                           "VALUES (?, ?, ?, ?)", ((c, f, n, snapshot_version) for c, f, _, n, _ in moves))
            recorded = [Move(*r) for r in db.execute(f"SELECT {MOVE_COLUMNS} FROM moves WHERE seq > ? ORDER BY seq",
                                                     (cur,))] if moves else []
        for move in recorded:
            metrics.SEGMENT_MOVES.labels(FAMILY_NAMES.get(move.family, str(move.family))).inc()
        if recorded:
            with self._changed:
                self._changed.notify_all()
        return recorded

    def rescoring(self, rid: int) -> Rescoring:
        with sqlite.connect(self.path) as db:
            r = db.execute("SELECT id, snapshot_cutoff, at, models, moves FROM rescorings WHERE id = ?",
                           (rid,)).fetchone()
        return Rescoring(int(r[0]), r[1], float(r[2]), [tuple(m) for m in json.loads(r[3])], int(r[4]))

    def moves(self, after: int, families: set[int] | None = None, limit: int = 1_000) -> list[Move]:
        if after >= MAX_SEQUENCE:  # nothing can follow it (and SQLite cannot bind a larger integer)
            return []
        query = f"SELECT {MOVE_COLUMNS} FROM moves WHERE seq > ?"
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
