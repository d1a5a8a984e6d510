"""The model repository: models/<name>/<version>/ with the artifact files and manifest.json.

A version is written to a temporary directory and renamed into place, so a reader never sees a
half-written version. The manifest records the sha256 of every file; `load_manifest` verifies
them, so a corrupted or partially copied artifact is refused instead of served.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tenure.errors import ArtifactError

MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Manifest:
    """What a consumer needs to use an artifact without reading the code that trained it."""

    name: str
    kind: str
    """'lightgbm-binary' (ONNX, output = P(class 1)), 'feature-snapshot', ..."""
    features: list[str] = field(default_factory=list)
    """Input feature names in column order."""
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    training_window: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str = ""
    files: dict[str, str] = field(default_factory=dict)
    """File name -> sha256, filled in by write_artifact."""
    version: str = ""
    created_at: str = ""

    @property
    def sha256(self) -> str:
        return self.files.get("model.onnx", "")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        data = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _new_version() -> str:
    """UTC timestamp to the microsecond: versions sort by name, newest last."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def write_artifact(repo: Path, manifest: Manifest, files: dict[str, bytes | Path]) -> Path:
    """Write files + manifest as a new version of manifest.name; returns the version directory."""
    name_dir = Path(repo) / manifest.name
    name_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=name_dir))
    try:
        for fname, content in files.items():
            target = tmp / fname
            if isinstance(content, Path):
                shutil.copyfile(content, target)
            else:
                target.write_bytes(content)
            manifest.files[fname] = sha256_file(target)
        manifest.version = _new_version()
        manifest.created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        (tmp / MANIFEST).write_text(manifest.to_json())
        final = name_dir / manifest.version
        os.replace(tmp, final)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def versions(repo: Path, name: str) -> list[Path]:
    """Version directories of a model, newest first (hidden temp dirs skipped)."""
    name_dir = Path(repo) / name
    if not name_dir.is_dir():
        return []
    found = [p for p in name_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(found, key=lambda p: p.name, reverse=True)


def load_manifest(version_dir: Path, verify: bool = True) -> Manifest:
    """Read and (by default) verify a version: every listed file exists with its sha256."""
    path = Path(version_dir) / MANIFEST
    try:
        manifest = Manifest.from_json(path.read_text())
    except (OSError, ValueError, TypeError) as err:
        raise ArtifactError(f"{path}: unreadable manifest ({err})") from err
    if verify:
        for fname, expected in manifest.files.items():
            fpath = Path(version_dir) / fname
            if not fpath.is_file():
                raise ArtifactError(f"{version_dir}: {fname} is missing")
            actual = sha256_file(fpath)
            if actual != expected:
                raise ArtifactError(
                    f"{version_dir}: {fname} sha256 {actual[:12]}... does not match the manifest's {expected[:12]}..."
                )
    return manifest


def latest_valid(repo: Path, name: str) -> tuple[Path, Manifest]:
    """The newest version of `name` whose manifest verifies; older ones are the fallback."""
    problems: list[str] = []
    for vdir in versions(repo, name):
        try:
            return vdir, load_manifest(vdir)
        except ArtifactError as err:
            problems.append(str(err))
    detail = "; ".join(problems) if problems else f"no versions under {Path(repo) / name}"
    raise ArtifactError(f"model {name!r}: no valid version ({detail})", model=name)

