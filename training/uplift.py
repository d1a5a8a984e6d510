"""Campaign uplift: who buys *because of* a campaign (issue 13).

Data: the shop's campaign log (tenure.campaigns: customer, campaign, treated or control, sent_at)
and its orders. One row per customer and campaign: the customer features at the send day
(FeatureSpace.customer_features at the day's start: nothing on or after the send) and the label
"at least one order within `window_days` after sent_at" (TrainSettings.uplift_window_days).

Learner: a T-learner on LightGBM, P(buy | treated, x) and P(buy | control, x) fitted on the treated
and the control rows; uplift = the difference. Both are exported to ONNX (`uplift-treated`,
`uplift-control`), so the services serve p_treated, p_control and their difference.

Time split by campaign (in order of their first send): the LAST campaign(s) are the holdout, never
used for any choice; the campaign(s) before it are the validation set on which the trees' size
is chosen (small vs. larger leaves) and on which the X-learner's Qini is measured for
comparison; the final models are refitted on training + validation (label windows that end
before the holdout's first send) and evaluated once on the holdout.

Evaluation on the holdout:
- Qini curve: for the top n rows by score, the incremental buyers Y_T(n) - Y_C(n) x N_T(n) / N_C(n);
  the Qini coefficient is the mean, over the ranking, of (curve - random's straight line) / N
  (0 for random targeting; in "share of the targeted base" units);
- uplift@k: treated minus control conversion rate among the top k% by score (k = 10, 20, 30);
  random targeting: the whole holdout's difference;
- baselines: random targeting and targeting by purchase probability (a LightGBM P(buy) on all the
  training rows, treatment ignored);
- on shops with a known true uplift (synthetic): Spearman(predicted, true uplift).

Groups (served with the uplift): persuadable (uplift >= u_pos), sleeping_dog (uplift <= u_neg),
sure_thing (otherwise, P(buy | control) >= p_sure), lost_cause (otherwise). u_pos = max(0.02,
half the average treatment effect observed on the training rows), u_neg = -0.02, p_sure = the
75th percentile of P(buy | control) over the training rows: chosen on training data, stored in
both manifests' params.

Observational logs (no randomised control group, e.g. The Complete Journey: treated = the
households the shop targeted) are trained the same way and labelled "observational, not
randomised": their uplift is confounded by the targeting.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from tenure.campaigns import OBSERVATIONAL, OBSERVATIONAL_COLUMN, TRUE_UPLIFT
from tenure.data import Shop
from tenure.errors import DataError
from tenure.features import FeatureSpace, TxArrays, to_days
from training.export import export_binary
from training.lgbm import fit_classifier, fit_regressor, positive_proba

log = logging.getLogger(__name__)

GROUPS = ("persuadable", "sure_thing", "lost_cause", "sleeping_dog")
"""Uplift groups, in the order of their codes (0..3)."""
TREATED_MODEL, CONTROL_MODEL = "uplift-treated", "uplift-control"
UPLIFT_MODELS = (TREATED_MODEL, CONTROL_MODEL)
MIN_ARM_ROWS = 200
"""Treated and control rows each, in training and in the holdout; fewer: uplift is skipped."""
MIN_CAMPAIGNS = 3
"""Training, validation and holdout campaigns."""
HOLDOUT_SHARE = 0.10
"""The holdout is the last campaigns holding at least this share of the rows (and MIN_ARM_ROWS per arm)."""
K_PERCENTS = (10, 20, 30)
CANDIDATES: tuple[dict[str, int], ...] = ({"num_leaves": 7, "min_child_samples": 100},
                                          {"num_leaves": 15, "min_child_samples": 50})
"""Tree sizes tried on the validation campaign(s)."""
U_NEG = -0.02
P_SURE_QUANTILE = 0.75


@dataclass
class UpliftSet:
    campaign: np.ndarray
    sent_day: np.ndarray
    """float days since the epoch of each row's send (sorting / splitting)."""
    codes: np.ndarray
    X: np.ndarray
    treated: np.ndarray
    y: np.ndarray
    true: np.ndarray | None

    def take(self, m: np.ndarray) -> "UpliftSet":
        return UpliftSet(self.campaign[m], self.sent_day[m], self.codes[m], self.X[m], self.treated[m], self.y[m],
                         None if self.true is None else self.true[m])

    def __len__(self) -> int:
        return len(self.y)


def uplift_space(space: FeatureSpace) -> FeatureSpace:
    """The features the uplift models read: the customer features without the BG/NBD x GG columns
    (fitting BG/NBD at every send day would cost more than it gives; the served snapshot has them all,
    the services take the models' columns by name)."""
    return dataclasses.replace(space, btyd_horizons=())


def uplift_set(space: FeatureSpace, arrays: TxArrays, customers: pd.DataFrame | None, campaigns: pd.DataFrame,
               window_days: int) -> tuple[UpliftSet, dict[str, int]]:
    """Rows of the campaign log whose customer has an order before the send day (features exist), with
    features at the send day and label = an order in [sent_at, sent_at + window_days). Also the counts
    of rows left out, per reason."""
    space = uplift_space(space)
    code = pd.Index(arrays.customer_ids).get_indexer(campaigns["customer_id"].astype(str))
    sent = to_days(campaigns["sent_at"])
    day = np.floor(sent)
    dropped = {"unknown_customer": int((code < 0).sum()), "no_order_before_send": 0}
    key = arrays.o_cust.astype(np.float64) * 1e6 + arrays.o_t  # sorted: orders are by (customer, time)
    parts = []
    for d in np.unique(day[code >= 0]):
        rows = np.flatnonzero((day == d) & (code >= 0))
        if not (arrays.o_t < d).any():  # sent before the first order of the data
            dropped["no_order_before_send"] += len(rows)
            continue
        present, X = space.customer_features(arrays, pd.Timestamp(int(d * 86_400), unit="s"), customers)
        where = np.searchsorted(present, code[rows])
        where = np.minimum(where, len(present) - 1)
        ok = present[where] == code[rows] if len(present) else np.zeros(len(rows), bool)
        dropped["no_order_before_send"] += int((~ok).sum())
        rows, where = rows[ok], where[ok]
        base = code[rows].astype(np.float64) * 1e6
        hits = (np.searchsorted(key, base + sent[rows] + window_days, "left")
                - np.searchsorted(key, base + sent[rows], "left"))
        parts.append((rows, X[where], (hits > 0).astype(np.int32)))
    if not parts:
        raise DataError("campaigns: no row names a customer with an order before the send")
    rows = np.concatenate([p[0] for p in parts])
    order = np.argsort(rows, kind="stable")
    rows = rows[order]
    true = campaigns[TRUE_UPLIFT].to_numpy(np.float64)[rows] if TRUE_UPLIFT in campaigns else None
    return UpliftSet(campaign=campaigns["campaign_id"].astype(str).to_numpy(object)[rows], sent_day=sent[rows],
                     codes=code[rows], X=np.concatenate([p[1] for p in parts])[order],
                     treated=campaigns["treated"].to_numpy(bool)[rows],
                     y=np.concatenate([p[2] for p in parts])[order], true=true), dropped


# -- metrics ----------------------------------------------------------------------------------------

def qini_curve(score: np.ndarray, y: np.ndarray, treated: np.ndarray, points: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """(fraction targeted, incremental buyers / N) at `points` cut-offs of the ranking by score (highest
    first; ties broken at random but reproducibly)."""
    n = len(y)
    rng = np.random.default_rng(0)
    order = np.lexsort((rng.random(n), -np.asarray(score, np.float64)))
    t, yy = treated[order], y[order].astype(np.float64)
    nt, nc = np.cumsum(t), np.cumsum(~t)
    yt, yc = np.cumsum(yy * t), np.cumsum(yy * ~t)
    inc = yt - yc * np.divide(nt, nc, out=np.zeros(n), where=nc > 0)
    at = np.unique(np.linspace(0, n, points + 1).astype(np.int64))
    inc = np.concatenate([[0.0], inc])
    return at / n, inc[at] / n


def qini_coefficient(score: np.ndarray, y: np.ndarray, treated: np.ndarray) -> float:
    """Mean over the ranking of (Qini curve - random's straight line), per targeted row of the base:
    0 for random targeting, positive when the ranking finds the incremental buyers first."""
    frac, q = qini_curve(score, y, treated, points=200)
    random = frac * q[-1]
    return float(np.trapezoid(q - random, frac))


def uplift_at(score: np.ndarray, y: np.ndarray, treated: np.ndarray, percent: float) -> float:
    """Treated minus control conversion rate among the top `percent`% by score (NaN: an empty arm)."""
    n = max(1, int(round(len(y) * percent / 100)))
    rng = np.random.default_rng(0)
    top = np.lexsort((rng.random(len(y)), -np.asarray(score, np.float64)))[:n]
    t, yy = treated[top], y[top]
    if t.all() or not t.any():
        return float("nan")
    return float(yy[t].mean() - yy[~t].mean())


def observed_uplift(y: np.ndarray, treated: np.ndarray) -> float:
    return float(y[treated].mean() - y[~treated].mean())


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def groups(uplift: np.ndarray, p_control: np.ndarray, u_pos: float, u_neg: float, p_sure: float) -> np.ndarray:
    """Group codes (GROUPS order) per row: persuadable, sure_thing, lost_cause, sleeping_dog."""
    return np.where(uplift >= u_pos, 0, np.where(uplift <= u_neg, 3, np.where(p_control >= p_sure, 1, 2)))


# -- learners ---------------------------------------------------------------------------------------

def _groups(s: UpliftSet) -> np.ndarray:
    return np.unique(s.codes, return_inverse=True)[1].ravel()


def _fit(s: UpliftSet, m: np.ndarray, seed: int, threads: int, **kw: int) -> lgb.LGBMClassifier:
    sub = s.take(m)
    return fit_classifier(sub.X, sub.y, _groups(sub), seed=seed, threads=threads, num_leaves=kw.get("num_leaves", 31),
                          min_child_samples=kw.get("min_child_samples", 50))


class TLearner:
    def fit(self, s: UpliftSet, seed: int, threads: int, **kw: int) -> "TLearner":
        self.treated_ = _fit(s, s.treated, seed, threads, **kw)
        self.control_ = _fit(s, ~s.treated, seed + 1, threads, **kw)
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(p_treated, p_control)."""
        return positive_proba(self.treated_, X), positive_proba(self.control_, X)

    def uplift(self, X: np.ndarray) -> np.ndarray:
        pt, pc = self.predict(X)
        return pt - pc


class XLearner:
    """Künzel et al.'s X-learner (compared on validation, not served): imputed effects of each arm
    from the other arm's model, regressed on the features, weighted by the share of treated rows."""

    def fit(self, s: UpliftSet, seed: int, threads: int, **kw: int) -> "XLearner":
        t = TLearner().fit(s, seed, threads, **kw)
        pt, pc = t.predict(s.X)
        d1 = s.y[s.treated] - pc[s.treated]
        d0 = pt[~s.treated] - s.y[~s.treated]
        g = _groups(s)
        trees = {"num_leaves": kw.get("num_leaves", 15), "min_child_samples": kw.get("min_child_samples", 50),
                 "n_estimators": 600, "learning_rate": 0.05, "objective": "regression"}
        self.tau1_ = fit_regressor(s.X[s.treated], d1, g[s.treated], seed=seed, threads=threads, **trees)  # type: ignore[arg-type]
        self.tau0_ = fit_regressor(s.X[~s.treated], d0, g[~s.treated], seed=seed, threads=threads, **trees)  # type: ignore[arg-type]
        self.share_ = float(s.treated.mean())
        return self

    def uplift(self, X: np.ndarray) -> np.ndarray:
        g = self.share_
        return g * np.asarray(self.tau0_.predict(X)) + (1 - g) * np.asarray(self.tau1_.predict(X))


def evaluate(scores: dict[str, np.ndarray], s: UpliftSet) -> dict[str, float]:
    """Qini coefficient and uplift@k of each named score on the rows of s."""
    out: dict[str, float] = {}
    for name, score in scores.items():
        prefix = "" if name == "model" else f"baseline_{name}_"
        out[f"{prefix}qini"] = qini_coefficient(score, s.y, s.treated)
        for k in K_PERCENTS:
            out[f"{prefix}uplift_at_{k}pct"] = uplift_at(score, s.y, s.treated, k)
    return out


# -- the split, the choice on validation, the holdout -------------------------------------------------

def split_campaigns(s: UpliftSet, window_days: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[list[str]]]:
    """Masks (train, validation, holdout) and the campaign ids of each. The holdout: the last campaigns (by
    first send) holding HOLDOUT_SHARE of the rows and MIN_ARM_ROWS per arm; validation: the same rule
    on the campaigns before; train: the rest, keeping only rows whose label window ends before the
    validation's first send (and validation rows whose window ends before the holdout's)."""
    first = pd.Series(s.sent_day).groupby(s.campaign).min().sort_values()
    names = list(first.index)
    if len(names) < MIN_CAMPAIGNS:
        raise DataError(f"campaigns: {len(names)} campaign(s) with usable rows; need at least {MIN_CAMPAIGNS} "
                        "(training, validation and holdout campaigns)")

    def take_last(pool: list[str]) -> list[str]:
        chosen: list[str] = []
        for name in reversed(pool):
            chosen.insert(0, name)
            m = np.isin(s.campaign, chosen)
            if (m.sum() >= HOLDOUT_SHARE * len(s) and (m & s.treated).sum() >= MIN_ARM_ROWS
                    and (m & ~s.treated).sum() >= MIN_ARM_ROWS):
                break
        return chosen

    hold = take_last(names)
    rest = names[: len(names) - len(hold)]
    # label windows must end before the next part starts: validation before the holdout, training before both
    valid = take_last([n for n in rest if first[n] + window_days <= first[hold[0]]]) if len(rest) >= 2 else []
    train = [n for n in rest if n not in valid and valid and first[n] + window_days <= first[valid[0]]]
    if not valid or not train:
        raise DataError(f"campaigns: {len(names)} campaigns leave no training and validation campaigns whose "
                        f"{window_days}-day windows end before the holdout ({', '.join(hold)}) and the validation "
                        f"starts; need {MIN_CAMPAIGNS} campaigns one after the other")
    m_hold = np.isin(s.campaign, hold)
    m_valid = np.isin(s.campaign, valid) & (s.sent_day + window_days <= first[hold[0]])
    m_train = np.isin(s.campaign, train) & (s.sent_day + window_days <= first[valid[0]])
    return m_train, m_valid, m_hold, [train, valid, hold]


def _check_arms(s: UpliftSet, what: str) -> None:
    nt, nc = int(s.treated.sum()), int((~s.treated).sum())
    if nt < MIN_ARM_ROWS or nc < MIN_ARM_ROWS:
        raise DataError(f"campaigns: {what} has {nt:,} treated and {nc:,} control rows; need at least "
                        f"{MIN_ARM_ROWS} of each")


class UpliftModel:
    def __init__(self, window_days: int = 14, seed: int = 7, threads: int = 1) -> None:
        self.window_days, self.seed, self.threads = window_days, seed, threads

    def fit(self, shop: Shop, space: FeatureSpace, arrays: TxArrays) -> "UpliftModel":
        campaigns = shop.campaigns
        if campaigns is None or campaigns.empty:
            raise DataError("no campaign log (Shop.campaigns): uplift needs campaigns with a control group")
        data, self.dropped_ = uplift_set(space, arrays, shop.customers, campaigns, self.window_days)
        self.observational_ = bool(OBSERVATIONAL_COLUMN in campaigns and campaigns[OBSERVATIONAL_COLUMN].any())
        m_train, m_valid, m_hold, self.campaigns_ = split_campaigns(data, self.window_days)
        train, valid, self.holdout_ = data.take(m_train), data.take(m_valid), data.take(m_hold)
        for part, what in ((train, "training"), (valid, "validation"), (self.holdout_, "the holdout")):
            _check_arms(part, f"{what} ({len(part):,} rows)")
        self.feature_names_ = uplift_space(space).names
        # the tree size, chosen on validation (never on the holdout); the X-learner measured beside it
        self.validation_: dict[str, float] = {}
        best, best_q = CANDIDATES[0], -np.inf
        for i, cand in enumerate(CANDIDATES):
            t = TLearner().fit(train, self.seed, self.threads, **cand)
            q = qini_coefficient(t.uplift(valid.X), valid.y, valid.treated)
            self.validation_[f"validation_qini_t_leaves{cand['num_leaves']}"] = q
            if q > best_q:
                best, best_q = cand, q
            if i == 0:
                x = XLearner().fit(train, self.seed, self.threads, **cand)
                self.validation_[f"validation_qini_x_leaves{cand['num_leaves']}"] = qini_coefficient(
                    x.uplift(valid.X), valid.y, valid.treated)
        self.params_ = best
        fit_rows = data.take(m_train | m_valid)
        self.train_rows_ = len(fit_rows)
        self.learner_ = TLearner().fit(fit_rows, self.seed, self.threads, **best)
        # purchase-probability baseline: P(buy) on all training rows, treatment ignored
        self.purchase_ = fit_classifier(fit_rows.X, fit_rows.y, _groups(fit_rows), seed=self.seed + 2,
                                        threads=self.threads, num_leaves=best["num_leaves"],
                                        min_child_samples=best["min_child_samples"])
        # group thresholds, from the training rows
        ate = observed_uplift(fit_rows.y, fit_rows.treated)
        _, pc = self.learner_.predict(fit_rows.X)
        self.thresholds_ = {"u_pos": round(max(0.02, 0.5 * ate), 4), "u_neg": U_NEG,
                            "p_sure": round(float(np.quantile(pc, P_SURE_QUANTILE)), 4)}
        self.train_ate_ = ate
        return self

    def evaluate(self) -> dict[str, Any]:
        h = self.holdout_
        pt, pc = self.learner_.predict(h.X)
        u = pt - pc
        rng = np.random.default_rng(self.seed)
        scores = {"model": u, "purchase_probability": positive_proba(self.purchase_, h.X),
                  "control_probability": pc, "random": rng.random(len(h))}
        out: dict[str, Any] = {
            "design": OBSERVATIONAL if self.observational_ else "randomised control group",
            "window_days": self.window_days,
            "train_rows": int(self.train_rows_), "holdout_rows": int(len(h)),
            "holdout_treated": int(h.treated.sum()), "holdout_control": int((~h.treated).sum()),
            "train_campaigns": ",".join(self.campaigns_[0]), "validation_campaigns": ",".join(self.campaigns_[1]),
            "holdout_campaigns": ",".join(self.campaigns_[2]),
            "holdout_observed_uplift": observed_uplift(h.y, h.treated), "train_observed_uplift": self.train_ate_,
            "holdout_conversion_treated": float(h.y[h.treated].mean()),
            "holdout_conversion_control": float(h.y[~h.treated].mean()),
            "learner": "T", "num_leaves": self.params_["num_leaves"],
            "min_child_samples": self.params_["min_child_samples"],
            **{f"rows_dropped_{k}": v for k, v in self.dropped_.items()},
            **self.validation_, **self.thresholds_,
            **evaluate(scores, h),
        }
        # random targeting's expected Qini is 0 and its uplift@k the whole holdout's observed uplift
        out["baseline_random_expected_qini"] = 0.0
        out["baseline_random_expected_uplift_at_k"] = out["holdout_observed_uplift"]
        from training import metrics as M

        out["auc_treated"] = M.roc_auc(h.y[h.treated], pt[h.treated])
        out["auc_control"] = M.roc_auc(h.y[~h.treated], pc[~h.treated])
        g = groups(u, pc, **self.thresholds_)
        for code, name in enumerate(GROUPS):
            m = g == code
            out[f"holdout_share_{name}"] = float(m.mean())
            if m.any() and h.treated[m].any() and (~h.treated[m]).any():
                out[f"holdout_observed_uplift_{name}"] = observed_uplift(h.y[m], h.treated[m])
        if h.true is not None:
            out["spearman_true_uplift"] = spearman(u, h.true)
            out["baseline_purchase_probability_spearman_true_uplift"] = spearman(scores["purchase_probability"], h.true)
            out["oracle_qini"] = qini_coefficient(h.true, h.y, h.treated)
            out["mean_true_uplift"] = float(h.true.mean())
        return out


def train_uplift(shop: Shop, repo: Path, space: FeatureSpace, arrays: TxArrays, *, window_days: int = 14,
                 seed: int = 7, threads: int = 1, data_fingerprint: str = "") -> list[dict[str, Any]]:
    """Fit, evaluate and export `uplift-treated` and `uplift-control` (one result entry each, the same metrics)."""
    t0 = time.perf_counter()
    model = UpliftModel(window_days, seed, threads).fit(shop, space, arrays)
    metrics = model.evaluate()
    metrics["train_seconds"] = round(time.perf_counter() - t0, 1)
    h = model.holdout_
    params = {"window_days": window_days, "learner": "T", "groups": list(GROUPS), **model.thresholds_,
              "design": metrics["design"], "train_campaigns": model.campaigns_[0] + model.campaigns_[1],
              "holdout_campaigns": model.campaigns_[2], "dataset": shop.name}
    window = {"data_start": str(shop.transactions["ts"].min().date()),
              "train_campaigns": ",".join(model.campaigns_[0] + model.campaigns_[1]),
              "holdout_campaigns": ",".join(model.campaigns_[2])}
    results = []
    for name, clf, arm in ((TREATED_MODEL, model.learner_.treated_, "treated"),
                           (CONTROL_MODEL, model.learner_.control_, "control")):
        path = export_binary(repo, name, clf, model.feature_names_, h.X[:5_000], metrics=metrics,
                             training_window=window, params={**params, "arm": arm}, data_fingerprint=data_fingerprint)
        results.append({"name": name, "path": str(path), "metrics": metrics})
    log.info("uplift: holdout Qini %.4f (purchase probability %.4f), %.1fs", metrics["qini"],
             metrics["baseline_purchase_probability_qini"], metrics["train_seconds"])
    return results


def sanity_problem(metrics: dict[str, Any]) -> str | None:
    """Why the uplift models must not be published: their holdout Qini does not beat random targeting's (0)."""
    q = float(metrics.get("qini", float("nan")))
    if not q > 0:
        base = float(metrics.get("baseline_purchase_probability_qini", float("nan")))
        return (f"holdout Qini {q:.4f} does not beat random targeting (0; purchase probability {base:.4f}): the "
                f"ranking finds no incremental buyers ({metrics.get('design', 'randomised control group')})")
    return None


def skip_reason(shop: Shop) -> str | None:
    """Why uplift is not trained at all (no campaign log), before any work."""
    c = shop.campaigns
    if c is None or c.empty:
        return "no campaign log (Shop.campaigns; `tenure train --campaigns FILE`): uplift skipped"
    nt = int(c["treated"].sum())
    nc = int(len(c) - nt)
    if nt < 2 * MIN_ARM_ROWS or nc < 2 * MIN_ARM_ROWS:
        return (f"campaign log has {nt:,} treated and {nc:,} control rows; uplift needs at least "
                f"{2 * MIN_ARM_ROWS} of each: skipped")
    return None


def metrics_rows(m: dict[str, Any], dataset: str) -> list[str]:
    """The metrics table's rows of the uplift models (one set for the pair)."""
    label = f"uplift ({m['window_days']} d; {m['design']})"
    rows = [f"| {dataset} | {label} | Qini coefficient (holdout {m['holdout_campaigns']}) | {m['qini']:.4f} | "
            f"random / purchase probability | {m['baseline_random_expected_qini']:.4f} / "
            f"{m['baseline_purchase_probability_qini']:.4f} |"]
    for k in K_PERCENTS:
        rows.append(f"| {dataset} | {label} | uplift@{k}% | {m[f'uplift_at_{k}pct']:.3f} | random / purchase probability | "
                    f"{m['baseline_random_expected_uplift_at_k']:.3f} / "
                    f"{m[f'baseline_purchase_probability_uplift_at_{k}pct']:.3f} |")
    if "spearman_true_uplift" in m:
        rows.append(f"| {dataset} | {label} | Spearman with the true uplift | {m['spearman_true_uplift']:.3f} | "
                    f"purchase probability | {m['baseline_purchase_probability_spearman_true_uplift']:.3f} |")
    return rows
