"""Segmentation logic without gRPC: the re-scoring of the whole base and what is read from it.

At load (a new snapshot or model version), every customer of the snapshot is scored by every
model (services.core.predictions) and segmented: RFM scores and named segment, lifecycle stage,
behavioural cluster, churn x purchase grid cell. Moves against the previous re-scoring are
recorded (services.segmentation.changes). Audiences, profiles, lookalike audiences and the
360-degree view read these arrays: a request is a mask and a sort away.

Only the feature snapshot is required. RFM and lifecycle come from the features; the cluster needs
the clusters model, the churn x purchase grid churn and purchase_30d; a part whose model is not in
the repository is None (and is not recorded as a segment family until the model appears).

Customers with an online feature row (events since the snapshot, tenure.online) are segmented from
that row by GetSegments and the 360-degree view: their RFM scores are bands of the re-scoring's base
distribution (the band a base member with the same values has), the other families run the same
rules and models on the row. `OnlineMoves` records their moves at once (changes.SegmentLog.record_events).
Audiences, profiles and the catalogue's counts stay the re-scoring's.
"""
from __future__ import annotations

import functools
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np

from services.core.errors import ModelMissing
from services.core.events import OnlineHub
from services.core.predictions import PredictionTable, Predictor, bands, model_names
from services.core.runtime import OnnxModel, column_index, inventory, load_optional, load_version, report_once
from services.segmentation.changes import CLUSTER, GRID, LIFECYCLE, RFM, Move, Rescoring, SegmentLog
from tenure.artifacts import Manifest, safe_name, versions
from tenure.errors import ArtifactError, InvalidInput, StoreUnavailable, TenureError, UnknownCustomer, UnknownModel
from tenure.online import Changes, OnlineFeatures
from tenure.profile import BaseStats
from tenure.segments import DEFAULT_RFM_RULES, RfmRule, lifecycle_stage, rfm_segment
from tenure.settings import ServiceSettings
from tenure.store import FeatureSnapshot

log = logging.getLogger(__name__)
MAX_AUDIENCE = 1_000_000
SCORE_BATCH = 8_192
"""Rows per model run of a re-scoring: onnxruntime keeps (per session) the memory of its largest run; the
clusters model holds about 2 KiB per row in flight."""
RESCORE_THREADS = min(2, os.cpu_count() or 1)
"""Threads of a re-scoring's model runs (each session runs single-threaded: settings.ort_threads)."""
T = TypeVar("T")
LOOKALIKE_PREFIX = "lookalike-"
CLUSTERS = "clusters"
GRID_MODELS = ("churn", "purchase_30d")
"""The churn x purchase grid needs both."""
STAGE_NAMES = {1: "new", 2: "active", 3: "at_risk", 4: "lapsed", 5: "lost"}
BAND_NAMES = {0: "unknown", 1: "low", 2: "medium", 3: "high"}


def segmentation_models(repo: Path) -> tuple[str, ...]:
    """Every model a Segmenter loads: the predictions, the clusters, and lookalikes trained by jobs."""
    extra = tuple(sorted(p.name for p in Path(repo).iterdir() if p.name.startswith(LOOKALIKE_PREFIX)
                         and versions(repo, p.name))) if Path(repo).is_dir() else ()
    return model_names(repo) + (CLUSTERS,) + extra


MODELS = segmentation_models


@dataclass
class SegmentRows:
    r: np.ndarray
    f: np.ndarray
    m: np.ndarray
    segment: np.ndarray
    stage: np.ndarray
    recency: np.ndarray
    orders: np.ndarray
    monetary: np.ndarray
    cluster: np.ndarray | None
    """None without the clusters model."""
    grid_churn: np.ndarray | None
    grid_purchase: np.ndarray | None
    """None without churn or purchase_30d."""
    errors: dict[int, TenureError]


@dataclass
class Lookalike:
    """A lookalike model and the whole base's scores, best first."""

    model: OnnxModel
    scores: np.ndarray
    is_seed: np.ndarray
    order: np.ndarray


def base_percentiles(values: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """percentile_scores(values, values, higher_is_better) with one sort: a value's mid-rank is its
    first position among the sorted values plus half its count (looked up among the distinct values)."""
    v = values if higher_is_better else -values
    ref = np.sort(v)
    if len(ref) == 0:
        return np.zeros(0, np.int64)
    starts = np.flatnonzero(np.concatenate(([True], ref[1:] != ref[:-1])))
    counts = np.diff(np.append(starts, len(ref)))
    at = np.searchsorted(ref[starts], v)
    mid = (2 * starts[at] + counts[at]) / 2.0
    return np.clip(1 + np.floor(5 * mid / len(ref)), 1, 5).astype(np.int64)


def band_among(ref: np.ndarray, v: np.ndarray) -> np.ndarray:
    """base_percentiles' band of values v (oriented: higher is better) among the sorted base `ref`: the mid-rank
    is (values below + values not above) / 2, which for a value of the base is its first position plus half its
    count, exactly base_percentiles' (integers, so the same float): a base member gets its own band."""
    mid = (np.searchsorted(ref, v, "left") + np.searchsorted(ref, v, "right")) / 2.0
    return np.clip(1 + np.floor(5 * mid / max(len(ref), 1)), 1, 5).astype(np.int64)


def _chunks(run: Callable[[np.ndarray], T], X: np.ndarray) -> list[T]:
    """run over X in chunks of SCORE_BATCH rows, in order, on RESCORE_THREADS threads (onnxruntime and
    numpy release the GIL): a bounded working set (onnxruntime's arena keeps its largest run's memory)."""
    starts = range(0, len(X), SCORE_BATCH)
    if len(starts) < 2 or RESCORE_THREADS < 2:
        return [run(X[s:s + SCORE_BATCH]) for s in starts]
    with ThreadPoolExecutor(RESCORE_THREADS, thread_name_prefix="rescore") as pool:
        return list(pool.map(lambda s: run(X[s:s + SCORE_BATCH]), starts))


def _batched(predictor: Predictor, X: np.ndarray) -> PredictionTable:
    parts = _chunks(predictor.predict, X) or [predictor.predict(X)]
    fields: dict[str, Any] = {}
    for name in PredictionTable.__dataclass_fields__:
        values = [getattr(p, name) for p in parts]
        fields[name] = None if values[0] is None else np.concatenate(values)
    return PredictionTable(**fields)


class Segmenter:
    def __init__(self, predictor: Predictor, clusters: OnnxModel | None, lookalikes: dict[str, Lookalike],
                 settings: ServiceSettings, log: SegmentLog | None = None,
                 rules: tuple[RfmRule, ...] = DEFAULT_RFM_RULES) -> None:
        self.predictor = predictor
        self.snapshot = snapshot = predictor.snapshot
        self.online: OnlineFeatures | None = None
        """The online store's rows (events since the snapshot), attached by load (services.core.events)."""
        self.settings = settings
        self.clusters = clusters
        self.lookalikes = lookalikes
        self.rules = rules
        names, X = snapshot.feature_names, snapshot.X
        self._col = col = {n: i for i, n in enumerate(names)}
        self.recency, self.orders, self.spend = (X[:, col["recency_days"]], X[:, col["orders_total"]],
                                                 X[:, col["spend_total"]])
        tenure, gap = X[:, col["tenure_days"]], X[:, col["gap_mean_days"]]
        gaps = gap[gap > 0]
        self.base_gap = float(np.median(gaps)) if len(gaps) else 30.0
        # The re-scoring: every model over the whole base.
        self.table = _batched(predictor, X)
        if "lookalike" in predictor.models and "lookalike" not in lookalikes and self.table.lookalike is not None:
            lookalikes["lookalike"] = self._lookalike(predictor.models["lookalike"], snapshot, self.table.lookalike)
        self.r = base_percentiles(self.recency, higher_is_better=False)
        self.f = base_percentiles(self.orders)
        self.m = base_percentiles(self.spend)
        self.segment = rfm_segment(self.r, self.f, self.m, rules)
        self.stage = lifecycle_stage(self.recency, tenure, gap, self.base_gap)
        self.cluster: np.ndarray | None = None
        self.cluster_info: list[dict[str, Any]] = []
        self._cluster_cols: np.ndarray | None = None
        if clusters is not None:
            self._cluster_cols = cols = column_index(names, clusters.features, clusters.name)
            parts = _chunks(lambda x: np.asarray(clusters.predict(np.ascontiguousarray(x[:, cols])), np.int64), X)
            self.cluster = np.concatenate(parts) if parts else np.zeros(0, np.int64)
            self.cluster_info = sorted(clusters.manifest.params.get("clusters", []), key=lambda c: int(c["id"]))
        self.cluster_names = np.array([c["name"] for c in self.cluster_info], dtype=object)
        self.grid_churn: np.ndarray | None = None
        self.grid_purchase: np.ndarray | None = None
        if self.table.churn is not None and all(predictor.has(m) for m in GRID_MODELS):
            self.grid_churn = bands(self.table.churn, settings.churn_band_medium, settings.churn_band_high)
            self.grid_purchase = bands(self.table.purchase[:, 1], settings.purchase_band_medium,
                                       settings.purchase_band_high)
        self.missing = predictor.missing + ((CLUSTERS,) if clusters is None else ())
        """Models the segmentation would use that the repository does not hold."""
        self.segment_missing = tuple(m for m in (CLUSTERS, *GRID_MODELS) if m in self.missing)
        """Those behind the parts of GetSegments (the cluster, the grid)."""
        self.base_stats = BaseStats.compute(X, names)
        self.rescoring: Rescoring | None = None
        if log is not None:
            core = self.versions()
            self.rescoring = log.record("|".join(f"{n}={v}" for n, v in core), snapshot.cutoff.isoformat(), core,
                                        snapshot.customer_ids, self.coded_families())

    @classmethod
    def load(cls, repo: Path, settings: ServiceSettings, log: SegmentLog | None = None,
             hub: OnlineHub | None = None) -> "Segmenter":
        """Every model that loads: a model none of whose versions loads (clusters, a lookalike trained
        by a job) is left out and logged once, like a missing one; the rest is served."""
        predictor = Predictor.load(repo, settings)
        snapshot = predictor.snapshot
        clusters = load_optional(repo, CLUSTERS, settings.ort_threads) if versions(repo, CLUSTERS) else None
        lookalikes: dict[str, Lookalike] = {}
        # the default lookalike's scores are the re-scoring's (PredictionTable.lookalike): built in __init__
        for name in segmentation_models(repo):
            if not name.startswith(LOOKALIKE_PREFIX):
                continue

            def load(vdir: Path, manifest: Manifest) -> Lookalike:
                return cls._lookalike(OnnxModel(vdir, manifest, settings.ort_threads), snapshot)

            try:
                lookalikes[name] = load_version(repo, name, load)
            except ArtifactError as err:
                report_once(str(err), f"{err}; its lookalike audience is not served (the others are)")
        seg = cls(predictor, clusters, lookalikes, settings, log)
        seg.online = hub.attach(snapshot) if hub is not None else None
        return seg

    def versions(self) -> list[tuple[str, str]]:
        """The snapshot and every model of the re-scoring (lookalikes trained by jobs aside)."""
        extra = [(self.clusters.name, self.clusters.version)] if self.clusters is not None else []
        return self.predictor.versions() + extra

    def describe(self) -> str:
        """The one log line of a loaded re-scoring: its models and the missing ones."""
        jobs = sorted(n for n in self.lookalikes if n.startswith(LOOKALIKE_PREFIX))
        return ("segmentation: " + inventory(self.versions(), self.missing)
                + (f"; lookalikes trained by jobs: {', '.join(jobs)}" if jobs else ""))

    @staticmethod
    def _lookalike(model: OnnxModel, snapshot: FeatureSnapshot, scores: np.ndarray | None = None) -> Lookalike:
        """The whole base scored by a lookalike model (unless given); its seed from the same version's seed_ids.txt."""
        seed_file = model.path.parent / "seed_ids.txt"
        seed = set(seed_file.read_text().split()) if seed_file.exists() else set()
        if scores is None:
            cols = column_index(snapshot.feature_names, model.features, model.name)
            X = snapshot.X
            parts = _chunks(lambda x: model.predict(np.ascontiguousarray(x[:, cols])), X)
            scores = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        is_seed = np.zeros(len(snapshot.customer_ids), bool)
        rows = snapshot.rows(sorted(seed))
        is_seed[rows[rows >= 0]] = True
        return Lookalike(model, scores, is_seed, np.argsort(-scores, kind="stable"))

    # -- segment names per family -------------------------------------------------------------------

    def stage_names(self, stage: np.ndarray | None = None) -> np.ndarray:
        lookup = np.array(["unknown", *(STAGE_NAMES[i] for i in range(1, 6))], dtype=object)
        return lookup[self.stage if stage is None else stage]

    def grid_names(self, churn: np.ndarray | None = None, purchase: np.ndarray | None = None) -> np.ndarray:
        churn = self.grid_churn if churn is None else churn
        purchase = self.grid_purchase if purchase is None else purchase
        if churn is None or purchase is None:
            raise self.missing_for("grid")
        c = np.array([BAND_NAMES[int(b)] for b in range(4)], dtype=object)
        return c[churn] + " churn / " + c[purchase] + " purchase"

    def families(self) -> dict[int, np.ndarray]:
        """The segment families of the re-scoring: those whose models are missing are left out."""
        families = {RFM: self.segment, LIFECYCLE: self.stage_names()}
        if self.cluster is not None:
            families[CLUSTER] = self.cluster_names[self.cluster]
        if self.grid_churn is not None:
            families[GRID] = self.grid_names()
        return families

    def coded_families(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """families() as (codes, names) per family (a segment is names[code]): what the SegmentLog stores."""
        cell_r, cell_fm = np.repeat(np.arange(1, 6), 5), np.tile(np.arange(1, 6), 5)
        names, cell = np.unique(rfm_segment(cell_r, cell_fm, cell_fm, self.rules).astype(str), return_inverse=True)
        fm = np.floor((self.f + self.m) / 2 + 0.5).astype(np.int64)  # as rfm_segment; r and fm are 1..5
        families = {RFM: (cell[(self.r - 1) * 5 + fm - 1], names),
                    LIFECYCLE: (self.stage, self.stage_names(np.arange(6)).astype(str))}
        if self.cluster is not None:
            families[CLUSTER] = (self.cluster, self.cluster_names.astype(str))
        if self.grid_churn is not None and self.grid_purchase is not None:
            families[GRID] = (self.grid_churn * 4 + self.grid_purchase,
                              self.grid_names(np.repeat(np.arange(4), 4), np.tile(np.arange(4), 4)).astype(str))
        return families

    def missing_for(self, what: str, label: str = "") -> ModelMissing:
        """The error (FAILED_PRECONDITION) for a part whose model is missing: what is "grid",
        "cluster" or a model name; label says what needed it."""
        models = {"grid": GRID_MODELS, "cluster": (CLUSTERS,)}.get(what, (what,))
        model = next((m for m in models if m in self.missing), models[0])
        label = label or {"grid": "the churn x purchase grid", "cluster": "the cluster"}.get(what, what)
        return ModelMissing(f"{label} needs the model {model!r}, which is not in the repository: the shop's data "
                            "could not support it, or it was not published", model)

    # -- reads ---------------------------------------------------------------------------------------

    def rows(self, ids: list[str]) -> tuple[np.ndarray, dict[int, TenureError]]:
        rows = self.snapshot.rows(ids)
        errors: dict[int, TenureError] = {
            int(i): UnknownCustomer(f"customer {ids[i][:100]!r} is not in the feature store "
                                    f"(snapshot {self.snapshot.version})")
            if ids[i] else InvalidInput("customer_id is empty; expected a customer id of the feature store")
            for i in np.flatnonzero(rows < 0)
        }
        return rows, errors

    def segments(self, ids: list[str]) -> SegmentRows:
        """The re-scoring's segments; a customer with an online row (events since the snapshot) gets those of
        the row (`segment_rows`), a customer the snapshot does not hold too."""
        rows, errors = self.rows(ids)
        online = self.online_rows(ids)
        s = np.maximum(rows, 0)

        def pick(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[s]

        out = SegmentRows(self.r[s], self.f[s], self.m[s], self.segment[s], self.stage[s], self.recency[s],
                          self.orders[s], self.spend[s], pick(self.cluster), pick(self.grid_churn),
                          pick(self.grid_purchase), errors)
        if online:
            at = np.fromiter(online, np.int64, len(online))
            fresh = self.segment_rows(np.stack(list(online.values())))
            for name in ("r", "f", "m", "segment", "stage", "recency", "orders", "monetary", "cluster", "grid_churn",
                         "grid_purchase"):
                values = getattr(out, name)
                if values is not None:
                    values[at] = getattr(fresh, name)
            for i in online:
                errors.pop(i, None)
        return out

    def online_rows(self, ids: list[str]) -> dict[int, np.ndarray]:
        """{position in ids: online feature row} of the customers with one (none when the store is off)."""
        if self.online is None or not ids:
            return {}
        try:
            return self.online.vectors(ids)
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise StoreUnavailable(f"the online feature store cannot be reached ({type(exc).__name__}); retry") from exc
        except Exception as exc:
            if type(exc).__module__.startswith("redis"):
                raise StoreUnavailable(f"the online feature store failed ({type(exc).__name__}: {str(exc)[:200]}); "
                                       "retry") from exc
            raise

    def customer(self, cid: str) -> tuple[np.ndarray, SegmentRows]:
        """The customer's feature row (1, n_features) and segments: the online row if there is one, else the
        snapshot's (UnknownCustomer / InvalidInput when neither holds them)."""
        online = self.online_rows([cid]) if cid else {}
        if online:
            X = np.array(online[0], np.float32).reshape(1, -1)
            return X, self.segment_rows(X)
        rows, errors = self.rows([cid])
        if errors:
            raise errors[0]  # NOT_FOUND, or INVALID_ARGUMENT for an empty id
        row = int(rows[0])
        return self.snapshot.X[row:row + 1], self.segments([cid])

    @functools.cached_property
    def _base_sorted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The base's -recency, orders and spend, sorted (the RFM reference of online rows; built at first use)."""
        return np.sort(-self.recency), np.sort(self.orders), np.sort(self.spend)

    def segment_rows(self, X: np.ndarray) -> SegmentRows:
        """Segments of feature rows that are not the snapshot's (online rows), by the re-scoring's rules: RFM
        bands among the base's values, lifecycle with the base's gap, the clusters and grid models on the rows."""
        col = self._col
        recency, orders, spend = X[:, col["recency_days"]], X[:, col["orders_total"]], X[:, col["spend_total"]]
        ref_r, ref_f, ref_m = self._base_sorted
        r, f, m = band_among(ref_r, -recency), band_among(ref_f, orders), band_among(ref_m, spend)
        stage = lifecycle_stage(recency, X[:, col["tenure_days"]], X[:, col["gap_mean_days"]], self.base_gap)
        cluster = grid_churn = grid_purchase = None
        if self.clusters is not None and self._cluster_cols is not None:
            cluster = np.asarray(self.clusters.predict(np.ascontiguousarray(X[:, self._cluster_cols])), np.int64)
        if self.grid_churn is not None:
            s = self.settings
            churn = self.predictor.score("churn", X)
            purchase = np.asarray(self.predictor.score("purchase_30d", X), np.float32)  # as PredictionTable.purchase
            grid_churn = bands(churn, s.churn_band_medium, s.churn_band_high)
            grid_purchase = bands(purchase, s.purchase_band_medium, s.purchase_band_high)
        return SegmentRows(r, f, m, rfm_segment(r, f, m, self.rules), stage, recency, orders, spend, cluster,
                           grid_churn, grid_purchase, {})

    def family_names(self, rows: SegmentRows) -> dict[int, np.ndarray]:
        """The segment of each row per family, named as families() names them."""
        out = {RFM: rows.segment.astype(str), LIFECYCLE: self.stage_names(rows.stage).astype(str)}
        if rows.cluster is not None:
            out[CLUSTER] = self.cluster_names[rows.cluster].astype(str)
        if rows.grid_churn is not None and rows.grid_purchase is not None:
            out[GRID] = self.grid_names(rows.grid_churn, rows.grid_purchase).astype(str)
        return out

    def batch_assignment(self, ids: list[str], log: SegmentLog) -> dict[int, np.ndarray]:
        """The re-scoring's segment of each id per family ('' where it holds none): this Segmenter's own
        arrays when its re-scoring is the log's last one, else the log's (SegmentLog.assignments)."""
        if self.rescoring is None or log.latest_rescoring() != self.rescoring.id:
            return {f: v.astype(str) for f, v in log.assignments(ids).items()}
        rows = self.snapshot.rows(ids)
        s = np.maximum(rows, 0)

        def pick(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[s]

        names = self.family_names(SegmentRows(self.r[s], self.f[s], self.m[s], self.segment[s], self.stage[s],
                                              self.recency[s], self.orders[s], self.spend[s], pick(self.cluster),
                                              pick(self.grid_churn), pick(self.grid_purchase), {}))
        return {f: np.where(rows >= 0, v, "") for f, v in names.items()}

    def record_event_moves(self, online: OnlineFeatures, changes: Changes, log: SegmentLog) -> list[Move]:
        """The customers events changed: their segments from the online rows, compared with their current
        assignment; the moves recorded (SegmentLog.record_events)."""
        ids = [c for c, _ in changes]
        vectors = online.vectors(ids)  # a customer with returns only has no row: not segmented
        if not vectors:
            return []
        at = sorted(vectors)
        cids, events = [ids[i] for i in at], [changes[i][1] for i in at]
        new = self.family_names(self.segment_rows(np.stack([vectors[i] for i in at])))
        return log.record_events(self.snapshot.version, cids, events, new, self.batch_assignment(cids, log))

    def lookalike(self, name: str) -> Lookalike:
        name = safe_name(name, "lookalike model") if name else "lookalike"
        found = self.lookalikes.get(name) or self.lookalikes.get(LOOKALIKE_PREFIX + name)
        if found is None and name == "lookalike":
            raise ModelMissing.named("lookalike", "the default lookalike audience; lookalikes trained by jobs "
                                     f"are served: {', '.join(sorted(self.lookalikes)) or 'none yet'}")
        if found is None:
            raise UnknownModel(f"lookalike model {name[:64]!r} is not loaded; loaded: {', '.join(sorted(self.lookalikes))}")
        return found

    def audience(self, size: int, include_seed: bool, min_score: float,
                 model: str = "") -> Iterator[tuple[str, float, int]]:
        """(customer id, score, rank) best first."""
        if not 1 <= size <= MAX_AUDIENCE:
            raise InvalidInput(f"size={size}; expected 1..{MAX_AUDIENCE}")
        if not 0.0 <= min_score <= 1.0:  # also NaN, which would silently drop the floor
            raise InvalidInput(f"min_score={min_score}; expected a number in [0, 1] (0: no floor)")
        look = self.lookalike(model)
        rank = 0
        ids = self.snapshot.customer_ids
        for row in look.order:
            if look.scores[row] < min_score:
                return
            if not include_seed and look.is_seed[row]:
                continue
            rank += 1
            yield str(ids[row]), float(look.scores[row]), rank
            if rank >= size:
                return

    def counts(self, values: np.ndarray) -> list[tuple[str, int, float]]:
        names, counts = np.unique(values.astype(str), return_counts=True)
        order = np.argsort(-counts, kind="stable")
        n = max(len(values), 1)
        return [(str(names[i]), int(counts[i]), float(counts[i] / n)) for i in order]


class OnlineMoves:
    """The segmentation service's listener of the online store (OnlineHub.listen). After every batch of events
    applied (embedded: by this server; Redis: by any service or replica sharing the store) the changed customers
    are queued, and a worker thread records their moves (Segmenter.record_event_moves), which wakes the
    StreamSegmentChanges subscribers. The listener only queues: an ingesting call (embedded) or the Redis
    subscription thread never waits for SQLite's commit (a few ms to ~20 ms of fsync); the worker takes every
    batch queued meanwhile in one transaction (a customer changed twice is segmented once, from its latest row,
    and the move names the last event). Changes to another snapshot version's store than the served one (the
    previous version, or the next one while it loads) are not segmented."""

    CHUNK = 2_000
    """Customers per transaction."""

    def __init__(self, current: Callable[[], Segmenter | None], log: SegmentLog) -> None:
        self.current = current
        self.log = log
        self._pending: list[tuple[OnlineFeatures, Changes]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="segment-moves", daemon=True)
        self._thread.start()

    def __call__(self, online: OnlineFeatures, changes: Changes) -> None:
        if changes:
            with self._cond:
                self._pending.append((online, changes))
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                batch, self._pending = self._pending, []
            try:
                self._record(batch)
            except Exception:  # the events are applied whatever happens here; keep listening
                log.exception("segment moves of %d event batches were not recorded", len(batch))

    def _record(self, batch: list[tuple[OnlineFeatures, Changes]]) -> None:
        seg = self.current()
        if seg is None or seg.online is None:
            return
        latest: dict[str, str] = {}
        for online, changes in batch:
            if online is seg.online:
                for cid, event_id in changes:
                    latest.pop(cid, None)  # ordered by each customer's last change
                    latest[cid] = event_id
        merged = list(latest.items())
        for start in range(0, len(merged), self.CHUNK):
            seg.record_event_moves(seg.online, merged[start:start + self.CHUNK], self.log)

    def close(self) -> None:
        """Record what is queued, then stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=10)
