"""tenure.cli.resolve_dirs: --models / --state of the parsed command line, resolved as the services do."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from tenure.cli import resolve_dirs
from tenure.errors import ConfigError


@pytest.fixture(autouse=True)
def no_tenure_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TENURE_MODELS_DIR", "TENURE_STATE_DIR", "TENURE_SETTINGS_FILE"):
        monkeypatch.delenv(name, raising=False)


def resolved(**given: object) -> argparse.Namespace:
    args = argparse.Namespace(**given)
    resolve_dirs(args)
    return args


def test_defaults_env_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    args = resolved(command="feedback-report", state=None)
    assert args.state == "state" and not hasattr(args, "models")
    monkeypatch.setenv("TENURE_MODELS_DIR", "/srv/models")
    monkeypatch.setenv("TENURE_STATE_DIR", "/srv/state")
    args = resolved(command="serve", models=None, state=None, settings=None)
    assert (args.models, args.state) == ("/srv/models", "/srv/state")
    assert resolved(command="snapshot", models="mine").models == "mine"


def test_train_uses_feedback_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENURE_STATE_DIR", "/srv/state")
    assert resolved(command="train", models=None, state=None).state is None
    assert resolved(command="train", models=None, state="").state == "/srv/state"  # `--state` alone
    assert resolved(command="train", models=None, state="elsewhere").state == "elsewhere"


def test_settings_flag_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    given = tmp_path / "given.json"
    given.write_text(json.dumps({"models_dir": "/from/flag-file", "server_threads": "not checked here"}))
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps({"models_dir": "/from/env-file"}))
    monkeypatch.setenv("TENURE_SETTINGS_FILE", str(env_file))
    assert resolved(command="run", models=None).models == "/from/env-file"
    assert resolved(command="run", models=None, settings=str(given)).models == "/from/flag-file"
    env_file.write_text("[]")
    with pytest.raises(ConfigError, match="expected a JSON object of settings"):
        resolved(command="demo", models=None)
