"""The Dask engine (training.dask_engine) on a real distributed LocalCluster: its features equal the pandas
path's bit for bit, its churn model is as good as the pandas-trained one, and score-file --engine dask
accounts for every row and gives onnxruntime's scores."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pytest

from tenure.artifacts import latest_valid
from tenure.cli import main
from tenure.data import Shop
from tenure.features import FeatureSpace
from tenure.settings import TrainSettings
from tenure.synthetic import generate_shop
from training import dask_engine as D
from training.churn import ChurnModel, churn_set
from training.pipeline import data_end, train_churn, write_snapshot
from training.windows import History, label_plan

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def shop() -> Shop:
    return generate_shop(n_customers=6_000, seed=11)


@pytest.fixture(scope="module")
def dataset(shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shop's lines as a directory of 5 Parquet files (in the shop's line order), and its customers."""
    root = tmp_path_factory.mktemp("dask-shop")
    (root / "tx").mkdir()
    for k, rows in enumerate(np.array_split(np.arange(len(shop.transactions)), 5)):
        shop.transactions.iloc[rows].to_parquet(root / "tx" / f"part-{k:03d}.parquet", index=False)
    assert shop.customers is not None
    shop.customers.to_parquet(root / "customers.parquet", index=False)
    return root


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="2GiB",
                                  dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def test_dask_features_equal_the_pandas_path(shop: Shop, dataset: Path, scheduler: str) -> None:
    space = FeatureSpace.fit(shop)
    arrays = space.encode(shop)
    end = data_end(shop)
    plan = label_plan(History.of(shop.transactions), 90, "churn", 30, 3)
    train_cutoffs, holdout = ChurnModel().cutoffs(end, plan)
    cutoffs = [*train_cutoffs, holdout]
    with distributed.Client(scheduler):
        ddf = D.read_transactions(dataset / "tx")
        g = D.compute_globals(ddf, shop.customers)
        assert g.space == space
        assert g.history == History.of(shop.transactions)
        labelled = D.labelled_sets(ddf, g.space, shop.customers, cutoffs, plan.label_days, 365, snapshot_at=end,
                                   npartitions=3).persist()
        for k, cutoff in enumerate(cutoffs):
            ids, X, y = D.collect_sorted(labelled[labelled[D.SET_COLUMN] == k], space.names)
            want = churn_set(space, arrays, shop.customers, cutoff, plan.label_days, 365)
            np.testing.assert_array_equal(ids, arrays.customer_ids[want.codes])
            assert X.dtype == np.float32 and X.shape == want.X.shape
            np.testing.assert_array_equal(X, want.X)
            np.testing.assert_array_equal(y, want.y)
        ids, X, _ = D.collect_sorted(labelled[labelled[D.SET_COLUMN] == len(cutoffs)], space.names)
        codes, want_X = space.customer_features(arrays, end, shop.customers)
        np.testing.assert_array_equal(ids, arrays.customer_ids[codes])
        np.testing.assert_array_equal(X, want_X)


def _churn_manifest(repo: Path) -> Any:
    return latest_valid(repo, "churn")[1]


def test_dask_churn_matches_the_pandas_model(shop: Shop, dataset: Path, scheduler: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    main(["train", "--engine", "dask", "--scheduler", scheduler, "--transactions", str(dataset / "tx"),
          "--customers-file", str(dataset / "customers.parquet"), "--models", str(tmp_path / "dask")])
    assert "churn" in capsys.readouterr().out
    train_churn(shop, tmp_path / "pandas", TrainSettings())
    got, want = _churn_manifest(tmp_path / "dask"), _churn_manifest(tmp_path / "pandas")
    assert got.features == want.features
    assert got.data_fingerprint == want.data_fingerprint
    assert got.metrics["holdout_rows"] == want.metrics["holdout_rows"]
    assert got.metrics["train_rows"] == want.metrics["train_rows"]
    assert got.metrics["onnx_parity_max_abs_diff"] <= 1e-4
    assert abs(got.metrics["auc"] - want.metrics["auc"]) <= 0.005, (got.metrics["auc"], want.metrics["auc"])
    assert (tmp_path / "dask" / "churn-contributions").is_dir()


def test_dask_score_file_accounts_for_every_row(shop: Shop, dataset: Path, scheduler: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import onnxruntime as ort

    repo = tmp_path / "repo"
    train_churn(shop, repo, TrainSettings())
    snapshot, _ = write_snapshot(shop, repo, data_end(shop), FeatureSpace.fit(shop))
    known = snapshot.customer_ids[::7].tolist()
    ids = known + [f"nobody-{i}" for i in range(25)]
    ids = [ids[i] for i in np.random.default_rng(3).permutation(len(ids))]
    (tmp_path / "in").mkdir()
    for k, rows in enumerate(np.array_split(np.arange(len(ids)), 3)):
        pd.DataFrame({"customer_id": [ids[i] for i in rows]}).to_parquet(tmp_path / "in" / f"p{k}.parquet")
    main(["score-file", "--engine", "dask", "--scheduler", scheduler, "--models", str(repo),
          "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")])
    assert f"rows in {len(ids):,}, scored {len(known):,}, unknown 25" in capsys.readouterr().out
    parts = sorted((tmp_path / "out").glob("*.parquet"))
    assert len(parts) == 3
    out = pd.concat([pd.read_parquet(p) for p in sorted(parts, key=lambda p: int(p.stem.split(".")[-1]))],
                    ignore_index=True)
    assert out["customer_id"].tolist() == ids
    unknown = out["customer_id"].str.startswith("nobody-")
    assert out.loc[unknown, "error"].str.contains("not in the feature store").all()
    assert out.loc[unknown, "churn_probability"].isna().all()
    assert out.loc[~unknown, "error"].isna().all()
    vdir, manifest = latest_valid(repo, "churn")
    sess = ort.InferenceSession(str(vdir / "model.onnx"), providers=["CPUExecutionProvider"])
    cols = [snapshot.feature_names.index(n) for n in manifest.features]
    rows = snapshot.rows(out.loc[~unknown, "customer_id"].tolist())
    want = sess.run(["probabilities"], {"features": np.ascontiguousarray(snapshot.X[rows][:, cols])})[0][:, 1]
    np.testing.assert_allclose(out.loc[~unknown, "churn_probability"].to_numpy(), want, rtol=1e-5)
