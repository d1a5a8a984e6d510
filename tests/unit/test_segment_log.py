"""The segment log's columnar assignments: round trips, moves equal to the per-row comparison, and
an older state (assignments in SQLite) upgraded without losing its moves."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.core.predictions import PredictionTable, Predictor
from services.segmentation import engine
from services.segmentation.changes import ASSIGNMENTS_GLOB, CLUSTER, GRID, LIFECYCLE, RFM, SegmentLog
from services.segmentation.engine import Segmenter
from tenure import sqlite
from tenure.segments import percentile_scores
from tenure.settings import ServiceSettings


def reference_moves(old_ids: np.ndarray, old: dict[int, np.ndarray], ids: np.ndarray,
                    new: dict[int, np.ndarray]) -> list[tuple[str, int, str, str]]:
    """The comparison as it was written first: a merge of (customer, family, segment) rows."""
    def frame(i: np.ndarray, fams: dict[int, np.ndarray]) -> pd.DataFrame:
        return pd.concat([pd.DataFrame({"customer_id": i.astype(str), "family": f, "segment": s.astype(str)})
                          for f, s in fams.items()], ignore_index=True)

    both = frame(ids, new).merge(frame(old_ids, old), on=["customer_id", "family"], suffixes=("", "_old"))
    moved = both[both["segment"] != both["segment_old"]]
    return list(zip(moved["customer_id"], moved["family"].astype(int), moved["segment_old"], moved["segment"]))


def recorded(log: SegmentLog, rid: int) -> list[tuple[str, int, str, str]]:
    return [(m.customer_id, m.family, m.from_segment, m.to_segment) for m in log.moves(0, limit=10**9)
            if m.rescoring_id == rid]


def test_assignments_round_trip_and_moves_equal_the_row_comparison(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    log = SegmentLog(tmp_path / "segments.sqlite")
    ids_a = np.array([f"c{i:05d}" for i in rng.permutation(3_000)])
    fam_a = {RFM: rng.choice(["Champions", "Lost", "New"], 3_000), LIFECYCLE: rng.choice(["new", "active"], 3_000)}
    first = log.record("a", "2026-01-01", [], ids_a, fam_a)
    assert first.moves == 0 and recorded(log, first.id) == []
    stored = log.assignments(ids_a[:50].tolist() + ["nobody"])
    for family, segments in fam_a.items():
        assert stored[family].tolist() == segments[:50].tolist() + [""]
    assert log.assignment_counts() == {RFM: (3_000, 3_000), LIFECYCLE: (3_000, 3_000)}
    # some customers leave, some arrive, a family appears, a segment name is new
    ids_b = np.concatenate([ids_a[500:], [f"n{i}" for i in range(200)]])
    fam_b = {RFM: rng.choice(["Champions", "Lost", "At Risk"], len(ids_b)),
             LIFECYCLE: rng.choice(["active", "new", "lost"], len(ids_b)), CLUSTER: np.full(len(ids_b), "x")}
    codes, names = pd.factorize(fam_b[LIFECYCLE])
    second = log.record("b", "2026-01-08", [], ids_b, {RFM: fam_b[RFM], LIFECYCLE: (codes, np.asarray(names)),
                                                      CLUSTER: fam_b[CLUSTER]})
    want = reference_moves(ids_a, fam_a, ids_b, {RFM: fam_b[RFM], LIFECYCLE: fam_b[LIFECYCLE]})
    assert len(want) > 1_000 and recorded(log, second.id) == want and second.moves == len(want)
    assert log.record("b", "2026-01-08", [], ids_b, fam_b).id == second.id  # recorded once
    assert [p.name for p in tmp_path.glob(ASSIGNMENTS_GLOB)] == [f"segments-assignments-{second.id}.npz"]
    assert log.assignments(ids_b[-3:])[CLUSTER].tolist() == ["x"] * 3


def test_a_state_with_sqlite_assignments_is_compared_then_upgraded(tmp_path: Path) -> None:
    log = SegmentLog(tmp_path / "segments.sqlite")
    with sqlite.transaction(log.path) as db:
        db.execute("INSERT INTO rescorings (key, snapshot_cutoff, at, models, customers, moves) "
                   "VALUES ('old', '2026-01-01', 0, '[]', 3, 0)")
        db.executemany("INSERT INTO assignments VALUES (?, ?, ?)",
                       [("a", RFM, "Lost"), ("b", RFM, "New"), ("c", RFM, "New"), ("a", GRID, "g")])
    rescoring = log.record("new", "2026-02-01", [], np.array(["c", "b", "a"]),
                           {RFM: np.array(["New", "Lost", "Lost"]), GRID: np.array(["g", "g", "h"])})
    assert recorded(log, rescoring.id) == [("b", RFM, "New", "Lost"), ("a", GRID, "g", "h")]
    with sqlite.connect(log.path) as db:
        assert db.execute("SELECT COUNT(*) FROM assignments").fetchone()[0] == 0
    assert log.assignments(["a", "b", "c"])[RFM].tolist() == ["Lost", "Lost", "New"]


def test_a_real_rescoring_stores_its_segments_and_the_moves_of_the_old_comparison(trained_repo: Path,
                                                                                 tmp_path: Path) -> None:
    settings = ServiceSettings(models_dir=trained_repo, state_dir=tmp_path)
    log = SegmentLog(tmp_path / "segments.sqlite")
    first = Segmenter.load(trained_repo, settings, log)
    snap = first.snapshot
    X = snap.X.copy()
    col = snap.feature_names.index("recency_days")
    X[:, col] += np.where(np.arange(len(X)) % 3 == 0, 60, 0).astype(X.dtype)  # a third lapse two months
    later = dataclasses.replace(snap, X=X, version=snap.version + "-later")
    second = Segmenter(Predictor(later, first.predictor.models, settings), first.clusters, {}, settings, log)
    assert second.rescoring is not None and first.rescoring is not None
    ids = snap.customer_ids.astype(str)
    stored = log.assignments(ids)
    for family, segments in second.families().items():
        assert stored[family].tolist() == segments.astype(str).tolist()
    want = reference_moves(ids, first.families(), ids, second.families())
    assert want and recorded(log, second.rescoring.id) == want
    assert "lookalike" not in first.lookalikes or np.array_equal(
        first.lookalikes["lookalike"].scores, first.predictor.score("lookalike", snap.X))


def test_a_rescoring_in_chunks_on_threads_equals_the_one_block_rescoring(trained_repo: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Models run in chunks of SCORE_BATCH rows on RESCORE_THREADS threads: the same answers as one run."""
    settings = ServiceSettings(models_dir=trained_repo, state_dir=tmp_path)
    whole = Segmenter.load(trained_repo, settings)
    monkeypatch.setattr(engine, "SCORE_BATCH", max(len(whole.snapshot.customer_ids) // 7, 1))
    monkeypatch.setattr(engine, "RESCORE_THREADS", 2)
    chunked = Segmenter.load(trained_repo, settings)
    for name in PredictionTable.__dataclass_fields__:
        a, b = getattr(whole.table, name), getattr(chunked.table, name)
        assert (a is None and b is None) or np.array_equal(a, b, equal_nan=True), name
    for family, segments in whole.families().items():
        assert chunked.families()[family].tolist() == segments.tolist()
    for name, look in whole.lookalikes.items():
        assert np.array_equal(look.scores, chunked.lookalikes[name].scores)
        assert np.array_equal(look.is_seed, chunked.lookalikes[name].is_seed)
    np.testing.assert_allclose(chunked.base_stats.mean, whole.base_stats.mean, rtol=1e-12)
    for got, values, higher in ((whole.r, whole.recency, False), (whole.f, whole.orders, True),
                                (whole.m, whole.spend, True)):  # the one-sort bands equal percentile_scores'
        assert np.array_equal(got, percentile_scores(values, values, higher_is_better=higher))
