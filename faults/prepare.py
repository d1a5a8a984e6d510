"""The small synthetic shop and its trained model repository, built once into the cache directory."""
from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

SHOP_CUSTOMERS = 4_000
"""Small enough to train in about a minute on 2 cores; the same shop the test suite trains."""


def log(msg: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def code_fingerprint() -> str:
    """sha256 of the shop generator's and the training's sources: a cache built by other code is rebuilt."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted([*root.glob("tenure/*.py"), *root.glob("training/*.py")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def prepare(cache: Path) -> tuple[Path, Path]:
    """(shop directory, pristine model repository) under cache; each is built only when missing or
    when the code that builds them changed since. Scenarios that change a repository work on a copy
    (copy_repo)."""
    from tenure.data import write_shop
    from tenure.settings import TrainSettings
    from tenure.synthetic import generate_shop

    shop_dir, repo = cache / "shop", cache / "repo"
    done, stamp = cache / "repo.done", cache / "code.sha256"
    fingerprint = code_fingerprint()
    built_by = stamp.read_text().strip() if stamp.exists() else ""
    if cache.exists() and built_by != fingerprint:
        log(f"{cache} was built by other code: rebuilding it")
        shutil.rmtree(shop_dir, ignore_errors=True)
        done.unlink(missing_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint + "\n")
    if not (shop_dir / "transactions.parquet").exists():
        log(f"synthetic shop ({SHOP_CUSTOMERS:,} customers) -> {shop_dir}")
        write_shop(generate_shop(n_customers=SHOP_CUSTOMERS, seed=11, n_products=300), shop_dir)
    if not done.exists():
        from tenure.data import read_shop
        from training.pipeline import train_all

        shutil.rmtree(repo, ignore_errors=True)
        t0 = time.perf_counter()
        log(f"training the small shop -> {repo}")
        train_all(read_shop(shop_dir), repo, TrainSettings(propensity_train_customers=2_000, lgbm_threads=2))
        done.write_text("ok\n")
        log(f"trained in {time.perf_counter() - t0:.0f}s")
    return shop_dir, repo


def copy_repo(repo: Path, dest: Path) -> Path:
    """A private copy of the repository for a scenario that publishes or breaks versions."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(repo, dest)
    return dest
