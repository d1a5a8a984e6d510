"""Progress bars of `tenure train`, `snapshot` and `lookalike`: drawn on a terminal (a pseudo-terminal
here), gone before the metrics table, and nowhere in the output when stderr is not a terminal."""
from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tenure.data import Shop, write_shop
from training.pipeline import SNAPSHOT_STEPS, TRAIN_STEPS

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TENURE_")}
    return {**clean, "TENURE_LGBM_THREADS": "2", **extra}


def on_terminal(*args: str, timeout_s: float = 600) -> tuple[int, str]:
    """Run `python -m tenure.cli ARGS` with stdout and stderr on one pseudo-terminal of 120 columns, as in a
    user's terminal; (exit code, everything drawn on it with the terminal's \\r\\n turned back into \\n)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "tenure.cli", *args], cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, env=_env())
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s  # a safety net only: the loop ends when the command closes the terminal
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


def in_pipes(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenure.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=_env())


def assert_no_bar(proc: subprocess.CompletedProcess[str], desc: str) -> None:
    assert proc.returncode == 0, proc.stderr
    assert desc not in proc.stderr and "%|" not in proc.stderr, proc.stderr


@pytest.mark.slow
def test_train_draws_each_model_on_a_terminal_and_clears_before_the_table(tmp_path: Path) -> None:
    from tenure.synthetic import generate_shop

    shop = write_shop(generate_shop(n_customers=600, seed=11, n_products=100), tmp_path / "shop")
    code, screen = on_terminal("train", "--shop", str(shop), "--models", str(tmp_path / "models"))
    assert code == 0, screen[-3000:]
    bar, table = screen.split("Holdout metrics (", 1)
    assert "train synthetic-11:" in bar and "%|" in bar, bar
    for step in TRAIN_STEPS:
        assert f"], {step}" in bar, f"step {step} not drawn:\n{bar}"
    assert "publishing" in bar
    # the bar was erased before the table: nothing after it is drawn over a line (\r) or is the bar
    assert "\r" not in table and "train synthetic-11:" not in table, table
    assert "| dataset | model | metric | model | baseline | baseline value |\n" in table
    assert "| synthetic-11 | churn (90 d) | auc |" in table


@pytest.fixture(scope="module")
def shop_and_repo(small_shop: Shop, trained_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The test shop on disk and a copy of its trained repository (snapshot and lookalike add versions)."""
    folder = tmp_path_factory.mktemp("progress")
    shop = write_shop(small_shop, folder / "shop")
    repo = folder / "models"
    shutil.copytree(trained_repo, repo)
    return shop, repo


def test_snapshot_and_lookalike_draw_a_bar_on_a_terminal(shop_and_repo: tuple[Path, Path]) -> None:
    shop, repo = shop_and_repo
    code, screen = on_terminal("snapshot", "--shop", str(shop), "--models", str(repo), "--days-after", "7")
    assert code == 0, screen
    bar, result = screen.split("feature snapshot of ", 1)
    assert "snapshot:" in bar
    for step in ("reading the shop", *SNAPSHOT_STEPS):
        assert f"], {step}" in bar, f"step {step} not drawn:\n{bar}"
    assert "\r" not in result

    code, screen = on_terminal("lookalike", "--models", str(repo), "--name", "lookalike-bar")
    assert code == 0, screen
    bar, table = screen.split("| dataset |", 1)
    for step in ("loading the feature snapshot", "training", "exporting to ONNX"):
        assert f"], {step}" in bar, f"step {step} not drawn:\n{bar}"
    assert "\r" not in table and "| lookalike-bar | lookalike | auc |" in table


def test_no_bar_when_stderr_is_not_a_terminal(shop_and_repo: tuple[Path, Path]) -> None:
    shop, repo = shop_and_repo
    assert_no_bar(in_pipes("snapshot", "--shop", str(shop), "--models", str(repo)), "snapshot:")
    assert_no_bar(in_pipes("lookalike", "--models", str(repo), "--name", "lookalike-quiet"), "lookalike lookalike-quiet:")
    # --progress draws it anyway
    forced = in_pipes("lookalike", "--models", str(repo), "--name", "lookalike-forced", "--progress")
    assert forced.returncode == 0 and "lookalike lookalike-forced:" in forced.stderr and "%|" in forced.stderr
