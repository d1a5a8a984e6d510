"""results.json -> markdown: the table with ratio columns, the targets (PASS/MISS), RSS, soak, skips.

    python -m bench.report bench/out/results.json     # re-render a saved run
"""
from __future__ import annotations

import json
import sys
from typing import Any

BARE, ECHO, AIO, MLS, PYT, TEN = "bare (threaded)", "echo (threaded)", "bare aio", "MLServer", "PyTriton", "Tenure"
AB_BAND = 0.10
"""Targets whose first ratio is within this of the threshold are decided on A/B pairs (run.Bench.ab_repeats)."""
PIN_NOTE = ("Pinning: every peer and the 1-worker Tenure runs have the server on core 0 (taskset) and h2load on "
            "core 1; in-process ORT with 1 thread runs on core 0, with 2 threads on both cores. The workers "
            "comparison (1 and 2 workers, 16 connections so SO_REUSEPORT can spread them) and the soak run "
            "unpinned: server processes and h2load share both cores, so h2load takes CPU from the servers there.")


def fmt(v: float | None, digits: int = 0) -> str:
    if v is None or v != v:  # None or NaN
        return "-"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def ms(v: float | None) -> str:
    if v is None or v != v:
        return "-"
    return f"{v:.2f}" if v < 100 else f"{v:,.0f}"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or a != a or b != b:
        return None
    return a / b


def busy(r: dict[str, Any]) -> str:
    """Share of the box other processes used during that measurement (bold when it is enough to matter)."""
    v = r.get("foreign_cpu_share")
    if v is None:
        return "?"
    return f"**{v:.0%}**" if v >= 0.05 else f"{v:.0%}"


def val(r: dict[str, Any] | None, key: str) -> float | None:
    return None if r is None else r.get(key)


def rx(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def cpu_split(w2: dict[str, Any] | None, w1: dict[str, Any] | None) -> str:
    """Who had the two cores during the workers runs, and req/s per core the server got."""
    def one(r: dict[str, Any] | None, label: str) -> str:
        if not r or "server_cpu_s" not in r:
            return ""
        secs = max(r["secs"], 1e-9)
        srv, cli = r["server_cpu_s"] / secs, r["client_cpu_s"] / secs
        per_core = r["req_s"] / srv if srv > 0 else float("nan")
        return f"{label}: the server used {srv:.2f} cores, h2load {cli:.2f}, {per_core:,.0f} req/s per server core"
    parts = [p for p in (one(w2, "2 workers"), one(w1, "1 worker")) if p]
    if len(parts) == 2 and w2 and w1:
        eff = (w2["req_s"] / w2["server_cpu_s"]) / (w1["req_s"] / w1["server_cpu_s"])
        parts.append(f"per-core efficiency of 2 workers = {eff:.2f} x 1 worker's")
    return "; ".join(parts)


def find(rows: list[dict[str, Any]], system: str, kind: str = "modelinfer", rows_per: int = 1, conc: int = 1,
         conns: int = 1, workers: int = 1, pinned: bool | None = True) -> dict[str, Any] | None:
    for r in rows:
        if (r["system"] == system and r["kind"] == kind and r["rows"] == rows_per and r["conc"] == conc
                and r["conns"] == conns and r.get("workers", 1) == workers
                and (pinned is None or r["pin"].startswith("server core") == pinned)):
            return r
    return None


def inproc(res: dict[str, Any], case: str, threads: int, batch: int | None = None) -> dict[str, Any] | None:
    for r in res.get("inprocess", []):
        if r["case"] == case and r["threads"] == threads and (batch is None or r["batch"] == batch):
            return r
    return None


def ratios(res: dict[str, Any], r: dict[str, Any]) -> dict[str, float | None]:
    rows = res["rows"]
    pinned = r["pin"].startswith("server core")
    out: dict[str, float | None] = {"ort": None, "bare": None, "echo": None, "mls": None, "pyt": None}
    if r["kind"] == "modelinfer":
        ref = inproc(res, "bench", r["threads"], r["rows"])
        out["ort"] = ratio(r["rows_s"], val(ref, "rows_s"))
    elif r["kind"] == "stream":  # the same models in-process: churn alone, or churn + lookalike
        ref = inproc(res, "churn" if "churn only" in r["mode"] else "churn+lookalike", 1)
        out["ort"] = ratio(r["rows_s"], val(ref, "rows_s"))
    if r["kind"] in ("modelinfer", "score", "predict", "recommend") and r["system"] not in (BARE, ECHO):
        per = r["rows"] if r["kind"] == "modelinfer" else 1
        for key, system in (("bare", BARE), ("echo", ECHO), ("mls", MLS), ("pyt", PYT)):
            if key in ("mls", "pyt") and (r["kind"] != "modelinfer" or r["system"] == system):
                continue
            peer = find(rows, system, "modelinfer", per, r["conc"], r["conns"], 1, pinned)
            out[key] = ratio(r["req_s"], val(peer, "req_s"))
    return out


def ab_specs() -> list[dict[str, Any]]:
    """The ratio targets against a yardstick, one A/B spec each: Tenure's `what` (1 row) at conc vs the
    yardstick `mode`'s 1-row ModelInfer, threshold `limit` (higher is better)."""
    out = []
    for what, kind in (("ModelInfer", "modelinfer"), ("Score", "score")):
        for conc, mode, limit in ((1, "bare", 1.0), (64, "bare", 1.0), (64, "echo", 0.85)):
            out.append({"key": f"{what} c={conc} vs {mode}", "what": what, "kind": kind, "conc": conc, "mode": mode,
                        "limit": limit})
    return out


def spec_ratio(res: dict[str, Any], spec: dict[str, Any]) -> float | None:
    t = find(res["rows"], TEN, spec["kind"], 1, spec["conc"])
    y = find(res["rows"], BARE if spec["mode"] == "bare" else ECHO, "modelinfer", 1, spec["conc"])
    return ratio(val(t, "req_s"), val(y, "req_s"))


def per_cpu(r: dict[str, Any] | None) -> str:
    v = val(r, "req_per_cpu_s")
    return "-" if v is None else f"{v:,.0f} req per server CPU-s"


def check_of(res: dict[str, Any], key: str) -> str:
    """'' when the answer check passed (or was not recorded), else why it failed."""
    chk = res.get("checks", {}).get(key)
    if not isinstance(chk, dict):
        return ""
    ok = chk.get("check_ok", chk.get("ok", True))
    return "" if ok else (chk.get("why") or "the answer check failed")


def target_rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    rows = res["rows"]
    out: list[dict[str, Any]] = []

    def add(text: str, value: float | None, limit: float, detail: str, lower_is_better: bool = False,
            missing: str = "", wrong: str = "", unit: str = "x") -> None:
        if value is None:
            out.append({"target": text, "status": "NOT MEASURED", "ratio": None, "detail": missing or detail,
                        "unit": unit})
            return
        ok = value <= limit if lower_is_better else value >= limit
        if wrong:
            ok, detail = False, f"wrong answer: {wrong}; {detail}"
        out.append({"target": text, "status": "PASS" if ok else "MISS", "ratio": value, "detail": detail,
                    "unit": unit})

    def rs(r: dict[str, Any] | None, key: str = "req_s") -> str:
        return "-" if r is None else (fmt(r[key]) if key != "p99_ms" else ms(r[key]) + " ms")

    def why(*pairs: tuple[str, Any]) -> str:
        gone = [name for name, r in pairs if r is None]
        return "not measured: " + ", ".join(gone) if gone else ""

    wrong_mi = check_of(res, "Tenure ModelInfer rows=1")
    wrong = {"ModelInfer": wrong_mi, "Score": check_of(res, "Tenure Score")}
    yard_wrong = {"bare": check_of(res, f"{BARE} ModelInfer rows=1"), "echo": check_of(res, f"{ECHO} ModelInfer rows=1")}
    for spec in ab_specs():
        t = find(rows, TEN, spec["kind"], 1, spec["conc"])
        y = find(rows, BARE if spec["mode"] == "bare" else ECHO, "modelinfer", 1, spec["conc"])
        first = spec_ratio(res, spec)
        detail = f"{rs(t)} vs {rs(y)} req/s ({per_cpu(t)} vs {per_cpu(y)})"
        rep = res.get("repeats", {}).get(spec["key"])
        value = first
        if rep and rep.get("median") is not None:
            value = rep["median"]
            detail += (f"; first ratio {rx(first)} within {AB_BAND:.0%} of the threshold: decided on the median of "
                       f"{len(rep['pairs'])} A/B pairs " + ", ".join(
                           f"({fmt(q['tenure_req_s'])}/{fmt(q['yard_req_s'])} = {rx(q['ratio'])})" for q in rep["pairs"]))
        w = wrong[spec["what"]] or (f"{spec['mode']} yardstick: {yard_wrong[spec['mode']]}"
                                    if yard_wrong[spec["mode"]] else "")
        add(f"{spec['what']} 1 row{' (by id)' if spec['what'] == 'Score' else ''}, c={spec['conc']}: req/s >= "
            f"{spec['limit']:.2f} x threaded {spec['mode']}", value, spec["limit"], detail,
            missing=why((f"Tenure {spec['what']} c={spec['conc']}", t), (f"{spec['mode']} c={spec['conc']}", y)),
            wrong=w)

    stream = next((r for r in rows if r["kind"] == "stream" and "churn only" in r["mode"]), None)
    stream_all = next((r for r in rows if r["kind"] == "stream" and "lookalike" in r["mode"]), None)
    ref = inproc(res, "churn", 1)
    both = inproc(res, "churn+lookalike", 1)
    add("StreamScore (churn only, 1M rows) rows/s >= 0.95 x in-process ORT (churn model, 1 thread)",
        ratio(val(stream, "rows_s"), val(ref, "rows_s")), 0.95,
        f"{rs(stream, 'rows_s')} vs {rs(ref, 'rows_s')} rows/s"
        + (f"; with every score (churn + lookalike per row) {fmt(stream_all['rows_s'])} rows/s vs in-process "
           f"churn+lookalike {fmt(both['rows_s'])}, ratio {rx(ratio(stream_all['rows_s'], both['rows_s']))}"
           if stream_all and both else ""),
        missing=why(("StreamScore", stream), ("in-process churn", ref)),
        wrong=check_of(res, "Tenure StreamScore churn only, inline features"))

    rec16, rec1 = find(rows, TEN, "recommend", 1, 16), find(rows, TEN, "recommend", 1, 1)
    rec_chk = res.get("checks", {}).get("Tenure Recommend", {})
    cands = rec_chk.get("candidates_scored") if isinstance(rec_chk, dict) else None
    rec_wrong = check_of(res, "Tenure Recommend") or (
        f"candidates_scored {cands} < 200" if isinstance(cands, int) and cands < 200 else "")
    add("Recommend k=10 (>= 200 candidates scored), c=16: >= 1,200 req/s per core (server pinned to one core)",
        val(rec16, "req_s"), 1200, f"{rs(rec16)} req/s, {per_cpu(rec16)}; candidates_scored={cands}",
        missing=why(("Recommend c=16", rec16)), wrong=rec_wrong, unit="req/s")
    add("Recommend k=10, c=1: p99 <= 5 ms", val(rec1, "p99_ms"), 5.0, f"p99 {rs(rec1, 'p99_ms')}",
        lower_is_better=True, missing=why(("Recommend c=1", rec1)), wrong=rec_wrong, unit="ms")
    pred16 = find(rows, TEN, "predict", 1, 16)
    add("Predict (every model + 3 reasons), c=16: >= 1,500 req/s per core", val(pred16, "req_s"), 1500,
        f"{rs(pred16)} req/s, {per_cpu(pred16)}", missing=why(("Predict c=16", pred16)),
        wrong=check_of(res, "Tenure Predict"), unit="req/s")

    rsc = res.get("rescore") or {}
    skipped_r = next((s["why"] for s in res.get("skipped", []) if s["what"] == "rescore"), "")
    rsc_wrong = "" if rsc.get("ok", True) else (rsc.get("why") or rsc.get("error") or "bench.rescore reported ok=false")
    n_cust = rsc.get("customers")
    note = f"{fmt(n_cust)} customers" + ("" if n_cust == 1_000_000 else " (not the 1M of the target)")
    add("Segmentation re-scoring, 1M customers: <= 60 s", rsc.get("seconds"), 60.0,
        f"{note}, {ms(rsc.get('seconds'))} s", lower_is_better=True, missing=skipped_r or "rescore not run",
        wrong=rsc_wrong, unit="s")
    add("Segmentation re-scoring, 1M customers: peak RSS <= 2 GiB", rsc.get("peak_rss_mib"), 2048.0,
        f"{note}, peak {fmt(rsc.get('peak_rss_mib'))} MiB", lower_is_better=True,
        missing=skipped_r or "rescore not run", wrong=rsc_wrong, unit="MiB")

    scoring = res.get("rss", {}).get("tenure-scoring (1 worker), after the pinned runs")
    if scoring:
        hwm = sum(int(v["VmHWM"]) for v in scoring.values()) / 1024
        now = sum(int(v["VmRSS"]) for v in scoring.values()) / 1024
        bare = res.get("rss", {}).get("yardstick-bare, after its runs")
        bare_s = f"; threaded bare yardstick peak {sum(int(v['VmHWM']) for v in bare.values()) / 1024:.0f} MiB" \
            if bare else ""
        add("Scoring service with the bench model: peak RSS (VmHWM) <= 150 MiB after its pinned runs", hwm, 150.0,
            f"peak {hwm:.0f} MiB, VmRSS now {now:.0f} MiB{bare_s}", lower_is_better=True, unit="MiB")
    else:
        add("Scoring service with the bench model: peak RSS (VmHWM) <= 150 MiB", None, 150.0, "",
            missing="scoring service not measured", unit="MiB")

    w2 = find(rows, TEN, conc=64, conns=16, workers=2, pinned=False)
    w1p = find(rows, TEN, conc=64, conns=16, workers=1, pinned=True)
    skipped_w = next((s["why"] for s in res.get("skipped", []) if s["what"].startswith("Tenure --workers")), "")
    eff = ratio(val(w2, "req_per_cpu_s"), val(w1p, "req_per_cpu_s"))
    add("2 workers: req/s >= 1.6 x 1 worker pinned to one core (1 row, c=64 over 16 connections)",
        ratio(val(w2, "req_s"), val(w1p, "req_s")), 1.6,
        f"{rs(w2)} (2 workers, unpinned, h2load sharing both cores) vs {rs(w1p)} req/s (1 worker on core 0, "
        f"h2load on core 1); per-core efficiency (req per server CPU-s) 2 workers {per_cpu(w2)} vs 1 worker "
        f"{per_cpu(w1p)} = {rx(eff)}. " + cpu_split(w2, None),
        missing=skipped_w or why(("2 workers", w2), ("1 worker pinned, 16 conns", w1p)))
    services = res.get("soak", {}).get("services", {})
    if not services:
        add("RSS growth over the soak <= 5%", None, 5.0, "", missing="soak not run", unit="%")
    for name, s in services.items():
        add(f"RSS growth over the {s['secs']:.0f}s soak <= 5% ({name})", s["growth_pct"], 5.0,
            f"{s['rss_start_kb'] / 1024:.0f} -> {s['rss_end_kb'] / 1024:.0f} MiB (peak {s['rss_peak_kb'] / 1024:.0f}; "
            f"start = {s['settle_s']:.0f}s into the load)", lower_is_better=True, unit="%")
    return out


def markdown(res: dict[str, Any]) -> str:
    m = res["meta"]
    L: list[str] = []
    L.append("# Tenure benchmark (`make bench`)\n")
    L.append(f"{m['date']}; {m['cpus']} cores ({m['cpu']}), {m['mem_gib']} GiB; Python {m['python']}; "
             f"git {m['git']}. {m['dur_s']:g} s per measurement after {m['warm_s']:g} s warm-up; load generator: "
             f"{m['load_generator']} with one pre-serialised request (closed loop; c = requests in flight over one "
             f"HTTP/2 connection unless a connection count is shown). Total run time {m['total_s'] / 60:.1f} min "
             f"(phases, s: {', '.join(f'{k} {v:.0f}' for k, v in m['phases_s'].items())}).\n")
    L.append(PIN_NOTE + "\n")
    fc = m.get("foreign_cpu")
    if fc:
        per_phase = ", ".join(f"{k} {v:.0f}" for k, v in fc.get("by_phase_core_s", {}).items())
        top = "; ".join(f"`{t['cmd'][:60]}` {t['core_seconds']:.0f}" for t in fc.get("top", [])[:3])
        L.append(f"Other processes on the box (not started by the harness) used {fc['core_seconds']:.0f} core-seconds, "
                 f"{fc['share_of_capacity']:.0%} of the {m['cpus']} cores over the run (core-seconds per phase: "
                 f"{per_phase or '-'}; top: {top or '-'}); kernel threads (loopback/softirq work, mostly caused by "
                 f"the load itself) {fc.get('kernel_threads_core_seconds', 0):.0f} core-seconds."
                 + (" **The figures below shared the CPU with them and are noisier/lower than on an idle box.**"
                    if fc["share_of_capacity"] > 0.05 else "") + "\n")
    L.append("Ratios: vs ORT = rows/s over in-process onnxruntime with the same thread count and batch = rows "
             "per request (StreamScore: the churn model, 1 thread, same chunks); vs bare / echo / MLServer / "
             "PyTriton = req/s over that system's ModelInfer at the same rows/request, concurrency and pinning "
             "(bare and echo: the threaded yardsticks of bench/yardsticks.py; Score, Predict and Recommend: vs their "
             "1-row ModelInfer). req/CPU-s = requests per CPU-second of the server's processes (= req/s per core "
             "when the server is the bottleneck; robust on a busy box). Other CPU = share of the box that processes "
             "outside the harness used during that measurement (bold from 5 %: that row shared the CPU).\n")
    L.append("| system | mode | cores | conc | rows/req | req/s | rows/s | p50 ms | p99 ms | p99.9 ms | errors "
             "| req/CPU-s | vs ORT | vs bare | vs echo | vs MLServer | vs PyTriton | other CPU |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in res.get("inprocess", []):
        name = {"bench": "bench model", "churn": "churn model", "churn+lookalike": "churn + lookalike models"}[r["case"]]
        L.append(f"| in-process ORT | {name}, {r['threads']} thread{'s' if r['threads'] > 1 else ''} | {r['pin']} | - | "
                 f"{r['batch']} | {fmt(r['calls_s'])} | {fmt(r['rows_s'])} | {r['p50_us'] / 1e3:.3f} | "
                 f"{r['p99_us'] / 1e3:.3f} | {r['p999_us'] / 1e3:.3f} | - | - | 1.00x | - | - | - | - | {busy(r)} |")
    for r in res.get("rows", []):
        q = ratios(res, r)
        conc = f"{r['conc']} ({r['conns']} conns)" if r["conns"] > 1 else str(r["conc"])
        cores = "srv 0 / client 1" if r["pin"].startswith("server core") else "unpinned"
        L.append(f"| {r['system']} | {r['mode']} | {cores} | {conc} | {r['rows']} | {fmt(r['req_s'])} | "
                 f"{fmt(r['rows_s'])} | {ms(r['p50_ms'])} | {ms(r['p99_ms'])} | {ms(r['p999_ms'])} | {r['errors']} | "
                 f"{fmt(r.get('req_per_cpu_s'))} | {rx(q['ort'])} | {rx(q['bare'])} | {rx(q['echo'])} | {rx(q['mls'])} | "
                 f"{rx(q['pyt'])} | {busy(r)} |")
    notes: dict[tuple[str, str, str], list[str]] = {}
    for r in res.get("rows", []):
        if r.get("note"):
            notes.setdefault((r["system"], r["mode"], r["note"]), []).append(str(r["conc"]))
    notes_text = [f"{s} {mo} (c={','.join(cs)}): {n}" for (s, mo, n), cs in notes.items()]
    if notes_text:
        L.append("")
        L.extend(f"- {n}" for n in notes_text)

    L.append("\n## Targets (ratios from this run)\n")
    L.append("| | target | measured | detail |")
    L.append("|---|---|---|---|")
    targets = target_rows(res)
    res["targets"] = targets
    for t in targets:
        u = t.get("unit", "x")
        val = "-" if t["ratio"] is None else (f"{t['ratio']:+.1f}%" if u == "%" else f"{t['ratio']:.2f}x" if u == "x"
                                              else f"{t['ratio']:,.2f} {u}" if u in ("ms", "s")
                                              else f"{t['ratio']:,.0f} {u}")
        L.append(f"| **{t['status']}** | {t['target']} | {val} | {t['detail']} |")

    if res.get("rss"):
        L.append("\n## Tenure memory (RSS per process, MiB)\n")
        L.append("| when | pid | RSS | peak RSS (VmHWM) | command |")
        L.append("|---|---|---|---|---|")
        for label, procs in res["rss"].items():
            for pid, v in procs.items():
                L.append(f"| {label} | {pid} | {int(v['VmRSS']) / 1024:.0f} | {int(v['VmHWM']) / 1024:.0f} | "
                         f"`{str(v['cmd'])[:90]}` |")
    soak = res.get("soak", {})
    if soak.get("services"):
        L.append("\n## Soak (full load, all unpinned; RSS summed over each service's processes, MiB)\n")
        L.append("| service | seconds | before load | start | end | peak | growth |")
        L.append("|---|---|---|---|---|---|---|")
        for n, s in soak["services"].items():
            L.append(f"| {n} | {s['secs']:.0f} | {s['rss_before_load_kb'] / 1024:.0f} | {s['rss_start_kb'] / 1024:.0f} | "
                     f"{s['rss_end_kb'] / 1024:.0f} | {s['rss_peak_kb'] / 1024:.0f} | {s['growth_pct']:+.1f}% |")
        for ld in soak.get("loads", []):
            L.append(f"- load during the soak: {ld['service']} {ld['load']} c={ld.get('conc', '?')}: "
                     + (f"{ld['req_s']:,.0f} req/s, {ld['errors']} errors" if "req_s" in ld else ld.get("error", "")))

    if res.get("skipped") or res.get("notes"):
        L.append("\n## Skipped, failed, notes\n")
        for s in res.get("skipped", []):
            L.append(f"- **skipped** {s['what']}: {s['why'].splitlines()[0][:400]}")
        for n in res.get("notes", []):
            L.append(f"- {n}")
    checks = res.get("checks", {})
    if checks:
        L.append("\n## Answer checks (one call each, before loading)\n")
        for k, v in checks.items():
            brief = {kk: vv for kk, vv in v.items() if kk not in ("samples",)} if isinstance(v, dict) else v
            ok = brief.get("check_ok", brief.get("ok")) if isinstance(brief, dict) else None
            mark = "" if ok is None else ("**ok** " if ok else "**WRONG** ")
            L.append(f"- {mark}{k}: `{json.dumps(brief, default=str)[:400]}`")
    return "\n".join(L) + "\n"


def main() -> None:
    with open(sys.argv[1] if len(sys.argv) > 1 else "bench/out/results.json") as f:
        print(markdown(json.load(f)))


if __name__ == "__main__":
    main()
