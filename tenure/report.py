"""`tenure report`: one self-contained HTML page about a model repository (no network needed).

For each model's newest valid version: its holdout metrics next to the baselines, and the curves
training saved in evaluation.json (training.evaluation): ROC, cumulative gains, lift by decile,
reliability, spend by decile, BG/NBD expected vs actual purchases, feature importance; cluster
profiles (clusters.json), segment sizes of the serving snapshot and, with a state directory, the last
re-scoring's segment moves. Plots are inline SVG drawn here, styles inline: the page makes no request.
Imported only by the CLI.
"""
from __future__ import annotations

import html
import json
import math
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from tenure.artifacts import Manifest, latest_valid, versions
from tenure.errors import ArtifactError, DataError

EVALUATION_FILE = "evaluation.json"
PALETTE = ("#1f6feb", "#e8590c", "#2f9e44", "#9c36b5", "#c92a2a", "#0c8599", "#5c940d", "#862e9c")
ORDER = ("churn", "purchase_7d", "purchase_30d", "purchase_90d", "clv", "propensity", "channel", "lookalike", "clusters")
SKIPPED = ("features",)
SKIPPED_SUFFIX = "-contributions"
LOWER_IS_BETTER = ("rmse", "mae", "log_loss", "brier", "ece", "aggregate error")
FAMILIES = {1: "RFM segment", 2: "lifecycle stage", 3: "cluster", 4: "churn x purchase grid"}

Point = Sequence[float]


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


# ---------------------------------------------------------------------------------------------- SVG


W, H = 420, 300
LEFT, RIGHT, TOP, BOTTOM = 58, 14, 34, 46


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    return [round(start + i * step, 10) for i in range(int(math.ceil((hi - start) / step - 1e-9)) + 1)]


def fmt_num(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if a >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


class Frame:
    """Axes of one plot: data -> pixel mapping, grid, ticks, labels, title."""

    def __init__(self, title: str, xlabel: str, ylabel: str, x: tuple[float, float], y: tuple[float, float],
                 xticks: list[float] | None = None, yticks: list[float] | None = None, left: int = LEFT) -> None:
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.yticks = yticks if yticks is not None else nice_ticks(*y)
        self.xticks = xticks if xticks is not None else nice_ticks(*x)
        self.x0, self.x1 = min(x[0], self.xticks[0]), max(x[1], self.xticks[-1])
        self.y0, self.y1 = min(y[0], self.yticks[0]), max(y[1], self.yticks[-1])
        self.left = left
        self.parts: list[str] = []

    def px(self, x: float) -> float:
        return self.left + (x - self.x0) / ((self.x1 - self.x0) or 1.0) * (W - self.left - RIGHT)

    def py(self, y: float) -> float:
        return H - BOTTOM - (y - self.y0) / ((self.y1 - self.y0) or 1.0) * (H - TOP - BOTTOM)

    def axes(self, xtick_labels: bool = True) -> None:
        p = self.parts
        for t in self.yticks:
            y = self.py(t)
            p.append(f'<line class="grid" x1="{self.left}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
            p.append(f'<text class="tick" x="{self.left - 6}" y="{y + 4:.1f}" text-anchor="end">{esc(fmt_num(t))}</text>')
        if xtick_labels:
            for t in self.xticks:
                x = self.px(t)
                p.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{H - BOTTOM}"/>')
                p.append(f'<text class="tick" x="{x:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">'
                         f'{esc(fmt_num(t))}</text>')
        p.append(f'<rect class="axes" x="{self.left}" y="{TOP}" width="{W - self.left - RIGHT}" '
                 f'height="{H - TOP - BOTTOM}"/>')

    def svg(self, legend: list[tuple[str, str, bool]] | None = None, corner: str = "top-left") -> str:
        """The finished <svg class="plot">; legend: (label, colour, dashed) in the given corner
        ("top-left", "top-right", "bottom-right")."""
        p = [f'<text class="title" x="{W / 2}" y="20" text-anchor="middle">{esc(self.title)}</text>',
             f'<text class="label" x="{(self.left + W - RIGHT) / 2}" y="{H - 8}" text-anchor="middle">'
             f'{esc(self.xlabel)}</text>',
             f'<text class="label" transform="translate(14 {(TOP + H - BOTTOM) / 2}) rotate(-90)" '
             f'text-anchor="middle">{esc(self.ylabel)}</text>', *self.parts]
        legend = legend or []
        width = 30 + 6.2 * max((len(label) for label, _, _ in legend), default=0)
        for i, (label, colour, dashed) in enumerate(legend):
            y = (TOP + 14 + 15 * i if corner.startswith("top") else H - BOTTOM - 8 - 15 * (len(legend) - 1 - i))
            x = self.left + 10 if corner.endswith("left") else W - RIGHT - 8 - width
            dash = ' stroke-dasharray="4 3"' if dashed else ""
            p.append(f'<line x1="{x}" x2="{x + 18}" y1="{y - 4}" y2="{y - 4}" stroke="{colour}" stroke-width="2.5"{dash}/>'
                     f'<text class="legend" x="{x + 24}" y="{y}">{esc(label)}</text>')
        return (f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" '
                f'height="{H}" role="img" aria-label="{esc(self.title)}"><title>{esc(self.title)}</title>'
                + "".join(p) + "</svg>")


def line_plot(title: str, xlabel: str, ylabel: str, series: list[tuple[str, list[Point]]],
              diagonal: str = "", unit_square: bool = True, markers: bool = False, corner: str = "bottom-right") -> str:
    """Lines through (x, y) points; diagonal: a dashed y = x reference labelled so ('' for none)."""
    xs = [float(pt[0]) for _, pts in series for pt in pts]
    ys = [float(pt[1]) for _, pts in series for pt in pts]
    if unit_square:
        frame = Frame(title, xlabel, ylabel, (0.0, 1.0), (0.0, 1.0), [0, 0.2, 0.4, 0.6, 0.8, 1.0],
                      [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    else:
        lo, hi = min(xs + ys + [0.0]), max(xs + ys + [1e-9])
        frame = Frame(title, xlabel, ylabel, (lo, hi), (lo, hi))
    frame.axes()
    legend: list[tuple[str, str, bool]] = []
    if diagonal:
        a, b = max(frame.x0, frame.y0), min(frame.x1, frame.y1)
        frame.parts.append(f'<path class="ref" d="M{frame.px(a):.1f},{frame.py(a):.1f} L{frame.px(b):.1f},'
                           f'{frame.py(b):.1f}"/>')
        legend.append((diagonal, "#868e96", True))
    for i, (name, pts) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        good = [pt for pt in pts if all(math.isfinite(float(v)) for v in pt[:2])]
        if not good:
            continue
        d = " ".join(f"{'M' if j == 0 else 'L'}{frame.px(float(pt[0])):.1f},{frame.py(float(pt[1])):.1f}"
                     for j, pt in enumerate(good))
        frame.parts.append(f'<path class="mark" d="{d}" stroke="{colour}"/>')
        if markers:
            frame.parts.extend(f'<circle class="dot" cx="{frame.px(float(pt[0])):.1f}" cy="{frame.py(float(pt[1])):.1f}" '
                               f'r="3" fill="{colour}"/>' for pt in good)
        legend.append((name, colour, False))
    return frame.svg(legend, corner)


def bar_plot(title: str, xlabel: str, ylabel: str, categories: list[str], series: list[tuple[str, list[float]]],
             reference: float | None = None) -> str:
    """Grouped vertical bars: one group per category, one bar per series; reference: a dashed level."""
    values = [v for _, vs in series for v in vs if math.isfinite(v)] + [0.0]
    headroom = 1.2 if len(series) > 1 else 1.0  # room for the legend
    frame = Frame(title, xlabel, ylabel, (0.0, 1.0), (min(values), max(values + [1e-9]) * headroom))
    frame.axes(xtick_labels=False)
    n, k = max(len(categories), 1), max(len(series), 1)
    slot = (W - frame.left - RIGHT) / n
    bar = slot * 0.8 / k
    step = max(1, math.ceil(n / 12))
    for c, cat in enumerate(categories):
        if c % step == 0:
            frame.parts.append(f'<text class="tick" x="{frame.left + slot * (c + 0.5):.1f}" y="{H - BOTTOM + 16}" '
                               f'text-anchor="middle">{esc(cat[:14])}</text>')
    legend: list[tuple[str, str, bool]] = []
    zero = frame.py(0.0)
    for i, (name, vs) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        for c, v in enumerate(vs):
            if not math.isfinite(v):
                continue
            x = frame.left + slot * c + slot * 0.1 + bar * i
            y = frame.py(v)
            frame.parts.append(f'<rect class="mark" x="{x:.1f}" y="{min(y, zero):.1f}" width="{max(bar - 1, 1):.1f}" '
                               f'height="{max(abs(zero - y), 0.5):.1f}" fill="{colour}"><title>{esc(name)} '
                               f'{esc(categories[c])}: {esc(fmt_num(v))}</title></rect>')
        legend.append((name, colour, False))
    if reference is not None:
        y = frame.py(reference)
        frame.parts.append(f'<path class="ref" d="M{frame.left},{y:.1f} L{W - RIGHT},{y:.1f}"/>')
    return frame.svg(legend if len(series) > 1 else None, "top-right")


def hbar_plot(title: str, xlabel: str, labels: list[str], values: list[float]) -> str:
    """Horizontal bars, largest first (feature importance, sizes)."""
    top = 18
    labels, values = labels[:top], values[:top]
    frame = Frame(title, xlabel, "", (0.0, max(values + [1e-9])), (0.0, 1.0), yticks=[0.0, 1.0], left=150)
    frame.axes()
    frame.parts = [p for p in frame.parts if 'class="tick" x="144"' not in p]
    height = (H - TOP - BOTTOM) / max(len(values), 1)
    for i, (label, v) in enumerate(zip(labels, values)):
        y = TOP + height * i
        frame.parts.append(f'<rect class="mark" x="{frame.left}" y="{y + height * 0.15:.1f}" '
                           f'width="{max(frame.px(v) - frame.left, 0.5):.1f}" height="{height * 0.7:.1f}" '
                           f'fill="{PALETTE[0]}"><title>{esc(label)}: {esc(fmt_num(v))}</title></rect>')
        frame.parts.append(f'<text class="tick" x="{frame.left - 6}" y="{y + height / 2 + 4:.1f}" '
                           f'text-anchor="end">{esc(label[:24])}</text>')
    return frame.svg()


# ------------------------------------------------------------------------------------------ reading


def read_evaluation(vdir: Path, manifest: Manifest) -> dict[str, Any] | None:
    """The version's evaluation.json (verified with the manifest), None when it has none."""
    if EVALUATION_FILE not in manifest.files:
        return None
    data = json.loads((vdir / EVALUATION_FILE).read_text())
    return data if isinstance(data, dict) else None


def model_names(repo: Path) -> list[str]:
    names = sorted(p.name for p in Path(repo).iterdir() if p.is_dir() and not p.name.startswith("."))
    rank = {n: i for i, n in enumerate(ORDER)}

    def key(n: str) -> tuple[int, str]:
        base = n.split("-")[0]
        return (rank.get(n, rank.get(base, len(ORDER))), n)

    return sorted((n for n in names if n not in SKIPPED and not n.endswith(SKIPPED_SUFFIX)), key=key)


def metric_rows(name: str, metrics: dict[str, Any]) -> list[list[str]]:
    """[metric, model, baseline, baseline value] rows of training.pipeline.metrics_table, or every
    numeric metric when that table does not know this model's metrics."""
    try:
        from training.pipeline import metrics_table

        table = metrics_table([{"name": name, "metrics": metrics}], "")
        rows = [cells[2:6] for cells in ([c.strip() for c in line.strip().strip("|").split("|")]
                                         for line in table.splitlines()[2:]) if len(cells) >= 6]
        if rows:
            return rows
    except (ImportError, KeyError, TypeError, ValueError):
        pass
    return [[k, fmt_num(float(v)), "", ""] for k, v in sorted(metrics.items())
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not k.startswith("onnx_")]


def better(metric: str, model: str, baseline: str) -> bool | None:
    """Whether the model's value beats the baseline's (None: not comparable)."""
    try:
        m, b = float(model.replace(",", "")), float(baseline.replace(",", ""))
    except ValueError:
        return None
    lower = any(t in metric.lower() for t in LOWER_IS_BETTER)
    if "aggregate error" in metric.lower():
        m, b = abs(m), abs(b)
    return m < b if lower else m > b


# ------------------------------------------------------------------------------------------ sections


def metrics_html(rows: list[list[str]]) -> str:
    out = ['<table class="metrics"><thead><tr><th>metric</th><th>model</th><th>baseline</th><th>baseline value</th>'
           '<th></th></tr></thead><tbody>']
    for metric, model, base, base_value in rows:
        verdict = better(metric, model, base_value) if base_value else None
        mark = {True: '<span class="win">better</span>', False: '<span class="lose">worse</span>', None: ""}[verdict]
        out.append(f"<tr><td>{esc(metric)}</td><td class=num>{esc(model)}</td><td>{esc(base)}</td>"
                   f"<td class=num>{esc(base_value)}</td><td>{mark}</td></tr>")
    out.append("</tbody></table>")
    return "".join(out)


def binary_plots(ev: dict[str, Any], name: str) -> list[str]:
    found: dict[str, Any] = ev.get("curves", {})
    if not found:
        return [f'<p class="note">{esc(ev.get("note", "no curves"))}</p>']
    curves = {n: found[n] for n in sorted(found, key=lambda n: n != "model")}  # the model first, in blue
    label = {n: f"{n} (AUC {c['auc']:.3f})" for n, c in curves.items()}
    plots = [
        line_plot(f"{name}: ROC", "false positive rate", "true positive rate",
                  [(label[n], c["roc"]) for n, c in curves.items()], diagonal="chance"),
        line_plot(f"{name}: cumulative gains", "share of customers targeted (best score first)",
                  "share of positives found", [(n, c["gains"]) for n, c in curves.items()], diagonal="random"),
        bar_plot(f"{name}: lift by score decile", "score decile (1 = highest score)", "lift",
                 [str(i) for i in range(1, 11)], [(n, [float("nan") if v is None else v for v in c["lift_by_decile"]])
                                                  for n, c in curves.items()], reference=1.0),
    ]
    calibration = {n: b for n, b in sorted(ev.get("calibration", {}).items(), key=lambda t: t[0] != "model")}
    if calibration:
        plots.append(line_plot(
            f"{name}: reliability", "mean predicted probability", "observed rate",
            [(f"{n} ({sum(b['count'] for b in bins):,} rows)",
              [(b["mean_predicted"], b["observed_rate"]) for b in bins if b["count"] and b["mean_predicted"] is not None])
             for n, bins in calibration.items()], diagonal="perfectly calibrated", markers=True))
    bg = ev.get("bgnbd")
    if bg:
        days = int(bg.get("horizon_days", 0))
        for key, what in (("by_frequency", "repeat purchases before the cutoff"),
                          ("by_recency", "days since the last purchase")):
            groups = bg.get(key, [])
            if groups:
                plots.append(bar_plot(f"BG/NBD: purchases in {days} d by {key[3:]}", what,
                                      "mean purchases per customer", [g["group"] for g in groups],
                                      [("actual", [g["actual"] for g in groups]),
                                       ("BG/NBD expected", [g["expected"] for g in groups])]))
    return plots


def importance_plot(ev: dict[str, Any], name: str) -> list[str]:
    imp = ev.get("feature_importance") or []
    if not imp:
        return []
    return [hbar_plot(f"{name}: feature importance (gain share)", "share of the total gain",
                      [f["feature"] for f in imp], [f["share"] for f in imp])]


def regression_plots(ev: dict[str, Any], name: str) -> list[str]:
    deciles = ev.get("spend_deciles", [])
    if not deciles:
        return []
    series = [("predicted", [d["predicted"] for d in deciles]), ("actual", [d["actual"] for d in deciles])]
    if all("baseline" in d for d in deciles):
        series.append((ev.get("baseline", "baseline"), [d["baseline"] for d in deciles]))
    return [bar_plot(f"{name}: spend by predicted decile ({ev.get('holdout_days', '?')} d holdout)",
                     "decile of predicted spend (1 = highest)", "mean spend per customer",
                     [str(d["decile"]) for d in deciles], series)]


def cluster_section(vdir: Path, manifest: Manifest) -> str:
    path = vdir / "clusters.json"
    if "clusters.json" not in manifest.files or not path.exists():
        return ""
    clusters = json.loads(path.read_text())
    if not isinstance(clusters, list) or not clusters:
        return ""
    clusters = sorted(clusters, key=lambda c: -float(c.get("size", 0)))
    plot = hbar_plot("cluster sizes (customers)", "customers", [str(c.get("name", c.get("id"))) for c in clusters],
                     [float(c.get("size", 0)) for c in clusters])
    rows = ["<table class=profiles><thead><tr><th>cluster</th><th>customers</th><th>share</th>"
            "<th>median recency (d)</th><th>median orders</th><th>median spend</th><th>profile</th></tr></thead><tbody>"]
    for c in clusters:
        med = c.get("medians", {})
        rows.append(f"<tr><td><b>{esc(c.get('name', c.get('id')))}</b></td><td class=num>{int(c.get('size', 0)):,}</td>"
                    f"<td class=num>{100 * float(c.get('share', 0)):.1f}%</td>"
                    f"<td class=num>{fmt_num(float(med.get('recency_days', math.nan)))}</td>"
                    f"<td class=num>{fmt_num(float(med.get('orders_total', math.nan)))}</td>"
                    f"<td class=num>{fmt_num(float(med.get('spend_total', math.nan)))}</td>"
                    f"<td>{esc(c.get('description', ''))}</td></tr>")
    rows.append("</tbody></table>")
    return f'<div class="plots">{plot}</div>' + "".join(rows)


def window_text(manifest: Manifest) -> str:
    w = manifest.training_window
    parts = [f"{k.replace('_', ' ')} {v}" for k, v in w.items()]
    return "; ".join(parts)


def model_section(name: str, vdir: Path, manifest: Manifest) -> str:
    ev = read_evaluation(vdir, manifest)
    head = (f'<section class="model" id="model-{esc(name)}"><h2>{esc(name)}</h2><p class="meta">version '
            f'<code>{esc(manifest.version)}</code>, trained {esc(manifest.created_at)}; {esc(manifest.kind)}; '
            f'{esc(window_text(manifest))}</p>')
    body = [metrics_html(metric_rows(name, manifest.metrics))]
    if manifest.metrics.get("note"):
        body.append(f'<p class="note">{esc(manifest.metrics["note"])}</p>')
    plots: list[str] = []
    if ev is None and name != "clusters":
        body.append(f'<p class="note">no evaluation data for this version (trained {esc(manifest.created_at)}, before '
                    f'training saved {EVALUATION_FILE}): retrain to get its plots</p>')
    elif ev is not None:
        if ev.get("kind") == "binary":
            if ev.get("positive"):
                body.append(f'<p class="meta">holdout: {int(ev.get("rows", 0)):,} customers, {int(ev.get("positives", 0)):,} '
                            f'positive (positive = {esc(ev["positive"])}); curves on the same rows for the baselines</p>')
            plots += binary_plots(ev, name)
        elif ev.get("kind") == "regression":
            plots += regression_plots(ev, name)
        plots += importance_plot(ev, name)
    if plots:
        body.append('<div class="plots">' + "".join(plots) + "</div>")
    if name == "clusters" or name.startswith("clusters"):
        body.append(cluster_section(vdir, manifest))
    return head + "".join(body) + "</section>"


def measurements_section(repo: Path) -> str:
    """Send time and attributes-as-features: measured by training, kept in the feature snapshot's manifest
    (training.pipeline.SNAPSHOT_RESULTS), shown like a model's metrics ("" when the snapshot has none)."""
    try:
        vdir, manifest = latest_valid(repo, "features")
    except ArtifactError:
        return ""
    parts = [f"<h3>{esc(name)}</h3>" + metrics_html(metric_rows(name, m))
             for name, m in sorted(manifest.metrics.items()) if isinstance(m, dict)]
    if not parts:
        return ""
    return (f'<section class="model" id="model-measured"><h2>send time and attributes</h2><p class="meta">measured '
            f'when feature snapshot <code>{esc(manifest.version)}</code> was trained (holdout after '
            f'validation, as the models)</p>' + "".join(parts) + "</section>")


def segment_sizes(repo: Path) -> str:
    """RFM segments and lifecycle stages of the newest feature snapshot (as the segmentation service
    computes them at its re-scoring)."""
    from tenure.segments import lifecycle_stage, percentile_scores, rfm_segment
    from tenure.store import FeatureSnapshot

    try:
        snap = FeatureSnapshot.load_latest(repo)
    except (ArtifactError, DataError, OSError, ValueError) as err:
        return f'<p class="note">no feature snapshot to size the segments ({esc(err)})</p>'
    col = {n: i for i, n in enumerate(snap.feature_names)}
    X = snap.X
    try:
        recency, orders, spend = X[:, col["recency_days"]], X[:, col["orders_total"]], X[:, col["spend_total"]]
        tenure, gap = X[:, col["tenure_days"]], X[:, col["gap_mean_days"]]
    except KeyError as err:
        return f'<p class="note">the snapshot has no {esc(err)} feature: no segment sizes</p>'
    r = percentile_scores(recency, recency, higher_is_better=False)
    seg = rfm_segment(r, percentile_scores(orders, orders), percentile_scores(spend, spend))
    gaps = gap[gap > 0]
    stage = lifecycle_stage(recency, tenure, gap, float(np.median(gaps)) if len(gaps) else 30.0)
    stage_names = {1: "new", 2: "active", 3: "at_risk", 4: "lapsed", 5: "lost"}
    plots = []
    for title, values in (("RFM segments", seg.astype(str)),
                          ("lifecycle stages", np.array([stage_names.get(int(s), "unknown") for s in stage]))):
        names, counts = np.unique(values, return_counts=True)
        order = np.argsort(-counts, kind="stable")
        plots.append(hbar_plot(f"{title} ({len(values):,} customers, snapshot {snap.cutoff.date()})", "customers",
                               [str(names[i]) for i in order], [float(counts[i]) for i in order]))
    return '<div class="plots">' + "".join(plots) + "</div>"


def _assignment_sizes(state: Path, rid: int) -> list[tuple[int, str, int]]:
    """(family, segment, customers) from the re-scoring's columnar assignments file, written next to
    segments.sqlite by the segmentation service (services.segmentation.changes); [] without one."""
    path = state / f"segments-assignments-{rid}.npz"
    if not path.exists():
        return []
    with np.load(path, allow_pickle=False) as z:
        out = []
        for key in (k for k in z.files if k.startswith("codes_")):
            family = key.split("_", 1)[1]
            counts = np.bincount(z[key][z[key] >= 0], minlength=len(z["names_" + family]))
            out += [(int(family), str(name), int(n)) for name, n in zip(z["names_" + family], counts) if n]
        return out


def moves_section(state: Path | None) -> str:
    """The last re-scoring's segment moves recorded by the segmentation service under `state`."""
    if state is None:
        return '<p class="note">segment moves: pass <code>--state DIR</code> (the segmentation service\'s state ' \
               'directory) to show the last re-scoring\'s moves</p>'
    path = Path(state) / "segments.sqlite"
    if not path.exists():
        return f'<p class="note">no segment moves recorded yet ({esc(path.name)} not found in the state directory)</p>'
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        last = db.execute("SELECT id, snapshot_cutoff, at, customers, moves FROM rescorings ORDER BY id DESC LIMIT 1"
                          ).fetchone()
        if last is None:
            return '<p class="note">no re-scoring recorded yet</p>'
        rows = db.execute("SELECT family, from_segment, to_segment, COUNT(*) FROM moves WHERE rescoring_id = ? "
                          "GROUP BY family, from_segment, to_segment ORDER BY COUNT(*) DESC", (last[0],)).fetchall()
        sizes = _assignment_sizes(Path(state), int(last[0])) or db.execute(
            "SELECT family, segment, COUNT(*) FROM assignments GROUP BY family, segment").fetchall()
    at = datetime.fromtimestamp(float(last[2]), timezone.utc).isoformat(timespec="seconds")
    out = [f"<p>Last re-scoring: snapshot cutoff {esc(last[1][:10])}, at {esc(at)}, {int(last[3]):,} customers, "
           f"<b>{int(last[4]):,} moves</b>.</p>"]
    plots = []
    by_family: dict[int, list[tuple[str, int]]] = {}
    for fam, segment, n in sizes:
        by_family.setdefault(int(fam), []).append((str(segment), int(n)))
    for fam, items in sorted(by_family.items()):
        items.sort(key=lambda t: -t[1])
        plots.append(hbar_plot(f"{FAMILIES.get(fam, fam)}: customers now", "customers", [s for s, _ in items],
                               [float(n) for _, n in items]))
    moved: dict[int, int] = {}
    for fam, _, _, n in rows:
        moved[int(fam)] = moved.get(int(fam), 0) + int(n)
    if moved:
        fams = sorted(moved)
        plots.append(bar_plot("moves of the last re-scoring by family", "segment family", "customers moved",
                              [FAMILIES.get(f, str(f)).split(" ")[0] for f in fams], [("moves", [float(moved[f]) for f in fams])]))
    if plots:
        out.append('<div class="plots">' + "".join(plots) + "</div>")
    if rows:
        out.append("<table class=moves><thead><tr><th>family</th><th>from</th><th>to</th><th>customers</th></tr>"
                   "</thead><tbody>")
        out.extend(f"<tr><td>{esc(FAMILIES.get(int(f), f))}</td><td>{esc(a)}</td><td>{esc(b)}</td>"
                   f"<td class=num>{int(n):,}</td></tr>" for f, a, b, n in rows[:25])
        out.append("</tbody></table>")
        if len(rows) > 25:
            out.append(f'<p class="note">{len(rows) - 25} smaller transitions not shown</p>')
    return "".join(out)


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#212529;margin:0;background:#f4f5f7}
header{background:#1b2a41;color:#fff;padding:18px 32px}header h1{margin:0 0 6px;font-size:22px}
header p{margin:2px 0;color:#ced4da}main{padding:8px 32px 40px;max-width:1420px}
section{background:#fff;border-radius:8px;padding:14px 16px;margin:16px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{margin:4px 0 2px;font-size:18px}.meta{color:#6c757d;margin:0 0 10px;font-size:12.5px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}th,td{padding:3px 10px;border-bottom:1px solid #e9ecef;
text-align:left;vertical-align:top}th{background:#f1f3f5;font-weight:600}td.num{text-align:right;
font-variant-numeric:tabular-nums}.win{color:#2b8a3e;font-weight:600}.lose{color:#c92a2a;font-weight:600}
.note{color:#856404;background:#fff3cd;padding:6px 10px;border-radius:4px;display:inline-block}
.plots{display:flex;flex-wrap:wrap;gap:10px}svg.plot{background:#fff;border:1px solid #e9ecef;border-radius:6px}
svg .grid{stroke:#edf0f2;stroke-width:1}svg .axes{fill:none;stroke:#adb5bd;stroke-width:1}
svg .tick{font-size:10.5px;fill:#495057}svg .label{font-size:11.5px;fill:#343a40}
svg .title{font-size:13px;font-weight:600;fill:#212529}svg .legend{font-size:11px;fill:#343a40}
svg path.mark{fill:none;stroke-width:2.2}svg .ref{fill:none;stroke:#868e96;stroke-width:1.2;stroke-dasharray:4 3}
nav a{color:#a5d8ff;margin-right:10px;text-decoration:none}table.profiles td:last-child{max-width:560px}
"""


def build_report(repo: Path, state: Path | None = None) -> str:
    """The report's HTML for the newest valid version of every model in `repo`."""
    repo = Path(repo)
    if not repo.is_dir():
        raise DataError(f"model repository {repo} does not exist")
    loaded: list[tuple[str, Path, Manifest]] = []
    problems: list[str] = []
    for name in model_names(repo):
        try:
            vdir, manifest = latest_valid(repo, name)
        except ArtifactError as err:
            problems.append(str(err))
            continue
        loaded.append((name, vdir, manifest))
    if not loaded:
        raise DataError(f"no valid model version in {repo}" + (f" ({'; '.join(problems)})" if problems else ""))
    sections = []
    for name, vdir, manifest in loaded:
        try:
            sections.append(model_section(name, vdir, manifest))
        except (OSError, ValueError, KeyError, TypeError) as err:
            sections.append(f'<section class="model" id="model-{esc(name)}"><h2>{esc(name)}</h2>'
                            f'<p class="note">cannot show this version: {esc(err)}</p></section>')
    measured = measurements_section(repo)
    if measured:
        sections.append(measured)
    header = header_html(repo, loaded)
    nav = "<nav>" + "".join(f'<a href="#model-{esc(n)}">{esc(n)}</a>' for n, _, _ in loaded) + \
          ('<a href="#model-measured">send time, attributes</a>' if measured else "") + \
          '<a href="#segments">segments</a></nav>'
    extra = "".join(f'<p class="note">{esc(p)}</p>' for p in problems)
    segments = (f'<section id="segments"><h2>segments</h2><p class="meta">sizes in the newest feature snapshot</p>'
                f'{segment_sizes(repo)}<h3>last re-scoring\'s moves</h3>{moves_section(state)}</section>')
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8><meta name=viewport "
            'content="width=device-width,initial-scale=1"><title>Tenure evaluation report</title>'
            f"<style>{CSS}</style></head><body>{header.replace('</header>', nav + '</header>')}<main>{extra}"
            + "".join(sections) + segments + "</main></body></html>")


def header_html(repo: Path, loaded: Iterable[tuple[str, Path, Manifest]]) -> str:
    loaded = list(loaded)
    datasets = sorted({str(m.params.get("dataset")) for _, _, m in loaded if m.params.get("dataset")})
    windows = [m.training_window for _, _, m in loaded]
    starts = sorted(w["data_start"] for w in windows if w.get("data_start"))
    ends = sorted(w.get("holdout_label_end", w.get("cutoff", "")) for w in windows
                  if w.get("holdout_label_end") or w.get("cutoff"))
    created = sorted(m.created_at for _, _, m in loaded if m.created_at)
    try:
        from tenure.artifacts import load_manifest

        fv = versions(repo, "features")
        snap = [load_manifest(fv[0])] if fv else []
    except ArtifactError:
        snap = []
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    lines = [f"Shop / dataset: <b>{esc(', '.join(datasets) or 'unknown')}</b>; model repository "
             f"<code>{esc(repo.name)}</code>, {len(loaded)} models",
             f"Data {esc(starts[0] if starts else '?')} to {esc(ends[-1] if ends else '?')}"
             + (f"; serving snapshot cutoff {esc(snap[0].training_window.get('cutoff', '?'))}" if snap else ""),
             f"Trained {esc(created[0] if created else '?')} to {esc(created[-1] if created else '?')}; "
             f"report generated {esc(now)}"]
    return ("<header><h1>Tenure evaluation report</h1>" + "".join(f"<p>{line}</p>" for line in lines) + "</header>")


def write_report(repo: Path, out: Path, state: Path | None = None) -> Path:
    """Write the report to `out` (directories created); returns the path."""
    text = build_report(repo, state)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out
