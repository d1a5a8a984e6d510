"""Audiences: conditions over scores and segments -> members in a stable order, resumable by cursor.

Fields are the re-scoring's arrays (one value per customer of the snapshot). All conditions must
hold. Members are ordered by a numeric field, highest first, ties by customer id (or by customer
id alone): the order is a pure function of the query and the re-scoring, so a cursor (the
position after a member, with the query's fingerprint and the re-scoring id) resumes exactly where
an interrupted export stopped, and a cursor from another query or another re-scoring is refused.
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Callable

import numpy as np

from services.core.predictions import UPLIFT_GROUPS
from services.segmentation.engine import Segmenter
from tenure.attributes import number_condition
from tenure.errors import Cancelled, InvalidInput, StaleCursor, TooLarge
from tenure.timing import HORIZONS
from tenure.v1 import segmentation_pb2 as pb

OPS = pb.ConditionOp
MAX_CONDITIONS = 64
"""Conditions in one audience query; each is a pass over the whole base."""
MAX_VALUES = 1_000
"""Values of one IN condition."""
MAX_CURSOR_CHARS = 256
"""A cursor this service issues is ~60 characters; anything much longer is not one of them."""
NUMERIC_OPS = {OPS.CONDITION_OP_GE, OPS.CONDITION_OP_LE, OPS.CONDITION_OP_GT, OPS.CONDITION_OP_LT,
               OPS.CONDITION_OP_IN, OPS.CONDITION_OP_TOP_PERCENT, OPS.CONDITION_OP_BOTTOM_PERCENT,
               OPS.CONDITION_OP_EQ, OPS.CONDITION_OP_NOT_IN, OPS.CONDITION_OP_BETWEEN}


FIELD_MODELS: dict[str, str] = {
    "churn": "churn", "days_to_churn": "churn", "purchase_7d": "purchase_7d", "purchase_30d": "purchase_30d",
    "purchase_90d": "purchase_90d", "next_purchase_days": "purchase_90d", "clv": "clv", "clv_predicted": "clv",
    "lookalike": "lookalike", "cluster": "cluster", "grid": "grid",
    "uplift": "uplift-treated", "uplift_group": "uplift-treated",
    "best_hour": "send-time", "best_weekday": "send-time",
}
"""Fields computed by a model (for "cluster" and "grid": Segmenter.missing_for's names); the others
come from the features."""


def numeric_fields(seg: Segmenter) -> dict[str, np.ndarray]:
    """The numeric fields whose models the repository holds."""
    t = seg.table
    fields = {name: seg.snapshot.X[:, j] for j, name in enumerate(seg.snapshot.feature_names)}
    fields.update({"clv_historic": t.clv_historic, "recency_days": seg.recency, "orders": seg.orders,
                   "monetary": seg.spend})
    if t.churn is not None and t.days_to_churn is not None:
        fields.update(churn=t.churn, days_to_churn=t.days_to_churn)
    for k, h in enumerate(HORIZONS):
        if h in seg.predictor.horizons:
            fields[f"purchase_{h}d"] = t.purchase[:, k]
    if t.next_purchase_days is not None:
        fields["next_purchase_days"] = t.next_purchase_days
    if t.clv_predicted is not None:
        fields.update(clv=t.clv_historic + t.clv_predicted, clv_predicted=t.clv_predicted)
    if t.lookalike is not None:
        fields["lookalike"] = t.lookalike
    if t.uplift is not None:  # campaign uplift (training.uplift): "top 20% uplift"
        fields["uplift"] = t.uplift
    send = seg.predictor.send_times
    if send is not None:  # tenure.sendtime: 0-23 and 0 Monday .. 6 Sunday, in each customer's zone
        fields.update(best_hour=send.best_hour.astype(np.float64), best_weekday=send.best_weekday.astype(np.float64))
    return fields


SEGMENT_NAMES: dict[str, tuple[str, ...]] = {"uplift_group": UPLIFT_GROUPS}
"""Segment fields whose every name is valid in a condition, present in the base or not."""


def segment_fields(seg: Segmenter) -> dict[str, np.ndarray]:
    """The segment fields whose models the repository holds."""
    fields = {"rfm_segment": seg.segment.astype(str), "lifecycle": seg.stage_names().astype(str)}
    if seg.cluster is not None:
        fields["cluster"] = seg.cluster_names[seg.cluster].astype(str)
    if seg.grid_churn is not None:
        fields["grid"] = seg.grid_names().astype(str)
    if seg.table.uplift_group is not None:  # "not sure things, not sleeping dogs"
        fields["uplift_group"] = np.asarray(UPLIFT_GROUPS, dtype=object)[seg.table.uplift_group].astype(str)
    return fields


@dataclass
class Selection:
    rows: np.ndarray
    """Members' snapshot rows in the audience's order."""
    start: int
    """Position to resume from (0-based)."""
    fingerprint: str


class Audiences:
    """The fields of one re-scoring, indexed for audience queries."""

    def __init__(self, seg: Segmenter) -> None:
        self.seg = seg
        self.numeric = numeric_fields(seg)
        self.segments = segment_fields(seg)
        self.attributes = seg.predictor.attributes
        """The customers file's attributes (tenure.attributes.AttributeTable; None: the shop has none)."""
        self.rescoring_id = seg.rescoring.id if seg.rescoring else 0
        self.ids = seg.snapshot.customer_ids.astype(str)
        self._id_order = np.argsort(self.ids, kind="stable")

    def mask(self, conditions: list[pb.Condition], alive: Callable[[], bool] | None = None) -> np.ndarray:
        """alive: checked between conditions; once False (the caller went away) the rest is not computed."""
        if len(conditions) > MAX_CONDITIONS:
            raise TooLarge(f"{len(conditions)} conditions in one audience; at most {MAX_CONDITIONS}")
        keep = np.ones(len(self.ids), bool)
        for i, c in enumerate(conditions):
            if alive is not None and i and not alive():
                raise Cancelled(f"the caller went away after {i} of {len(conditions)} conditions")
            keep &= self._condition(i, c)
        return keep

    def _absent(self, field: str, where: str) -> None:
        """A field whose model is missing: FAILED_PRECONDITION naming the model."""
        if field in FIELD_MODELS and field not in self.numeric and field not in self.segments:
            raise self.seg.missing_for(FIELD_MODELS[field], f"{where}: the field {field!r}")

    def _condition(self, i: int, c: pb.Condition) -> np.ndarray:
        where = f"condition {i} ({c.field[:64]!r})"
        if len(c.values) > MAX_VALUES:
            raise TooLarge(f"{where}: {len(c.values)} values; at most {MAX_VALUES}")
        self._absent(c.field, where)
        op = OPS.Name(c.op).removeprefix("CONDITION_OP_") if c.op in OPS.values() else str(c.op)
        if c.field in self.segments:
            if op not in ("IN", "EQ", "NOT_IN") or not c.values:
                raise InvalidInput(f"{where}: segment fields take op IN, EQ or NOT_IN with names in values")
            if op == "EQ" and len(c.values) != 1:
                raise InvalidInput(f"{where}: EQ on a segment field takes exactly one name in values, "
                                   f"got {len(c.values)}")
            # the names present in the base, and a field's whole vocabulary (a group nobody is in is still a name)
            known = set(np.unique(self.segments[c.field]).tolist()) | set(SEGMENT_NAMES.get(c.field, ()))
            unknown = [v for v in c.values if v not in known]
            if unknown:
                raise InvalidInput(f"{where}: unknown value {unknown[0][:64]!r}; expected some of: "
                                   f"{', '.join(sorted(known))[:600]}")
            hit = np.isin(self.segments[c.field], list(c.values))
            return ~hit if op == "NOT_IN" else hit
        if self.attributes is not None and c.field in self.attributes.by_name:  # the customers file's (tenure.attributes)
            return self.attributes.condition(c.field, op, list(c.values), c.value, c.value_max, where)
        values = self.numeric.get(c.field)
        if values is None:
            attrs = f"; attributes: {', '.join(self.attributes.by_name)}" if self.attributes is not None else ""
            raise InvalidInput(f"{where}: unknown field; expected a segment field ({', '.join(sorted(self.segments))}) "
                               f"or a numeric one (churn, purchase_7d, purchase_30d, purchase_90d, clv, clv_predicted, "
                               f"lookalike, recency_days, orders, monetary, or a feature name){attrs[:600]}")
        if c.op not in NUMERIC_OPS:
            raise InvalidInput(f"{where}: op {c.op} is not a comparison; expected EQ, GE, LE, GT, LT, BETWEEN, IN, "
                               "NOT_IN, TOP_PERCENT or BOTTOM_PERCENT")
        v = c.value
        if not np.isfinite(v):
            raise InvalidInput(f"{where}: value {v} is not a finite number")
        if c.op in (OPS.CONDITION_OP_TOP_PERCENT, OPS.CONDITION_OP_BOTTOM_PERCENT):
            if not 0 < v <= 100:
                raise InvalidInput(f"{where}: percent {v}; expected 0 < percent <= 100")
            top = c.op == OPS.CONDITION_OP_TOP_PERCENT
            cut = np.quantile(values, 1 - v / 100 if top else v / 100)
            return values >= cut if top else values <= cut
        return number_condition(values, op, list(c.values), v, c.value_max, where)

    def fingerprint(self, query: pb.AudienceQuery) -> str:
        spec = [[c.field, int(c.op), c.value, sorted(c.values)] + ([c.value_max] if c.value_max else [])
                for c in query.conditions]
        return hashlib.sha256(json.dumps([spec, query.order_by]).encode()).hexdigest()[:16]

    def select(self, query: pb.AudienceQuery, alive: Callable[[], bool] | None = None) -> Selection:
        keep = self.mask(list(query.conditions), alive)
        fp = self.fingerprint(query)
        if query.order_by:
            self._absent(query.order_by, f"order_by {query.order_by[:64]!r}")
            key = self.numeric.get(query.order_by)
            if key is None:
                raise InvalidInput(f"order_by {query.order_by[:64]!r} is not a numeric field")
            # highest first; ties by customer id: lexsort's last key is the primary one
            order = np.lexsort((self.ids, -key.astype(np.float64)))
        else:
            order = self._id_order
        rows = order[keep[order]]
        start = self.decode(query.cursor, fp) if query.cursor else 0
        return Selection(rows, min(start, len(rows)), fp)

    def cursor(self, fingerprint: str, position: int) -> str:
        """Opaque cursor: resume after the member at 1-based `position`."""
        raw = json.dumps({"r": self.rescoring_id, "q": fingerprint, "p": position}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def decode(self, cursor: str, fingerprint: str) -> int:
        """The position a cursor resumes from. Parsed defensively (it comes from the client): bounded
        length (so no deep nesting can reach the JSON parser's recursion), then the exact shape
        {"r": int, "q": str, "p": int} this service writes; anything else is INVALID_ARGUMENT."""
        refused = InvalidInput(f"cursor {cursor[:64]!r}{'...' if len(cursor) > 64 else ''} is not a cursor this "
                               "service issued; pass AudienceMemberRow.cursor unchanged, or leave it empty to start")
        if len(cursor) > MAX_CURSOR_CHARS:
            raise refused
        try:
            data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        except (ValueError, RecursionError):  # binascii.Error, UnicodeDecodeError, JSONDecodeError
            raise refused from None
        if not isinstance(data, dict) or set(data) != {"r", "q", "p"}:
            raise refused
        rid, fp, position = data["r"], data["q"], data["p"]
        if not (type(rid) is int and type(position) is int and isinstance(fp, str)):  # bool is not a number here
            raise refused
        if fp != fingerprint:
            raise InvalidInput("the cursor belongs to another query (other conditions or order)")
        if rid != self.rescoring_id:
            raise StaleCursor(f"the cursor is from re-scoring {rid}; the base was re-scored since (now "
                              f"{self.rescoring_id}): export again from the start")
        if position < 0:
            raise InvalidInput("cursor position is negative")
        return position
