"""Run the scenarios (faults.scenarios), print one table, write OUT/results.{md,json}."""
from __future__ import annotations

import argparse
import json
import os
import time
import traceback
from pathlib import Path
from typing import Any

from faults.prepare import log, prepare
from faults.scenarios import SCENARIOS, Ctx, Row, as_dict

COLUMNS = ("scenario", "calls sent", "failed", "lost rows", "duplicated rows", "probe p99 ms", "RSS MiB (peak/after)",
           "verdict", "notes")


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def cells(row: Row) -> list[str]:
    rss = "-" if row.rss_peak_mib is None else f"{row.rss_peak_mib:.0f}/{row.rss_after_mib:.0f}"
    return [row.scenario, _cell(row.calls), _cell(row.failed), _cell(row.lost_rows), _cell(row.dup_rows),
            _cell(row.probe_p99_ms), rss, row.verdict, row.notes.replace("|", "/")]


def table(rows: list[Row], notes: bool = True) -> str:
    cols = COLUMNS if notes else COLUMNS[:-1]
    body = [cells(r)[:len(cols)] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(cols)]
    line = lambda parts: "| " + " | ".join(p.ljust(w) for p, w in zip(parts, widths)) + " |"
    return "\n".join([line(cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(b) for b in body)])


def context(cache: Path, work: Path) -> Ctx:
    import numpy as np
    import pandas as pd

    from tenure.store import FeatureSnapshot

    shop, repo = prepare(cache)
    snap = FeatureSnapshot.load_latest(repo)
    products = pd.read_parquet(shop / "products.parquet")["product_id"].astype(str).tolist()
    return Ctx(repo=repo, shop=shop, work=work, ids=[str(c) for c in snap.customer_ids], products=products,
               X=np.asarray(snap.X[:16], np.float32))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m faults", description=__doc__)
    parser.add_argument("--out", default="faults/out", help="results.{md,json}, logs/ and work/ go here")
    parser.add_argument("--cache", default=os.environ.get("TENURE_FAULTS_CACHE", "/tmp/tenure-faults"),
                        help="the small shop and its trained repository, built once (TENURE_FAULTS_CACHE)")
    parser.add_argument("--only", default="", help=f"comma-separated scenario letters of {','.join(SCENARIOS)}")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    only = [s.strip() for s in args.only.split(",") if s.strip()] or list(SCENARIOS)
    unknown = [s for s in only if s not in SCENARIOS]
    if unknown:
        raise SystemExit(f"python -m faults: error: unknown scenarios {unknown}; known: {','.join(SCENARIOS)}")
    t0 = time.perf_counter()
    ctx = context(Path(args.cache).resolve(), work)
    rows: list[Row] = []
    timings: dict[str, float] = {}
    for key in only:
        started = time.perf_counter()
        log(f"scenario {key}: {SCENARIOS[key].__name__}")
        try:
            got = SCENARIOS[key](ctx)
        except Exception as exc:  # a failing scenario is a row; the others still run
            (out / "logs").mkdir(parents=True, exist_ok=True)
            (out / "logs" / f"{key}-error.txt").write_text(traceback.format_exc())
            got = [Row(f"{key} {SCENARIOS[key].__name__}", verdict="ERROR",
                       notes=f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")]
        timings[key] = round(time.perf_counter() - started, 1)
        for row in got:
            log(f"  {row.verdict} {row.scenario}: {row.notes}")
        rows.extend(got)
    total = time.perf_counter() - t0
    text = table(rows)
    print("\n" + text + "\n")
    passed = sum(r.verdict == "PASS" for r in rows)
    summary = f"{passed}/{len(rows)} PASS in {total:.0f}s (seconds per scenario: {timings})"
    print(summary)
    (out / "results.md").write_text(f"# Fault scenarios ({time.strftime('%Y-%m-%d %H:%M')})\n\n{text}\n\n{summary}\n")
    (out / "results.json").write_text(json.dumps({"rows": [as_dict(r) for r in rows], "seconds": timings,
                                                  "total_s": round(total, 1)}, indent=2))
