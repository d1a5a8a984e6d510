"""RFM scores and named segments, lifecycle stages: pure functions over feature columns.

RFM scores are 1-5 percentile bands of the customer base (5 best: most recent, most orders,
highest spend); ties share their mid-rank, so a base where most customers ordered once does not
spread identical customers across bands. The named segment comes from a rule table over the
recency score R and FM = round((F + M) / 2); the first matching rule wins.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class RfmRule:
    name: str
    r_min: int
    r_max: int
    fm_min: int
    fm_max: int

    def matches(self, r: np.ndarray, fm: np.ndarray) -> np.ndarray:
        return (r >= self.r_min) & (r <= self.r_max) & (fm >= self.fm_min) & (fm <= self.fm_max)


DEFAULT_RFM_RULES: tuple[RfmRule, ...] = (
    RfmRule("Champions", 4, 5, 4, 5),
    RfmRule("Loyal", 3, 3, 4, 5),
    RfmRule("Potential Loyalists", 4, 5, 2, 3),
    RfmRule("New", 5, 5, 1, 1),
    RfmRule("Promising", 4, 4, 1, 1),
    RfmRule("Need Attention", 3, 3, 2, 3),
    RfmRule("Can't Lose Them", 1, 2, 5, 5),
    RfmRule("At Risk", 1, 2, 3, 4),
    RfmRule("Hibernating", 2, 3, 1, 2),
    RfmRule("Lost", 1, 1, 1, 2),
)
"""Covers every (R, FM) cell of the 5 x 5 grid; tests check coverage and each cell's name."""


def load_rules(path: Path) -> tuple[RfmRule, ...]:
    """A JSON list of {name, r_min, r_max, fm_min, fm_max} replaces the default table."""
    return tuple(RfmRule(**row) for row in json.loads(Path(path).read_text()))


def percentile_scores(base: np.ndarray, values: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """1-5 band of each value's mid-rank percentile within `base`."""
    ref = np.sort(base if higher_is_better else -base)
    v = values if higher_is_better else -values
    mid = (np.searchsorted(ref, v, "left") + np.searchsorted(ref, v, "right")) / 2.0
    return np.clip(1 + np.floor(5 * mid / max(len(ref), 1)), 1, 5).astype(np.int64)


def rfm_segment(r: np.ndarray, f: np.ndarray, m: np.ndarray,
                rules: tuple[RfmRule, ...] = DEFAULT_RFM_RULES) -> np.ndarray:
    fm = np.floor((f + m) / 2 + 0.5).astype(np.int64)
    names = np.full(len(r), "Unclassified", dtype=object)
    done = np.zeros(len(r), bool)
    for rule in rules:
        hit = rule.matches(r, fm) & ~done
        names[hit] = rule.name
        done |= hit
    return names


# Lifecycle stage codes, as in the contract's LifecycleStage enum.
NEW, ACTIVE, AT_RISK, LAPSED, LOST = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class LifecycleRules:
    new_customer_days: float = 30.0
    """First purchase at most this many days ago -> NEW."""
    lost_after_days: float = 365.0
    """No purchase for longer -> LOST."""
    at_risk_ratio: float = 1.5
    """Recency above this many usual gaps -> AT_RISK."""
    lapsed_ratio: float = 3.0
    """Recency above this many usual gaps -> LAPSED."""
    min_gap_days: float = 7.0


def lifecycle_stage(recency: np.ndarray, tenure: np.ndarray, gap_mean: np.ndarray, base_gap: float,
                    rules: LifecycleRules = LifecycleRules()) -> np.ndarray:
    """Stage per customer; a one-order customer's usual gap is the base's median gap."""
    gap = np.maximum(np.where(gap_mean > 0, gap_mean, base_gap), rules.min_gap_days)
    ratio = recency / gap
    stage = np.where(ratio <= rules.at_risk_ratio, ACTIVE, np.where(ratio <= rules.lapsed_ratio, AT_RISK, LAPSED))
    stage = np.where(recency > rules.lost_after_days, LOST, stage)
    return np.where(tenure <= rules.new_customer_days, NEW, stage).astype(np.int64)
