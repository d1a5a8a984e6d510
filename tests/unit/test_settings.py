"""ServiceSettings: types and limits checked at start, env/file/flag precedence, one-line errors."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tenure.errors import ConfigError
from tenure.settings import SERVICE_LIMITS, ServiceSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TENURE_<FIELD> (or settings file) from the caller's environment leaks into these tests."""
    import os

    for name in list(os.environ):
        if name.startswith("TENURE_"):
            monkeypatch.delenv(name)


def test_defaults_are_valid_and_normalised() -> None:
    s = ServiceSettings()
    assert s == ServiceSettings.from_env()
    assert isinstance(ServiceSettings(models_dir="repo").models_dir, Path)  # type: ignore[arg-type]
    assert isinstance(ServiceSettings(shutdown_grace_s=1).shutdown_grace_s, float)
    assert dataclasses.replace(s, workers=3).workers == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.workers = 2  # type: ignore[misc]


@pytest.mark.parametrize(("var", "raw", "allowed"), [
    ("TENURE_MAX_BATCH_ROWS", "-5", "a whole number from 1 to"),
    ("TENURE_SERVER_THREADS", "eight", "a whole number from 1 to 1024"),
    ("TENURE_SERVER_THREADS", "8.5", "a whole number"),
    ("TENURE_SHUTDOWN_GRACE_S", "nan", "a number from 0 to 3600"),
    ("TENURE_CHURN_BAND_HIGH", "1.5", "a number from 0 to 1"),
    ("TENURE_SCORING_PORT", "70000", "a whole number from 0 to 65535"),
    ("TENURE_PIN_WORKERS", "maybe", "true or false"),
    ("TENURE_HOST", " ", "non-empty text"),
])
def test_bad_env_value_is_one_line_naming_variable_value_and_allowed(
        monkeypatch: pytest.MonkeyPatch, var: str, raw: str, allowed: str) -> None:
    monkeypatch.setenv(var, raw)
    with pytest.raises(ConfigError) as err:
        ServiceSettings.from_env()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{var}: got {raw!r}; allowed: ")
    assert allowed in message


@pytest.mark.parametrize(("raw", "expected"), [
    ("1", True), ("true", True), ("YES", True), (" on ", True), ("0", False), ("false", False), ("No", False),
    ("off", False),
])
def test_booleans_accept_the_usual_words(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    monkeypatch.setenv("TENURE_PIN_WORKERS", raw)
    assert ServiceSettings.from_env().pin_workers is expected


@pytest.mark.parametrize("raw", ["", "2", "y", "enabled", "truee"])
def test_booleans_reject_other_words(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("TENURE_PIN_WORKERS", raw)
    with pytest.raises(ConfigError, match="TENURE_PIN_WORKERS"):
        ServiceSettings.from_env()


def test_every_limit_is_checked_on_direct_construction() -> None:
    """ServiceSettings(**kw) and dataclasses.replace check the same limits as the environment."""
    hints = {f.name: f for f in dataclasses.fields(ServiceSettings)}
    for name, limit in SERVICE_LIMITS.items():
        if name not in hints:
            continue
        for bad in ([limit.lo - 1] if limit.lo is not None else []) + ([limit.hi + 1] if limit.hi is not None else []):
            value = int(bad) if isinstance(getattr(ServiceSettings(), name), int) else bad
            with pytest.raises(ConfigError, match=f"setting {name} \\(TENURE_{name.upper()}\\): got"):
                ServiceSettings(**{name: value})
    with pytest.raises(ConfigError, match="max_streams"):
        dataclasses.replace(ServiceSettings(), max_streams=0)
    with pytest.raises(ConfigError, match="churn_band_medium <= churn_band_high"):
        ServiceSettings(churn_band_medium=0.8, churn_band_high=0.5)


def test_fields_without_limits_are_type_checked() -> None:
    assert "recommendation_target" not in SERVICE_LIMITS and "state_dir" not in SERVICE_LIMITS
    with pytest.raises(ConfigError, match="recommendation_target.*allowed: text"):
        ServiceSettings(recommendation_target=5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="state_dir.*allowed: a path"):
        ServiceSettings(state_dir=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="pin_workers.*true or false"):
        ServiceSettings(pin_workers="no")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="workers.*a whole number"):
        ServiceSettings(workers=True)

    @dataclasses.dataclass(frozen=True)
    class Later(ServiceSettings):
        """A field another part adds later, with a default and no SERVICE_LIMITS entry."""

        idle_knob_s: float = 1.0
        token_file: Path | None = None

    assert Later(idle_knob_s=2).idle_knob_s == 2.0
    with pytest.raises(ConfigError, match="idle_knob_s.*a number"):
        Later(idle_knob_s="soon")  # type: ignore[arg-type]
    assert Later.from_env(token_file="").token_file is None
    assert Later.from_env(token_file="t.txt").token_file == Path("t.txt")


def test_settings_file_precedence_defaults_file_env_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"max_streams": 3, "server_threads": 6, "workers": 2, "pin_workers": "off",
                                "models_dir": "repo", "shutdown_grace_s": 2}))
    s = ServiceSettings.from_env(path)
    assert (s.max_streams, s.server_threads, s.workers, s.pin_workers, s.models_dir, s.shutdown_grace_s) == \
        (3, 6, 2, False, Path("repo"), 2.0)
    monkeypatch.setenv("TENURE_SERVER_THREADS", "5")
    monkeypatch.setenv("TENURE_WORKERS", "4")
    s = ServiceSettings.from_env(path, workers=1)
    assert (s.max_streams, s.server_threads, s.workers, s.max_batch_rows) == (3, 5, 1, ServiceSettings().max_batch_rows)
    # TENURE_SETTINGS_FILE names the file when none is given
    monkeypatch.setenv("TENURE_SETTINGS_FILE", str(path))
    assert ServiceSettings.from_env().max_streams == 3


@pytest.mark.parametrize(("content", "message"), [
    ({"max_stream": 3}, "unknown settings max_stream; known: "),
    ({"max_streams": -1}, "max_streams: got -1; allowed: a whole number from 1 to 1024"),
    ({"max_streams": "lots"}, "max_streams: got 'lots'; allowed: a whole number"),
    ({"pin_workers": 2}, "pin_workers: got 2; allowed: true or false"),
    ([1, 2], "expected a JSON object of settings"),
])
def test_settings_file_errors(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ConfigError) as err:
        ServiceSettings.from_env(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_settings_file_unreadable_or_not_json(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it"):
        ServiceSettings.from_env(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{max_streams: 3")
    with pytest.raises(ConfigError, match="not valid JSON"):
        ServiceSettings.from_env(tmp_path / "bad.json")


def test_flags_are_named_as_flags() -> None:
    with pytest.raises(ConfigError, match="^--ort-threads: got -2; allowed: a whole number from 0 to 256$"):
        ServiceSettings.from_env(ort_threads=-2)
    with pytest.raises(ConfigError, match="unknown settings nope"):
        ServiceSettings.from_env(nope=1)
