"""Segmentation re-scoring at scale: `python -m bench.rescore --customers N [--json]`.

What is measured is what the segmentation service does when a new snapshot arrives
(services.segmentation.engine.Segmenter.load with its SegmentLog): every customer scored by every
model, segmented (RFM, lifecycle, cluster, churn x purchase grid, lookalike ranking), compared
with the previous assignment (moves) and written to the state store.

The data (built once, cached under $TENURE_BENCH_CACHE/rescore, default /tmp/tenure-bench/rescore):
the bench's trained repository ($TENURE_BENCH_CACHE/repo, built by `make bench`; read only) gives
the models, copied next to two synthetic feature snapshots of N customers:

- snapshot A: N rows resampled (with replacement, seeded) from the real snapshot's customers, with
  fresh ids (C0000000...), recency/tenure jittered by -3..+3 days and the spend columns scaled by
  a lognormal factor (sigma 0.05); each row keeps its source customer's product history (the
  affinity rows are resampled with it);
- snapshot B, a week later: every customer's recency and tenure + 7 days, except 15% who ordered
  in that week (recency 0..6 days, one more order, spend + their average order value).

The child process (fresh state dir) loads A (the first re-scoring: no moves), then B while A is
still held (as the service's Holder does: peak memory includes both). Reported: the second
re-scoring's wall time and CPU time (robust on a shared machine), the child's peak RSS (VmHWM), the moves, and ok: every customer assigned
once per family, a sample's stored segments equal segments computed in-process for those rows
alone (the models run on the sample, percentile bands against the whole base), and the sample's
recorded moves equal the differences between its A and B segments.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
SEED = 11
SAMPLE = 2_000
ORDERED_SHARE = 0.15


def cache_dir() -> Path:
    return Path(os.environ.get("TENURE_BENCH_CACHE", "/tmp/tenure-bench")).resolve()


def _resample_csr(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(new indptr, positions into the old indices/data) for the CSR rows `rows`, in order."""
    starts, lengths = indptr[rows].astype(np.int64), (indptr[rows + 1] - indptr[rows]).astype(np.int64)
    new_indptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lengths, out=new_indptr[1:])
    pos = np.repeat(starts - new_indptr[:-1], lengths) + np.arange(int(new_indptr[-1]), dtype=np.int64)
    return new_indptr, pos


def build(customers: int, base_repo: Path, out: Path) -> tuple[Path, Path]:
    """Two repositories (snapshot A, snapshot B a week later) of `customers` synthetic customers,
    cached in out; built once."""
    from tenure.artifacts import Manifest, latest_valid
    from tenure.features import AffinityState
    from tenure.sparse import CSR
    from tenure.store import SNAPSHOT_NAME, FeatureSnapshot

    repos = (out / "repo-a", out / "repo-b")
    if (out / "done").exists():
        return repos
    if not (base_repo / SNAPSHOT_NAME).is_dir():
        raise SystemExit(f"{base_repo} holds no trained repository: run `make bench` (or python -m bench) once")
    shutil.rmtree(out, ignore_errors=True)
    vdir, manifest = latest_valid(base_repo, SNAPSHOT_NAME)
    base = FeatureSnapshot.load(vdir, manifest)
    rng = np.random.default_rng(SEED)
    rows = rng.integers(0, len(base.customer_ids), customers)
    col = {n: i for i, n in enumerate(base.feature_names)}
    X = base.X[rows].copy()
    jitter = rng.integers(-3, 4, customers).astype(np.float32)
    X[:, col["recency_days"]] = np.maximum(X[:, col["recency_days"]] + jitter, 0)
    X[:, col["tenure_days"]] = np.maximum(X[:, col["tenure_days"]] + jitter, X[:, col["recency_days"]])
    scale = rng.lognormal(0.0, 0.05, customers).astype(np.float32)
    for name in ("spend_total", "avg_order_value", "spend_180d", "spend_prev_180d"):
        X[:, col[name]] *= scale
    ids = np.char.add("C", np.char.zfill(np.arange(customers).astype(str), 7))
    a = base.affinity
    indptr, pos = _resample_csr(a.hist.indptr, rows)
    indices = a.hist.indices[pos]
    shape = (customers, a.hist.shape[1])
    affinity = AffinityState(hist=CSR(a.hist.data[pos], indices, indptr, shape),
                             hist_last=CSR(a.hist_last.data[pos], indices, indptr, shape), cond=a.cond,
                             pop_90d=a.pop_90d, pop_all=a.pop_all, pop_in_cat=a.pop_in_cat,
                             repeat_rate=a.repeat_rate, price=a.price, product_cat=a.product_cat,
                             n_categories=a.n_categories)
    # A week later: 15% ordered, the others are 7 days further from their last order.
    Xb = X.copy()
    ordered = rng.random(customers) < ORDERED_SHARE
    Xb[:, col["tenure_days"]] += 7
    Xb[:, col["recency_days"]] = np.where(ordered, rng.integers(0, 7, customers), X[:, col["recency_days"]] + 7)
    for name in ("orders_total", "orders_90d", "orders_365d"):
        Xb[:, col[name]] += ordered
    for name in ("spend_total", "spend_180d"):
        Xb[:, col[name]] += np.where(ordered, X[:, col["avg_order_value"]], 0)
    snapshots = (X, base.cutoff), (Xb, base.cutoff + pd.Timedelta(days=7))
    for repo, (features, cutoff) in zip(repos, snapshots):
        repo.mkdir(parents=True)
        for model in base_repo.iterdir():
            if model.is_dir() and model.name not in (SNAPSHOT_NAME, "bench") and not model.name.startswith("."):
                shutil.copytree(model, repo / model.name)
        snap = FeatureSnapshot(cutoff=cutoff, space=base.space, customer_ids=ids, X=features, catalog=base.catalog,
                               affinity=affinity, anonymous=base.anonymous)
        snap.save(repo, Manifest(name=SNAPSHOT_NAME, kind="feature-snapshot", data_fingerprint=f"rescore-{customers}",
                                 training_window=dict(manifest.training_window)))
    (out / "done").write_text(json.dumps({"customers": customers, "source": str(vdir)}))
    return repos


def _peak_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _expected(seg: Any, rows: np.ndarray) -> dict[int, np.ndarray]:
    """Segments of `rows` computed for those rows alone (models on the sample, bands against the base)."""
    from services.core.predictions import bands
    from services.segmentation.changes import CLUSTER, GRID, LIFECYCLE, RFM
    from services.segmentation.engine import BAND_NAMES, STAGE_NAMES
    from tenure.segments import lifecycle_stage, percentile_scores, rfm_segment

    snap, settings = seg.snapshot, seg.settings
    col = {n: i for i, n in enumerate(snap.feature_names)}
    X = snap.X[rows]
    r = percentile_scores(snap.X[:, col["recency_days"]], X[:, col["recency_days"]], higher_is_better=False)
    f = percentile_scores(snap.X[:, col["orders_total"]], X[:, col["orders_total"]])
    m = percentile_scores(snap.X[:, col["spend_total"]], X[:, col["spend_total"]])
    out = {RFM: rfm_segment(r, f, m, seg.rules).astype(str)}
    gap_all = snap.X[:, col["gap_mean_days"]]
    base_gap = float(np.median(gap_all[gap_all > 0]))
    stage = lifecycle_stage(X[:, col["recency_days"]], X[:, col["tenure_days"]], X[:, col["gap_mean_days"]], base_gap)
    out[LIFECYCLE] = np.array(["unknown", *(STAGE_NAMES[i] for i in range(1, 6))])[stage]
    if seg.clusters is not None:
        cols = [col[n] for n in seg.clusters.features]
        cluster = np.asarray(seg.clusters.predict(np.ascontiguousarray(X[:, cols])), np.int64)
        names = {int(c["id"]): c["name"] for c in seg.clusters.manifest.params.get("clusters", [])}
        out[CLUSTER] = np.array([names[int(c)] for c in cluster])
    table = seg.predictor.predict(X)
    if table.churn is not None and seg.grid_churn is not None:
        c = bands(table.churn, settings.churn_band_medium, settings.churn_band_high)
        p = bands(table.purchase[:, 1], settings.purchase_band_medium, settings.purchase_band_high)
        out[GRID] = np.array([f"{BAND_NAMES[int(a)]} churn / {BAND_NAMES[int(b)]} purchase" for a, b in zip(c, p)])
    return out


def child(repo_a: Path, repo_b: Path, state: Path, sample: int) -> dict[str, Any]:
    """Both re-scorings in this process; the measurements and the answer check."""
    from services.segmentation.changes import SegmentLog
    from services.segmentation.engine import Segmenter
    from tenure.settings import ServiceSettings

    settings = ServiceSettings(models_dir=repo_a, state_dir=state, ort_threads=1)
    log = SegmentLog(state / "segments.sqlite")
    t0 = time.perf_counter()
    first = Segmenter.load(repo_a, settings, log)
    t1, c1 = time.perf_counter(), time.process_time()
    second = Segmenter.load(repo_b, settings, log)  # the first still held, as the Holder does
    t2, c2 = time.perf_counter(), time.process_time()
    peak = _peak_rss_mib()
    n = len(second.snapshot.customer_ids)
    rng = np.random.default_rng(SEED + 1)
    rows = np.sort(rng.choice(n, min(sample, n), replace=False))
    ids = second.snapshot.customer_ids[rows].astype(str)
    stored = log.assignments(ids)
    expected_b, expected_a = _expected(second, rows), _expected(first, rows)
    problems: list[str] = []
    counts = log.assignment_counts()
    for family in expected_b:
        if counts.get(family) != (n, n):
            problems.append(f"family {family}: {counts.get(family)} (assignments, distinct customers), expected {n}")
        got = stored.get(family)
        if got is None or not np.array_equal(np.asarray(got, dtype=str), expected_b[family]):
            problems.append(f"family {family}: stored segments differ from the in-process ones")
    assert second.rescoring is not None
    moves = [mv for mv in log.moves(0, limit=100_000_000) if mv.rescoring_id == second.rescoring.id]
    index = {cid: i for i, cid in enumerate(ids)}
    seen = {(index[mv.customer_id], mv.family, mv.from_segment, mv.to_segment) for mv in moves
            if mv.customer_id in index}
    want = {(i, fam, str(expected_a[fam][i]), str(expected_b[fam][i]))
            for fam in expected_b for i in range(len(rows)) if expected_a[fam][i] != expected_b[fam][i]}
    if seen != want:
        problems.append(f"sample moves: {len(seen)} recorded, {len(want)} expected, {len(seen ^ want)} differ")
    if second.rescoring.moves != len(moves):
        problems.append(f"rescoring says {second.rescoring.moves} moves, {len(moves)} recorded")
    return {"customers": n, "seconds": round(t2 - t1, 2), "cpu_seconds": round(c2 - c1, 2),
            "first_seconds": round(t1 - t0, 2),
            "peak_rss_mib": round(peak, 1), "moves": len(moves), "ok": not problems, "problems": problems}


def run(customers: int, cache: Path | None = None, sample: int = SAMPLE) -> dict[str, Any]:
    """Build (or reuse) the data, re-score in a child process, return its report."""
    cache = cache or cache_dir()
    repo_a, repo_b = build(customers, cache / "repo", cache / "rescore" / f"n{customers}")
    state = cache / "rescore" / f"state-{customers}-{os.getpid()}"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    try:
        proc = subprocess.run([sys.executable, "-m", "bench.rescore", "--child", str(repo_a), str(repo_b),
                               str(state), "--sample", str(sample)], cwd=REPO_ROOT, capture_output=True, text=True,
                              env=dict(os.environ, TENURE_LOG_LEVEL=os.environ.get("TENURE_LOG_LEVEL", "WARNING")))
    finally:
        shutil.rmtree(state, ignore_errors=True)
    if proc.returncode != 0:
        return {"customers": customers, "seconds": None, "peak_rss_mib": None, "moves": None, "ok": False,
                "problems": [f"child exited with {proc.returncode}: {proc.stderr[-2000:]}"]}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.rescore", description=__doc__.split("\n")[0])
    ap.add_argument("--customers", type=int, default=200_000)
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--sample", type=int, default=SAMPLE, help="customers whose answers are checked")
    ap.add_argument("--child", nargs=3, metavar=("REPO_A", "REPO_B", "STATE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        repo_a, repo_b, state = (Path(p) for p in args.child)
        print(json.dumps(child(repo_a, repo_b, state, sample=args.sample)))
        return
    report = run(args.customers, sample=args.sample)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"rescore: {report['customers']} customers in {report['seconds']} s "
              f"({report.get('cpu_seconds')} CPU-s), peak RSS "
              f"{report['peak_rss_mib']} MiB, {report['moves']} moves, "
              + ("ok" if report["ok"] else "FAILED: " + "; ".join(report["problems"])))
    if not report["ok"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
