"""SQLite the way the services keep their state (segment moves, feedback events): a connection per
call (threads never share one), WAL (readers never wait for the writer), and writes in BEGIN
IMMEDIATE transactions (one writer at a time, across worker processes too)."""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """An autocommit connection, closed at the end of the block."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        yield db
    finally:
        db.close()


@contextmanager
def transaction(path: Path, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
    """A transaction, committed at the end of the block or rolled back if it raises. IMMEDIATE (the
    default) takes the write lock at once; DEFERRED gives a consistent snapshot for several reads."""
    with connect(path) as db:
        db.execute(f"BEGIN {mode}")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
