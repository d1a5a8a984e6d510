"""CLI and service entry points: every error is one line on stderr and exit code 2 (--debug: traceback)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TENURE_")}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120,
                          env={**clean, **(env or {})})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize("entry", [["-m", "tenure.cli", "serve", "scoring"], ["-m", "services.scoring"],
                                   ["-m", "services.recommendation"], ["-m", "services.segmentation"]])
def test_bad_setting_stops_the_service_with_one_line(entry: list[str]) -> None:
    proc = _run(*entry, env={"TENURE_SERVER_THREADS": "eight"})
    assert proc.returncode == 2
    line = _one_line(proc)
    assert "TENURE_SERVER_THREADS: got 'eight'; allowed: a whole number from 1 to 1024" in line


def test_negative_rows_and_debug_traceback() -> None:
    proc = _run("-m", "tenure.cli", "serve", "scoring", env={"TENURE_MAX_BATCH_ROWS": "-5"})
    assert proc.returncode == 2
    assert _one_line(proc) == ("tenure serve: error: TENURE_MAX_BATCH_ROWS: got '-5'; allowed: a whole number "
                               "from 1 to 10000000")
    debug = _run("-m", "tenure.cli", "serve", "scoring", "--debug", env={"TENURE_MAX_BATCH_ROWS": "-5"})
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "ConfigError" in debug.stderr


def test_settings_file_with_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text('{"max_streams": 2, "max_stream": 3}')
    proc = _run("-m", "tenure.cli", "serve", "scoring", "--settings", str(path))
    assert proc.returncode == 2
    line = _one_line(proc)
    assert "unknown settings max_stream; known: " in line and "max_streams" in line


def test_score_file_missing_input_and_unreachable_service(tmp_path: Path) -> None:
    missing = tmp_path / "nope.parquet"
    proc = _run("-m", "tenure.cli", "score-file", "--input", str(missing), "--output", str(tmp_path / "o.parquet"))
    assert proc.returncode == 2
    assert _one_line(proc) == f"tenure score-file: error: {missing}: no such file or directory"

    ids = tmp_path / "ids.parquet"
    pq.write_table(pa.table({"customer_id": ["c1", "c2"]}), ids)
    proc = _run("-m", "tenure.cli", "score-file", "--target", f"127.0.0.1:{_closed_port()}", "--input", str(ids),
                "--output", str(tmp_path / "o.parquet"))
    assert proc.returncode == 2
    assert _one_line(proc).startswith("tenure score-file: error: UNAVAILABLE: ")


def test_health_of_unreachable_target_is_exit_1() -> None:
    proc = _run("-m", "tenure.cli", "health", f"127.0.0.1:{_closed_port()}", "--timeout-s", "0.5")
    assert proc.returncode == 1
    assert "not SERVING" in _one_line(proc)
