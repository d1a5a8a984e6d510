"""`tenure models list|pin|unpin|rollback|gc`: what the repository holds and which version is served.

A service serves, per model, the pinned version (models/<name>/PINNED) when it is valid, else the
newest valid one (tenure.artifacts.candidates): valid = complete (manifest.json present), every
file matching its sha256, and, for an ONNX model, loaded by onnxruntime with the inputs and outputs
its manifest declares. These commands apply the same rules, so what `list` calls "served" is what
the services load at their next poll.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tenure.artifacts import (
    IncompleteVersion,
    candidates,
    label,
    load_manifest,
    pin,
    pinned,
    unpin,
    versions,
)
from tenure.errors import ArtifactError

STALE_S = 3600.0
"""Hidden .tmp-* directories and incomplete or broken versions untouched this long are debris of a
publish that died; younger ones may be a publish in progress and are left alone."""


@dataclass
class VersionState:
    path: Path
    problem: str
    """"" when valid."""
    incomplete: bool = False

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def valid(self) -> bool:
        return not self.problem


def check_version(vdir: Path) -> VersionState:
    """Whether a service would load this version, and if not why (without the <name>/<version> prefix)."""
    prefix = f"{label(vdir)}: "
    try:
        manifest = load_manifest(vdir)
    except IncompleteVersion as err:
        return VersionState(vdir, str(err).removeprefix(prefix), incomplete=True)
    except ArtifactError as err:
        return VersionState(vdir, str(err).removeprefix(prefix))
    if "model.onnx" in manifest.files:
        from services.core.runtime import OnnxModel

        try:
            OnnxModel(vdir, manifest).warm_up()
        except Exception as err:  # onnxruntime raises its own types; any means "not loadable"
            return VersionState(vdir, str(err).removeprefix(prefix) or type(err).__name__)
    return VersionState(vdir, "")


def model_names(repo: Path) -> list[str]:
    """Every model directory of the repository (hidden ones aside)."""
    repo = Path(repo)
    if not repo.is_dir():
        raise ArtifactError(f"{repo} is not a model repository (no such directory)")
    return sorted(p.name for p in repo.iterdir() if p.is_dir() and not p.name.startswith("."))


def _require(repo: Path, name: str) -> None:
    if name not in model_names(repo):
        raise ArtifactError(f"no model {name!r} in {repo}; models: {', '.join(model_names(repo)) or 'none'}")


def states(repo: Path, name: str) -> list[VersionState]:
    """Every version, newest first."""
    return [check_version(v) for v in versions(repo, name)]


def served(repo: Path, name: str, found: list[VersionState] | None = None) -> str:
    """The version services serve: the pinned one if valid, else the newest valid ("" when none)."""
    by_name = {s.name: s for s in (found if found is not None else states(repo, name))}
    return next((v.name for v in candidates(repo, name) if v.name in by_name and by_name[v.name].valid), "")


def list_text(repo: Path) -> str:
    lines = []
    for name in model_names(repo):
        found = states(repo, name)
        serving, pin_to = served(repo, name, found), pinned(repo, name)
        head = name + (f"  (pinned to {pin_to})" if pin_to else "")
        if pin_to and pin_to not in {s.name for s in found}:
            head += "  PINNED VERSION NOT FOUND: serving the newest valid"
        elif pin_to and serving != pin_to:
            head += "  PINNED VERSION NOT VALID: serving the newest valid"
        lines.append(head)
        if not found:
            lines.append("    (no versions)")
        for s in found:
            marks = " ".join(m for m, on in (("served", s.name == serving), ("pinned", s.name == pin_to)) if on)
            state = "valid" if s.valid else ("not complete: " if s.incomplete else "invalid: ") + s.problem
            lines.append(f"  {'*' if s.name == serving else ' '} {s.name}  {state}{'  [' + marks + ']' if marks else ''}")
    return "\n".join(lines)


def pin_version(repo: Path, name: str, version: str) -> str:
    _require(repo, name)
    vdir = Path(repo) / name / version
    if version.startswith(".") or "/" in version or not vdir.is_dir():
        known = ", ".join(v.name for v in versions(repo, name)[:10])
        raise ArtifactError(f"{name} has no version {version!r}; versions (newest first): {known or 'none'}")
    state = check_version(vdir)
    if not state.valid:
        raise ArtifactError(f"{name}/{version} is not valid, not pinned: {state.problem}")
    pin(repo, name, version)
    return f"{name}: pinned to {version}"


def unpin_model(repo: Path, name: str) -> str:
    _require(repo, name)
    was = pinned(repo, name)
    if not unpin(repo, name):
        return f"{name}: was not pinned; serving the newest valid version"
    return f"{name}: unpinned (was {was}); serving the newest valid version: {served(repo, name) or 'none'}"


def rollback(repo: Path, name: str) -> str:
    """Pin the newest valid version older than the one served now."""
    _require(repo, name)
    found = states(repo, name)
    now = served(repo, name, found)
    if not now:
        raise ArtifactError(f"{name} has no valid version to roll back from")
    older = [s for s in found if s.valid and s.name < now]
    if not older:
        raise ArtifactError(f"{name}: no valid version older than the served {now}; nothing to roll back to")
    pin(repo, name, older[0].name)
    return f"{name}: pinned to {older[0].name} (was serving {now})"


def _age_s(path: Path, now: float) -> float:
    """Seconds since anything in the directory last changed."""
    times = [path.stat().st_mtime] + [p.stat().st_mtime for p in path.rglob("*")]
    return now - max(times)


def gc(repo: Path, keep: int, dry_run: bool = False) -> list[str]:
    """Delete, per model, every version but the newest `keep` valid ones, the pinned one and the one
    served; invalid or incomplete versions and hidden .tmp-* directories only when untouched for
    STALE_S (a younger one may be a publish in progress). Returns what was (or would be) deleted."""
    if keep < 1:
        raise ArtifactError(f"--keep {keep}: keep at least 1 version per model")
    now = time.time()
    deleted = []
    for name in model_names(repo):
        name_dir = Path(repo) / name
        found = states(repo, name)
        kept = {s.name for s in [s for s in found if s.valid][:keep]}
        kept |= {served(repo, name, found), pinned(repo, name)}
        doomed = [s.path for s in found if s.name not in kept and (s.valid or _age_s(s.path, now) > STALE_S)]
        doomed += [p for p in name_dir.iterdir() if p.name.startswith(".tmp-") and _age_s(p, now) > STALE_S]
        for path in doomed:
            deleted.append(f"{name}/{path.name}")
            if not dry_run:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
    return deleted
