"""Segmentation logic without gRPC: the re-scoring of the whole base and what is read from it.

At load (a new snapshot or model version), every customer of the snapshot is scored by every
model (services.core.predictions) and segmented: RFM scores and named segment, lifecycle stage,
behavioural cluster, churn x purchase grid cell. Moves against the previous re-scoring are
recorded (services.segmentation.changes). Audiences, profiles, lookalike audiences and the
360-degree view read these arrays: a request is a mask and a sort away.

Only the feature snapshot is required. RFM and lifecycle come from the features; the cluster needs
the clusters model, the churn x purchase grid churn and purchase_30d; a part whose model is not in
the repository is None (and is not recorded as a segment family until the model appears).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np

from services.core.errors import ModelMissing
from services.core.predictions import PredictionTable, Predictor, bands, model_names
from services.core.runtime import OnnxModel, column_index, inventory, load_optional, load_version, report_once
from services.segmentation.changes import CLUSTER, GRID, LIFECYCLE, RFM, Rescoring, SegmentLog
from tenure.artifacts import Manifest, safe_name, versions
from tenure.errors import ArtifactError, InvalidInput, TenureError, UnknownCustomer, UnknownModel
from tenure.profile import BaseStats
from tenure.segments import DEFAULT_RFM_RULES, RfmRule, lifecycle_stage, rfm_segment
from tenure.settings import ServiceSettings
from tenure.store import FeatureSnapshot

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
        self.settings = settings
        self.clusters = clusters
        self.lookalikes = lookalikes
        self.rules = rules
        names, X = snapshot.feature_names, snapshot.X
        col = {n: i for i, n in enumerate(names)}
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
        if clusters is not None:
            cols = column_index(names, clusters.features, clusters.name)
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
    def load(cls, repo: Path, settings: ServiceSettings, log: SegmentLog | None = None) -> "Segmenter":
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
        return cls(predictor, clusters, lookalikes, settings, log)

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
        rows, errors = self.rows(ids)
        s = np.maximum(rows, 0)

        def pick(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[s]

        return SegmentRows(self.r[s], self.f[s], self.m[s], self.segment[s], self.stage[s], self.recency[s],
                           self.orders[s], self.spend[s], pick(self.cluster), pick(self.grid_churn),
                           pick(self.grid_purchase), errors)

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
