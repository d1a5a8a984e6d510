"""RFM rule table, percentile scores and lifecycle stages."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tenure import segments as S

# The documented table, cell by cell: rows R = 5..1, columns FM = 1..5.
EXPECTED = {
    5: ["New", "Potential Loyalists", "Potential Loyalists", "Champions", "Champions"],
    4: ["Promising", "Potential Loyalists", "Potential Loyalists", "Champions", "Champions"],
    3: ["Hibernating", "Need Attention", "Need Attention", "Loyal", "Loyal"],
    2: ["Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"],
    1: ["Lost", "Lost", "At Risk", "At Risk", "Can't Lose Them"],
}


def test_rule_table_names_every_cell_as_documented() -> None:
    for r, names in EXPECTED.items():
        for fm, name in enumerate(names, start=1):
            # F = M = fm gives FM = fm.
            got = S.rfm_segment(np.array([r]), np.array([fm]), np.array([fm]))[0]
            assert got == name, (r, fm)
    assert {n for row in EXPECTED.values() for n in row} == {r.name for r in S.DEFAULT_RFM_RULES}


def test_fm_rounds_half_up() -> None:
    # F=4, M=5 -> FM 4.5 -> 5: an R=1 customer with that value is "Can't Lose Them", not "At Risk".
    assert S.rfm_segment(np.array([1]), np.array([4]), np.array([5]))[0] == "Can't Lose Them"


def test_rules_load_from_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "rules.json"
    path.write_text(json.dumps([{"name": "Everyone", "r_min": 1, "r_max": 5, "fm_min": 1, "fm_max": 5}]))
    rules = S.load_rules(path)
    assert S.rfm_segment(np.array([5, 1]), np.array([5, 1]), np.array([1, 1]), rules).tolist() == ["Everyone"] * 2


def test_percentile_scores_share_ties_and_respect_direction() -> None:
    base = np.array([1, 1, 1, 1, 1, 1, 2, 3, 4, 5], float)
    # All six 1s share a mid-rank (30%) -> band 2; 5 is the top decile -> 5.
    assert S.percentile_scores(base, np.array([1.0, 5.0])).tolist() == [2, 5]
    recency = np.arange(100, dtype=float)
    assert S.percentile_scores(recency, np.array([0.0, 99.0]), higher_is_better=False).tolist() == [5, 1]


@pytest.mark.parametrize(
    ("recency", "tenure", "gap", "stage"),
    [
        (5, 10, -1, S.NEW),
        (20, 400, 30, S.ACTIVE),
        (60, 400, 30, S.AT_RISK),
        (100, 400, 30, S.LAPSED),
        (400, 900, 30, S.LOST),
        (40, 400, -1, S.ACTIVE),  # one order: the base's usual gap (40 days here) applies
    ],
)
def test_lifecycle(recency: float, tenure: float, gap: float, stage: int) -> None:
    got = S.lifecycle_stage(np.array([recency], float), np.array([tenure], float), np.array([gap], float), base_gap=40.0)
    assert got.tolist() == [stage]
