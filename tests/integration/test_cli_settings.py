"""`tenure --version`, and every command's --models / --state resolved as the services resolve them:
the flag > TENURE_MODELS_DIR / TENURE_STATE_DIR > the settings file (TENURE_SETTINGS_FILE) > the default."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository `tenure models list` can tell from any other: two models, a version each (not complete:
    what is listed is where the command looked, not what it found there)."""
    for name in ("churn", "clv"):
        (tmp_path / "repo" / name / "20260101T000000Z").mkdir(parents=True)
    return tmp_path / "repo"


def tenure(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TENURE_")}
    return subprocess.run([sys.executable, "-m", "tenure.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**clean, "PYTHONPATH": str(ROOT), **env})


def listed(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


def test_version() -> None:
    proc = tenure("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"tenure {version('tenure')}\n"


def test_models_dir_from_flag_env_and_settings_file(repo: Path, tmp_path: Path) -> None:
    expected = listed(tenure("models", "list", "--models", str(repo)))
    assert expected.startswith("churn\n") and "clv\n" in expected
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "churn" not in listed(tenure("models", "list", "--models", str(empty)))

    assert listed(tenure("models", "list", TENURE_MODELS_DIR=str(repo))) == expected
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"models_dir": str(repo)}))
    assert listed(tenure("models", "list", TENURE_SETTINGS_FILE=str(settings))) == expected
    # the flag wins over the environment, the environment over the settings file
    assert listed(tenure("models", "list", "--models", str(repo), TENURE_MODELS_DIR=str(empty))) == expected
    empty_settings = tmp_path / "empty-settings.json"
    empty_settings.write_text(json.dumps({"models_dir": str(empty)}))
    assert listed(tenure("models", "list", TENURE_MODELS_DIR=str(repo),
                         TENURE_SETTINGS_FILE=str(empty_settings))) == expected
    # without any of them: ./models, relative to where the command runs
    (tmp_path / "models").symlink_to(repo, target_is_directory=True)
    assert listed(tenure("models", "list", cwd=tmp_path)) == expected


def test_state_dir_from_env_and_settings_file(tmp_path: Path) -> None:
    proc = tenure("feedback-report", TENURE_STATE_DIR=str(tmp_path / "from-env"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"tenure feedback-report: error: no feedback recorded under {tmp_path / 'from-env'} "
                                   f"({tmp_path / 'from-env' / 'feedback.sqlite'} does not exist)")
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"state_dir": str(tmp_path / "from-file")}))
    proc = tenure("feedback-report", TENURE_SETTINGS_FILE=str(settings))
    assert f"no feedback recorded under {tmp_path / 'from-file'} " in proc.stderr
    proc = tenure("feedback-report", "--state", str(tmp_path / "from-flag"), TENURE_SETTINGS_FILE=str(settings),
                  TENURE_STATE_DIR=str(tmp_path / "from-env"))
    assert f"no feedback recorded under {tmp_path / 'from-flag'} " in proc.stderr


def test_service_only_settings_do_not_stop_other_commands(repo: Path, tmp_path: Path) -> None:
    expected = listed(tenure("models", "list", "--models", str(repo)))
    # a bad service setting is the services' business (serve stops on it), not `tenure models`' or `train`'s
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"models_dir": str(repo), "server_threads": "eight"}))
    assert listed(tenure("models", "list", TENURE_SETTINGS_FILE=str(settings), TENURE_MAX_BATCH_ROWS="-5")) == expected
    serve = tenure("serve", "scoring", TENURE_SETTINGS_FILE=str(settings))
    assert serve.returncode == 2 and "server_threads: got 'eight'" in serve.stderr

    # a settings file nobody can use stops every command with one line, exit 2
    settings.write_text(json.dumps({"model_dir": str(repo)}))
    proc = tenure("models", "list", TENURE_SETTINGS_FILE=str(settings))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"tenure models: error: settings file {settings}: unknown settings model_dir; known:")
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = tenure("train", "--shop", str(tmp_path / "no-shop"), TENURE_SETTINGS_FILE=str(tmp_path / "missing.json"))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"tenure train: error: settings file {tmp_path / 'missing.json'}: cannot read it")
