"""`make bench-scale`: churn feature building + training on 10M and 50M order lines, pandas vs Dask.

For each size (SIZES=10000000,50000000, env or --sizes) it writes synthetic order lines as Parquet parts
(generated part by part: the generator's memory does not grow with the size), then runs, each in its
own process:

- pandas: the whole table read into one process and training.pipeline.train_churn (what `tenure train`
  does for churn); peak RSS from /proc (VmHWM). The process is killed when its RSS passes
  PANDAS_MEMORY_LIMIT_GIB (default 10) and the run reported as OOM, so the shared machine never swaps.
- dask: training.dask_engine.train_churn_dask on a LocalCluster of 2 worker processes (1 thread each,
  TENURE_DASK_WORKER_MEMORY each); peak memory = the largest worker's VmHWM.

Writes bench/out/scale.md and bench/out/scale.json (--out).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

GIB = 1024 ** 3
PART_ROWS = 1_000_000
LINES_PER_CUSTOMER = 50
N_PRODUCTS = 5_000
N_CATEGORIES = 20
CHANNELS = np.array(["web", "app", "store", "email", "phone"])
START_DAY = 19_358  # 2023-01-01 in days since the epoch
DAYS = 3 * 365


# -- data ----------------------------------------------------------------------------------------------

def generate(directory: Path, rows: int, seed: int = 7, part_rows: int = PART_ROWS) -> Path:
    """Order lines as Parquet parts (part-00000.parquet, ...) in time order, each sorted by (ts, order_id).
    Customers (rows / LINES_PER_CUSTOMER) have a start and an end of activity (ends before the data end:
    churned) and a purchase rate; a line is one product of the customer's order of that day."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    done = directory / "_done"  # "_": not a data file to pyarrow or dask
    if done.exists() and done.read_text().strip() == str(rows):
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    n_cust = max(rows // LINES_PER_CUSTOMER, 100)
    start = rng.uniform(-DAYS * 0.3, DAYS, n_cust).clip(0)
    life = rng.exponential(DAYS * 0.6, n_cust)
    end = start + life
    rate = rng.gamma(1.5, 1.0, n_cust)
    cum = np.cumsum(rate)
    price = np.round(rng.lognormal(3.0, 0.8, N_PRODUCTS), 2)
    product_p = 1.0 / np.arange(1, N_PRODUCTS + 1) ** 0.9
    product_cum = np.cumsum(product_p / product_p.sum())
    n_parts = -(-rows // part_rows)
    for k in range(n_parts):
        want = min(part_rows, rows - k * part_rows)
        lo, hi = DAYS * k / n_parts, DAYS * (k + 1) / n_parts
        cs, ts = [], []
        got = 0
        while got < want:
            c = np.searchsorted(cum, rng.uniform(0, cum[-1], 2 * want))
            t = rng.uniform(lo, hi, len(c))
            keep = (start[c] <= t) & (t < end[c])
            cs.append(c[keep])
            ts.append(t[keep])
            got += int(keep.sum())
        c = np.concatenate(cs)[:want]
        day = np.floor(np.concatenate(ts)[:want]).astype(np.int64)
        seconds = (day + START_DAY) * 86_400 + (c * 7_919 + day * 104_729) % 86_400
        prod = np.minimum(np.searchsorted(product_cum, rng.uniform(0, 1, want)), N_PRODUCTS - 1)
        qty = rng.integers(1, 4, want).astype(np.float64)
        is_return = rng.uniform(0, 1, want) < 0.03
        amount = np.where(is_return, -1.0, 1.0) * price[prod] * qty
        frame = pd.DataFrame({
            "customer_id": pd.Series(c).map("c{:08d}".format),
            "order_id": pd.Series(c * 10_000 + day).map("o{:012d}".format),
            "ts": pd.to_datetime(seconds, unit="s"),
            "product_id": pd.Series(prod).map("p{:05d}".format),
            "quantity": qty, "amount": amount, "is_return": is_return,
            "category": pd.Series(prod % N_CATEGORIES).map("cat{:02d}".format),
            "channel": CHANNELS[(c * 31 + day) % len(CHANNELS)],
        }).sort_values(["ts", "order_id"], kind="stable")
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), directory / f"part-{k:05d}.parquet")
    done.write_text(f"{rows}\n")
    return directory


# -- the two engines, each in a child process ----------------------------------------------------------

def _vm(field: str, pid: int | str = "self") -> int:
    """VmRSS / VmHWM of a process in bytes (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _worker_peak() -> int:
    return _vm("VmHWM")


def run_pandas(data: Path, repo: Path) -> dict[str, Any]:
    import pandas as pd

    from tenure.data import Shop
    from tenure.settings import TrainSettings
    from training.pipeline import train_churn

    t0 = time.perf_counter()
    tx = pd.read_parquet(data)
    shop = Shop("scale", tx.reset_index(drop=True), None, None)
    read_s = time.perf_counter() - t0
    result = train_churn(shop, repo, TrainSettings())
    m = result["metrics"]
    return {"auc": m["auc"], "train_rows": m["train_rows"], "holdout_rows": m["holdout_rows"], "read_s": read_s}


def run_dask(data: Path, repo: Path) -> dict[str, Any]:
    from tenure.settings import TrainSettings
    from training.dask_engine import WORKER_MEMORY, dask_client, train_churn_dask

    with dask_client() as client:
        result = train_churn_dask(client, data, repo, TrainSettings(), dataset="scale")
        peaks = client.run(_worker_peak)
    m = result["metrics"]
    return {"auc": m["auc"], "train_rows": m["train_rows"], "holdout_rows": m["holdout_rows"],
            "worker_peak_bytes": max(peaks.values()), "worker_peaks": peaks, "worker_memory_limit": WORKER_MEMORY}


def measure(engine: str, data: Path, work: Path, limit_bytes: int | None) -> dict[str, Any]:
    """Run one engine in a child process, polling its RSS (killed as OOM above limit_bytes)."""
    repo = work / f"repo-{engine}"
    shutil.rmtree(repo, ignore_errors=True)
    out = work / f"result-{engine}.json"
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bench.scale", "--child", engine, "--data", str(data),
                             "--repo", str(repo), "--result", str(out)],
                            stdout=subprocess.DEVNULL, stderr=open(work / f"{engine}.log", "wb"))
    peak, oom = 0, False
    while proc.poll() is None:
        peak = max(peak, _vm("VmHWM", proc.pid))
        if limit_bytes is not None and _vm("VmRSS", proc.pid) > limit_bytes:
            oom = True
            proc.kill()
            break
        time.sleep(0.2)
    proc.wait()
    wall = time.perf_counter() - t0
    row: dict[str, Any] = {"engine": engine, "wall_s": round(wall, 1), "process_peak_bytes": peak,
                           "exit_code": proc.returncode, "oom": oom or proc.returncode in (-9, 137) and engine == "pandas"}
    if out.exists():
        row.update(json.loads(out.read_text()))
    elif not row["oom"]:
        row["error"] = (work / f"{engine}.log").read_text()[-2000:]
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| order lines | engine | wall time | peak memory | OOM | churn AUC | training rows |",
             "|---:|---|---:|---|---|---:|---:|"]
    for r in rows:
        if r["engine"] == "pandas":
            mem = f"{r['process_peak_bytes'] / GIB:.2f} GiB (process)"
        else:
            worker = r.get("worker_peak_bytes")
            mem = (f"{worker / GIB:.2f} GiB (max per worker; driver {r['process_peak_bytes'] / GIB:.2f} GiB)"
                   if worker else f"driver {r['process_peak_bytes'] / GIB:.2f} GiB")
        status = (f"OOM (killed above {r['limit_gib']} GiB)" if r.get("oom") else
                  "failed" if "error" in r else "no")
        auc = f"{r['auc']:.4f}" if "auc" in r else "-"
        train = f"{r['train_rows']:,}" if "train_rows" in r else "-"
        wall = f"{r['wall_s']:.0f} s" + (" (killed)" if r.get("oom") else "")
        lines.append(f"| {r['rows']:,} | {r['engine']} | {wall} | {mem} | {status} | {auc} | {train} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--sizes", default=os.environ.get("SIZES", "10000000,50000000"))
    parser.add_argument("--work", default=os.environ.get("SCALE_WORK", "/tmp/tenure-scale"))
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--engines", default=os.environ.get("ENGINES", "pandas,dask"))
    parser.add_argument("--pandas-memory-limit-gib", type=float,
                        default=float(os.environ.get("PANDAS_MEMORY_LIMIT_GIB", "10")))
    parser.add_argument("--child", choices=["pandas", "dask"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--repo", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run = run_pandas if args.child == "pandas" else run_dask
        result = run(Path(args.data), Path(args.repo))
        Path(args.result).write_text(json.dumps(result, default=str))
        return

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows_out: list[dict[str, Any]] = []
    md_path, json_path = Path(args.out) / "scale.md", Path(args.out) / "scale.json"
    md_path.parent.mkdir(parents=True, exist_ok=True)
    for size in (int(s) for s in args.sizes.split(",") if s.strip()):
        t0 = time.perf_counter()
        data = generate(work / f"lines-{size}", size)
        print(f"[scale] {size:,} lines in {data} ({time.perf_counter() - t0:.0f} s)", flush=True)
        for engine in args.engines.split(","):
            limit = int(args.pandas_memory_limit_gib * GIB) if engine == "pandas" else None
            row = {"rows": size, **measure(engine, data, work, limit), "limit_gib": args.pandas_memory_limit_gib}
            rows_out.append(row)
            print(f"[scale] {size:,} {engine}: {row['wall_s']} s, peak {row['process_peak_bytes'] / GIB:.2f} GiB"
                  f"{', worker peak %.2f GiB' % (row['worker_peak_bytes'] / GIB) if row.get('worker_peak_bytes') else ''}"
                  f"{', OOM' if row.get('oom') else ''}{', FAILED' if 'error' in row else ''}", flush=True)
            text = table(rows_out)
            md_path.write_text(f"Machine: {platform.machine()}, {os.cpu_count()} CPUs; "
                               f"{time.strftime('%Y-%m-%d %H:%M')}\n\n{text}\n")
            json_path.write_text(json.dumps(rows_out, indent=2, default=str) + "\n")
    print(table(rows_out))


if __name__ == "__main__":
    main()
