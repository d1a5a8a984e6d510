"""`tenure report`: the evaluation data training saves, and the HTML page opened in headless Chromium."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from tenure.artifacts import latest_valid, write_artifact
from training import evaluation as E

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT_DIR = Path(os.environ.get("TENURE_REPORT_SCREENSHOTS", "/tmp"))


# ------------------------------------------------------------------------------------- evaluation data


def test_curves_are_well_formed() -> None:
    rng = np.random.default_rng(3)
    y = rng.random(5_000) < 0.3
    p = np.clip(0.3 + 0.4 * (y - 0.3) + rng.normal(0, 0.2, len(y)), 0, 1)
    ev = E.binary_evaluation(y, {"model": p, "noise": rng.random(len(y))}, {"model": p})
    roc = np.array(ev["curves"]["model"]["roc"])
    assert len(roc) <= E.ROC_POINTS + 2
    assert roc[0].tolist() == [0.0, 0.0] and roc[-1].tolist() == [1.0, 1.0]
    assert (np.diff(roc[:, 0]) >= 0).all() and (np.diff(roc[:, 1]) >= 0).all()
    gains = np.array(ev["curves"]["model"]["gains"])
    assert gains[0].tolist() == [0.0, 0.0] and gains[-1].tolist() == [1.0, 1.0]
    assert (np.diff(gains[:, 1]) >= 0).all()
    assert ev["curves"]["model"]["auc"] > ev["curves"]["noise"]["auc"]
    lift = ev["curves"]["model"]["lift_by_decile"]
    assert lift[0] > 1 > lift[-1]
    bins = ev["calibration"]["model"]
    assert sum(b["count"] for b in bins) == len(y) == ev["rows"]
    assert all(b["lower"] <= b["mean_predicted"] <= b["upper"] for b in bins if b["count"])
    one_class = E.binary_evaluation(np.zeros(10), {"model": np.linspace(0, 1, 10)})
    assert one_class["curves"] == {} and "one class" in one_class["note"]


def test_spend_deciles_and_bgnbd_tables() -> None:
    rng = np.random.default_rng(5)
    pred = rng.gamma(2, 50, 1_000)
    actual = pred * rng.uniform(0.5, 1.5, len(pred))
    rows = E.spend_deciles(pred, actual, baseline=pred * 0.9)
    assert [r["decile"] for r in rows] == list(range(1, 11))
    assert sum(r["customers"] for r in rows) == len(pred)
    assert rows[0]["predicted"] > rows[-1]["predicted"] and rows[0]["actual"] > rows[-1]["actual"]
    freq = rng.integers(0, 12, 800)
    table = E.bgnbd_diagnostics(freq, rng.uniform(0, 800, 800), freq * 0.5, freq * 0.4, 90)
    assert sum(g["customers"] for g in table["by_frequency"]) == 800 == sum(g["customers"] for g in table["by_recency"])
    assert table["by_frequency"][-1]["group"] == "7+"
    assert json.loads(E.to_bytes({"x": [np.nan, np.float32(0.123456789)]}))["x"] == [None, 0.12346]


def test_training_saves_verified_evaluation_files(trained_repo: Path) -> None:
    for name in ("churn", "purchase_30d", "clv", "lookalike", "channel", "propensity"):
        vdir, manifest = latest_valid(trained_repo, name)
        assert E.EVALUATION_FILE in manifest.files, name  # listed with its sha256, verified on load
        path = vdir / E.EVALUATION_FILE
        assert path.stat().st_size < 200_000, name
        ev = json.loads(path.read_text())
        assert ev["schema"] == E.SCHEMA and ev["feature_importance"], name
    churn = json.loads((latest_valid(trained_repo, "churn")[0] / E.EVALUATION_FILE).read_text())
    assert set(churn["curves"]) == {"model", "recency", "BG/NBD"} and set(churn["calibration"]) == {"model", "BG/NBD"}
    assert churn["bgnbd"]["by_frequency"] and churn["bgnbd"]["by_recency"]
    assert sum(b["count"] for b in churn["calibration"]["model"]) == churn["rows"]
    clv = json.loads((latest_valid(trained_repo, "clv")[0] / E.EVALUATION_FILE).read_text())
    assert len(clv["spend_deciles"]) == 10


# ------------------------------------------------------------------------------------------ the page


@pytest.fixture(scope="module")
def report_repo(trained_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the trained repository plus an older-style churn-cdnow version without evaluation data."""
    repo = tmp_path_factory.mktemp("report") / "models"
    shutil.copytree(trained_repo, repo)
    vdir, manifest = latest_valid(repo, "churn")
    manifest.name = "churn-cdnow"
    manifest.files = {}
    manifest.params = {**manifest.params, "dataset": "cdnow"}
    write_artifact(repo, manifest, {"model.onnx": vdir / "model.onnx"})
    return repo


@pytest.fixture(scope="module")
def report(report_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report-out") / "report.html"
    done = subprocess.run([sys.executable, "-m", "tenure.cli", "report", "--models", str(report_repo), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert str(out) in done.stdout
    return out


def test_report_is_self_contained_and_complete(report: Path) -> None:
    text = report.read_text()
    urls = [u for u in re.findall(r"""(?:https?:)?//[^\s"'<>)]+""", text) if u != "http://www.w3.org/2000/svg"]
    assert urls == []
    assert not re.search(r"""<(?:script|link|img|iframe)\b""", text)
    for name in ("churn", "purchase_30d", "clv", "lookalike", "channel", "propensity", "clusters"):
        assert f'id="model-{name}"' in text, name
    for title in ("churn: ROC", "churn: cumulative gains", "churn: reliability", "BG/NBD: purchases in",
                  "clv: spend by predicted decile", "feature importance", "cluster sizes", "RFM segments"):
        assert title in text, title
    assert "no evaluation data for this version" in text  # the older-style churn-cdnow version
    # measurements that are not models, from the feature snapshot's manifest, with their baselines
    assert 'id="model-measured"' in text and 'href="#model-measured"' in text
    for row in ("best 3-h window hit rate", "shop-wide best window", "auc with / without", "decision (margin"):
        assert row in text, row


def test_report_without_models_fails_with_reason(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "tenure.cli", "report", "--models", str(tmp_path / "none"),
                           "--out", str(tmp_path / "r.html")], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "does not exist" in done.stderr


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        reason = f"headless Chromium needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def test_report_renders_in_headless_chromium(report: Path, browser: Any) -> None:
    browser.get(report.as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    errors = [e for e in browser.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]
    assert errors == []
    requests = [json.loads(e["message"])["message"] for e in browser.get_log("performance")]
    fetched = {m["params"]["request"]["url"] for m in requests if m.get("method") == "Network.requestWillBeSent"}
    assert fetched <= {report.as_uri()}, fetched
    plots = browser.execute_script("""
        return Array.from(document.querySelectorAll('svg.plot')).map(svg => {
            const box = svg.getBoundingClientRect();
            const marks = Array.from(svg.querySelectorAll('.mark')).filter(m => {
                const b = m.getBBox(); return b.width > 0 || b.height > 0; });
            return {title: svg.getAttribute('aria-label'), w: box.width, h: box.height, marks: marks.length};
        });""")
    assert len(plots) >= 20
    empty = [p for p in plots if not (p["w"] > 0 and p["h"] > 0 and p["marks"] > 0)]
    assert empty == []
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOT_DIR / "tenure-report.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
