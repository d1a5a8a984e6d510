"""The demo client: asks the three running services about example customers and prints the answers, through
tenure.client (TLS / token from the TENURE_* environment, deadlines, the retry policy)."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tenure.client import (
    OUTCOME_NAMES,
    BaseClient,
    RecommendationClient,
    ScoringClient,
    SegmentationClient,
    order_event,
    where,
)
from tenure.store import FeatureSnapshot
from tenure.v1 import recommendation_pb2, segmentation_pb2

BANDS = {0: "-", 1: "low", 2: "medium", 3: "high"}
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
STAGES = {v.number: v.name.removeprefix("LIFECYCLE_STAGE_").lower()
          for v in segmentation_pb2.LifecycleStage.DESCRIPTOR.values}
SOURCES = {v.number: v.name.removeprefix("CANDIDATE_SOURCE_").lower().replace("_", " ")
           for v in recommendation_pb2.CandidateSource.DESCRIPTOR.values}


def wait_serving(target: str, timeout_s: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until the server's overall health is SERVING (models loaded and warm)."""

    def check() -> None:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the service at {target} exited with {proc.returncode}")

    with BaseClient.from_env(target) as client:  # TLS / token from TENURE_TLS_CA_FILE, ... (tenure.client.channel)
        client.wait_until_serving(timeout_s, check)


def example_customers(models: Path) -> list[tuple[str, str]]:
    """Three customers worth looking at: a top spender, one overdue, one who just arrived."""
    snap = FeatureSnapshot.load_latest(models)
    col = {n: i for i, n in enumerate(snap.feature_names)}
    X, ids = snap.X, snap.customer_ids
    spend, recency, orders, tenure = (X[:, col[c]] for c in ("spend_total", "recency_days", "orders_total", "tenure_days"))
    top = int(np.argmax(np.where(recency < 30, spend, -1)))
    overdue = int(np.argmax(np.where((recency > 120) & (recency < 300), orders, -1)))
    new = int(np.argmax(np.where(tenure < 30, spend, -1)))
    return [(str(ids[top]), "recent top spender"), (str(ids[overdue]), "frequent buyer gone quiet"),
            (str(ids[new]), "new customer")]


def _money(v: float) -> str:
    return f"{v:,.2f}"


def show_customer(view: segmentation_pb2.Customer360, why: str) -> None:
    """Parts whose model is not in the repository are unset: shown as "-" (view.missing_models)."""
    p, g = view.predictions, view.segments
    c = p.churn
    print(f"\nCustomer {view.customer_id} ({why})")
    if p.HasField("churn"):
        print(f"  churn {c.probability:.2f} ({BANDS[c.band]} risk within {c.horizon_days} days; expected lost in "
              f"~{c.expected_days_to_churn:.0f} days)")
    for r in c.reasons:
        print(f"    because: {r.text}")
    if p.HasField("clv"):
        print(f"  CLV {_money(p.clv.historic)} so far + {_money(p.clv.predicted)} predicted over "
              f"{p.clv.horizon_days} days = {_money(p.clv.total)}")
    u = p.purchase

    def prob(h: int) -> str:
        return f"{getattr(u, f'probability_{h}d'):.2f}" if u.HasField(f"probability_{h}d") else "-"

    if p.HasField("purchase"):
        gap = f"{u.avg_days_between_orders:.0f}" if u.HasField("avg_days_between_orders") else "-"
        print(f"  buys within 7/30/90 days: {prob(7)} / {prob(30)} / {prob(90)}; next order "
              f"~{u.next_purchase_date or '-'} (every {gap} days on average)")
    if p.channels:
        print("  channels: " + ", ".join(f"{ch.channel} {ch.probability:.2f}{' (opted out)' if ch.opted_out else ''}"
                                         for ch in p.channels))
    show_attributes(view)
    if p.HasField("uplift"):  # campaign uplift (training.uplift)
        up = p.uplift
        print(f"  campaign uplift {up.uplift:+.2f} ({up.group.replace('_', ' ')}): buys within {up.window_days} days "
              f"{up.p_treated:.2f} if sent the campaign, {up.p_control:.2f} if not")
    if p.HasField("send_time"):  # send-time optimisation (tenure.sendtime)
        st = p.send_time
        print(f"  best time to contact: {st.best_hour:02d}:00 ({st.best_window_start_hour:02d}:00-"
              f"{(st.best_window_start_hour + 3) % 24:02d}:00 window), {WEEKDAYS[st.best_weekday]}s, {st.timezone}; "
              f"from {st.events} orders (own weight {st.own_weight:.2f})")
    look = f"{p.lookalike_score:.2f}" if p.HasField("lookalike_score") else "-"
    print(f"  RFM {g.rfm.recency}-{g.rfm.frequency}-{g.rfm.monetary} '{g.rfm_segment}', lifecycle "
          f"{STAGES[g.lifecycle_stage]}, cluster '{g.cluster.name or '-'}', grid '{g.grid.name or '-'}'; "
          f"{g.orders} orders, last {g.recency_days:.0f} days ago; lookalike {look}")
    if view.missing_models:
        print(f"  (not in the repository: {', '.join(view.missing_models)})")
    if view.recommendations_error:
        print(f"  recommendations unavailable: {view.recommendations_error}")
    for item in view.recommendations:
        print(f"    {item.rank}. {item.product.name} [{item.product.category}] p={item.score:.3f} "
              f"({SOURCES[item.source]})")


def show_feedback(rec: RecommendationClient, cid: str) -> None:
    """The customer is shown 5 recommendations, clicks the second and buys it: recorded, reported,
    and the next Recommend leaves out what was shown but not clicked."""
    shown = rec.recommend(cid, k=5)
    events = [{"customer_id": cid, "product_id": i.product.product_id, "kind": "impression", "position": i.rank,
               "request_id": shown.request_id} for i in shown.items]
    if len(shown.items) > 1:
        clicked = shown.items[1]
        events += [{"customer_id": cid, "product_id": clicked.product.product_id, "kind": kind,
                    "position": clicked.rank, "request_id": shown.request_id} for kind in ("click", "purchase")]
    ack = rec.record_feedback(events)
    report = rec.feedback_report()
    print(f"\n=== Feedback: {ack.recorded} events recorded for {cid}; click-through by position (all recorded) ===")
    for p in report.positions:
        print(f"  position {p.position}: {p.impressions} shown, CTR {p.click_through_rate:.0%}, "
              f"conversion {p.conversion_rate:.0%}")
    again = rec.recommend(cid, k=5)
    print(f"  next Recommend leaves out {again.excluded_recently_shown} shown-but-not-clicked products: "
          + ", ".join(i.product.name for i in again.items))


def show_segments(seg: SegmentationClient) -> None:
    cat = seg.describe_segments()
    print(f"\n=== Segments of {cat.customers:,} customers (re-scoring {cat.rescoring.id}, snapshot "
          f"{cat.rescoring.snapshot_cutoff[:10]}) ===")
    print("RFM: " + ", ".join(f"{c.segment} {c.share:.0%}" for c in cat.rfm_segments))
    print("lifecycle: " + ", ".join(f"{c.segment} {c.share:.0%}" for c in cat.lifecycle_stages))
    sizes = {c.segment: c.share for c in cat.cluster_counts}
    for cl in cat.clusters:
        print(f"cluster {cl.id} '{cl.name}' ({sizes.get(cl.name, 0):.0%}): {cl.description}")
    print("churn x purchase grid: " + ", ".join(f"{c.segment} {c.share:.0%}" for c in cat.grid_cells[:6]) + ", ...")


def _attribute_text(a: Any) -> str:
    """A CustomerAttribute as "name=value" ("?" when the customers file has none)."""
    if a.kind == "number":
        return f"{a.name}={a.number:g}" if a.HasField("number") else f"{a.name}=?"
    if a.kind == "set":
        return f"{a.name}={{{', '.join(a.values)}}}" if a.values else f"{a.name}=(none declared)"
    if a.kind == "consent":
        return f"{a.name}={'yes' if a.granted else 'no'}" if a.HasField("granted") else f"{a.name}=?"
    return f"{a.name}={a.text or '?'}"


def show_attributes(view: segmentation_pb2.Customer360) -> None:
    """What the customer told us (the customers file) and the best channel they allow (consents honoured)."""
    if not view.attributes:
        return
    print("  told us: " + ", ".join(_attribute_text(a) for a in view.attributes))
    channels = view.predictions.channels
    if channels:
        best = channels[0]
        refused = [ch.channel for ch in channels if ch.opted_out]
        note = f" (refused: {', '.join(refused)})" if refused else ""
        if best.opted_out:
            print(f"  best channel they allow: none (refused: {', '.join(refused)})")
        else:
            print(f"  best channel they allow: {best.channel} {best.probability:.2f}{note}")


def show_attribute_audience(seg: SegmentationClient, rec: RecommendationClient) -> None:
    """An audience on what customers told us: declared an interest in Coffee, allow sms, household of 2-4;
    then recommendations for its first member limited to the categories they declared."""
    conditions = [segmentation_pb2.Condition(field="interests", op=segmentation_pb2.CONDITION_OP_EQ, values=["Coffee"]),
                  segmentation_pb2.Condition(field="consent_sms", op=segmentation_pb2.CONDITION_OP_EQ, values=["yes"]),
                  segmentation_pb2.Condition(field="household_size", op=segmentation_pb2.CONDITION_OP_BETWEEN,
                                             value=2, value_max=4)]
    try:
        page = seg.export_audience(*conditions, order_by="churn", limit=3, timeout=30)
    except Exception as exc:  # noqa: BLE001 - a shop without these attributes: say so, the demo goes on
        print(f"\n(attribute audience skipped: {str(exc)[:200]})")
        return
    print("\n=== Audience on what customers told us: interests contain Coffee AND sms allowed AND household 2-4, "
          "highest churn first ===")
    print(f"{page.attrs['count']:,} of {page.attrs['base']:,} customers; first: " + ", ".join(
        f"{m.customer_id} churn {m.churn:.2f}" for m in page.itertuples()))
    if len(page):
        cid = str(page["customer_id"].iloc[0])
        try:
            only = rec.recommend(cid, k=3, declared_interests_only=True, timeout=30)
        except Exception as exc:  # noqa: BLE001 - no recommendation model: say so, the demo goes on
            print(f"  (declared-interest recommendations skipped: {str(exc)[:200]})")
            return
        print(f"  {cid} declared {', '.join(only.categories_applied) or 'nothing'}; recommended within them: "
              + "; ".join(f"{i.product.name} [{i.product.category}]" for i in only.items))


def show_uplift_audience(seg: SegmentationClient) -> None:
    """Who to send the next campaign: the top 20% by uplift, not sure things, not sleeping dogs."""
    conditions = [segmentation_pb2.Condition(field="uplift", op=segmentation_pb2.CONDITION_OP_TOP_PERCENT, value=20),
                  segmentation_pb2.Condition(field="uplift_group", op=segmentation_pb2.CONDITION_OP_NOT_IN,
                                             values=["sure_thing", "sleeping_dog"])]
    likely = segmentation_pb2.Condition(field="purchase_30d", op=segmentation_pb2.CONDITION_OP_TOP_PERCENT, value=20)

    def among_likely(group: str) -> int:
        group_is = segmentation_pb2.Condition(field="uplift_group", op=segmentation_pb2.CONDITION_OP_IN, values=[group])
        return int(seg.export_audience(likely, group_is, limit=1, timeout=30).attrs["count"])

    try:
        page = seg.export_audience(*conditions, order_by="uplift", limit=3, timeout=30)
        wasted = {g: among_likely(g) for g in ("sure_thing", "sleeping_dog")}
    except Exception as exc:  # noqa: BLE001 - a shop without campaign logs: say so, the demo goes on
        print(f"\n(uplift audience skipped: {str(exc)[:200]})")
        return
    print("\n=== Audience for the next campaign: top 20% uplift, not sure things, not sleeping dogs ===")
    print(f"{page.attrs['count']:,} of {page.attrs['base']:,} customers; highest uplift first: "
          + ", ".join(f"{m.customer_id} {m.uplift:+.2f}" for m in page.itertuples()))
    print(f"  (the top 20% by P(purchase in 30 days) instead: {wasted['sure_thing']:,} sure things who buy anyway, "
          f"{wasted['sleeping_dog']:,} sleeping dogs a campaign puts off)")


def show_send_time_audience(seg: SegmentationClient) -> None:
    """"Send at their best hour": an evening audience with each member's next best hour (tenure.sendtime)."""
    try:
        page = seg.export_audience(where("best_hour", ">=", 18), where("best_weekday", "in", [5, 6]), limit=3,
                                   timeout=30)
    except Exception as exc:  # noqa: BLE001 - data without times of day: no send-time table, the demo goes on
        print(f"\n(send-time audience skipped: {str(exc)[:200]})")
        return
    print("\n=== Audience: best hour 18:00 or later, best day Saturday or Sunday; send at their best hour ===")
    print(f"{page.attrs['count']:,} of {page.attrs['base']:,} customers; first: " + ", ".join(
        f"{m.customer_id} at {int(m.best_hour):02d}:00 {m.send_timezone} (next {m.next_send_at})"
        for m in page.itertuples()))


def show_audience(seg: SegmentationClient) -> list[str]:
    conditions = [where("churn", ">=", 0.6), where("clv", "top%", 25),
                  where("rfm_segment", "in", ["At Risk", "Can't Lose Them"])]
    print("\n=== Audience: churn >= 0.6 AND clv in the top 25% AND segment in {At Risk, Can't Lose Them},"
          " by predicted CLV ===")
    page = seg.export_audience(*conditions, order_by="clv_predicted", limit=3, timeout=30)
    print(f"{page.attrs['count']:,} of {page.attrs['base']:,} customers; first page:")
    for m in page.itertuples():
        print(f"  {m.position}. {m.customer_id} churn {m.churn:.2f}, predicted CLV {_money(m.clv_predicted)}, "
              f"{m.rfm_segment}, {m.lifecycle}")
    if len(page):
        rest = seg.export_audience(*conditions, order_by="clv_predicted", limit=2, cursor=page.cursor.iloc[-1],
                                   timeout=30)
        print("  resumed from the cursor: " + ", ".join(f"{m.position}. {m.customer_id}" for m in rest.itertuples()))
    report = seg.profile_group(conditions=conditions, top=5, timeout=30)
    print(f"profile of the audience ({report.attrs['group_size']:,} customers) against the base, most distinctive "
          "first:")
    for f in report.itertuples():
        index = "index -" if np.isnan(f.index) else f"index {f.index:.0f}"
        print(f"  {f.feature}: {f.group_value:,.2f} vs {f.base_value:,.2f} ({index})")
    everyone = seg.export_audience(*conditions, timeout=30).customer_id
    return [m for m in everyone if m]


def show_lookalike_job(seg: SegmentationClient, seed: list[str]) -> None:
    if len(seed) < 20:
        print(f"\n(lookalike job skipped: the audience has {len(seed)} members, a seed needs 20)")
        return
    print(f"\n=== Lookalike job: customers like these {len(seed)} ===")
    job = seg.start_lookalike_job("demo", seed, timeout=30)
    last = job
    for update in seg.watch_job(job.job_id, timeout=300):
        if update.progress - last.progress >= 0.25 or update.state != last.state:
            print(f"  {update.progress:4.0%} {update.message}")
        last = update
    if last.state != segmentation_pb2.JOB_STATE_SUCCEEDED:
        print(f"  job failed: {last.message}")
        return
    print(f"  holdout AUC {last.metrics['auc']:.3f} (centroid baseline {last.metrics['baseline_centroid_cosine_auc']:.3f})")
    members = seg.lookalike_audience(5, model="demo", timeout=30)
    print("  top 5 lookalikes: " + ", ".join(f"{m.customer_id} {m.score:.2f}" for m in members.itertuples()))


def _answers(score: ScoringClient, rec: RecommendationClient, seg: SegmentationClient, cid: str) -> list[str]:
    s = score.score([cid]).iloc[0]
    g = seg.get_segments([cid]).iloc[0]
    top = rec.recommend(cid, k=3)
    return [f"churn {s.churn_probability:.2f} ({s.churn_band} risk)",
            f"RFM {g.rfm_recency}-{g.rfm_frequency}-{g.rfm_monetary} '{g.rfm_segment}', lifecycle {g.lifecycle}, "
            f"{g.orders} orders, last {g.recency_days:.0f} days ago",
            "recommended: " + ", ".join(i.product.name for i in top.items)]


def show_event(score: ScoringClient, rec: RecommendationClient, seg: SegmentationClient, cid: str, cutoff: float,
               shared_store: bool) -> None:
    """The customer orders (a day after the snapshot) the product recommended first: the order event goes to the
    EventService, and Score, GetSegments and Recommend answer from the updated online features at once. Each
    service process has its own store unless they share one (TENURE_ONLINE_STORE=redis://...): then the event is
    sent once, to the scoring service, and all three reflect it; else it is sent to each of the three."""
    before = _answers(score, rec, seg, cid)
    item = rec.recommend(cid, k=1).items[0].product
    event = order_event(f"demo-order-{cid}", cid, cutoff + 86_400, [(item.product_id, item.category, 2, 2 * item.price)],
                        order_id=f"demo-{cid}", channel="web")
    targets = [score] if shared_store else [score, rec, seg]
    print(f"\n=== Events: {cid} orders 2 x {item.name} ({_money(2 * item.price)}) a day after the snapshot ===")
    _lines("before", before)
    for client in targets:
        summary = client.ingest_events([event])
        outcome = "applied" if summary.applied else OUTCOME_NAMES[summary.results[0].outcome]
        print(f"  IngestEvents -> {client.target}: {outcome}")
    if shared_store:
        print("  (one online store shared through Redis: sent once, to the scoring service; all three see it)")
    else:
        print("  (each service process has its own embedded store: sent to all three; sharing one through Redis, "
              "once is enough: `make run-redis`)")
    _lines("after", _answers(score, rec, seg, cid))


def _lines(title: str, lines: list[str]) -> None:
    print(f"  {title}: {lines[0]}")
    for line in lines[1:]:
        print(" " * (len(title) + 4) + line)


def run_demo(scoring: str, recommendation: str, segmentation: str, models: Path, shared_store: bool = False) -> None:
    examples = example_customers(models)
    # TLS / token from the TENURE_* environment; deadlines and the retry policy of tenure.client
    with ScoringClient.from_env(scoring) as score_client, RecommendationClient.from_env(recommendation) as rec, \
            SegmentationClient.from_env(segmentation) as seg:
        ids = [cid for cid, _ in examples]
        scores = score_client.score(ids)
        print("\n=== Tenure demo: answers from the running services ===")
        print("Score (the fast path): " + ", ".join(
            f"{r.customer_id} churn {r.churn_probability:.2f}" for r in scores.itertuples()))
        for cid, why in examples:
            show_customer(seg.customer_360(cid, recommendations=5, timeout=30), why)
        view = seg.customer_360(ids[0], timeout=30)
        print("models: " + ", ".join(f"{m.name}@{m.version}" for m in view.models))

        first = rec.recommend(ids[0], k=2)
        basket = [i.product.product_id for i in first.items]
        print("\nCheckout basket (guest): " + "; ".join(f"{i.product.name} [{i.product.category}]" for i in first.items))
        suggestions = rec.recommend_for_basket(basket, k=5)
        for item in suggestions.items:
            print(f"    {item.rank}. {item.product.name} [{item.product.category}] p={item.score:.3f} "
                  f"({SOURCES[item.source]})")

        show_event(score_client, rec, seg, ids[1], FeatureSnapshot.load_latest(models).cutoff.timestamp(),
                   shared_store)
        show_feedback(rec, ids[0])
        show_segments(seg)
        show_attribute_audience(seg, rec)
        show_uplift_audience(seg)
        show_send_time_audience(seg)
        seed = show_audience(seg)
        show_lookalike_job(seg, seed[:200])
        print()


def show_changes(segmentation: str, refresh: Callable[[], object], timeout_s: float = 120.0) -> None:
    """Refreshes the features (`refresh`), waits for the segmentation service to re-score the base
    with them, then shows who moved. Where the log stands is read before the refresh: the moves are
    recorded while the service re-scores, before it reports the new re-scoring."""
    with SegmentationClient.from_env(segmentation) as seg:
        before = seg.describe_segments().rescoring
        last = max((m.sequence for m in seg.segment_changes(timeout=60)), default=0)
        refresh()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            now = seg.describe_segments().rescoring
            if now.id != before.id:
                break
            time.sleep(0.5)
        else:
            print(f"(no re-scoring within {timeout_s:.0f}s)")
            return
        moves = list(seg.segment_changes(last, timeout=60))
        print(f"\n=== Re-scoring {now.id} (snapshot {now.snapshot_cutoff[:10]}): {len(moves):,} segment moves ===")
        families = {v.number: v.name.removeprefix("SEGMENT_FAMILY_").lower()
                    for v in segmentation_pb2.SegmentFamily.DESCRIPTOR.values}
        counts: dict[tuple[int, str, str], int] = {}
        for m in moves:
            key = (m.family, m.from_segment, m.to_segment)
            counts[key] = counts.get(key, 0) + 1
        for (family, a, b), n in sorted(counts.items(), key=lambda kv: -kv[1])[:8]:
            print(f"  {families[family]}: {a} -> {b}: {n:,} customers")
        if moves:
            m = moves[0]
            print(f"  e.g. {m.customer_id}: {families[m.family]} {m.from_segment} -> {m.to_segment} (move #{m.sequence})")
        print()
