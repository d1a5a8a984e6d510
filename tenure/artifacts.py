"""The model repository: models/<name>/<version>/ with the artifact files and manifest.json.

A version is written to a temporary directory and renamed into place, so a reader never sees a
half-written version. The manifest records the sha256 of every file; `load_manifest` verifies
them, so a corrupted or partially copied artifact is refused instead of served.

Publishing from outside (a copy, another tool): write the files and manifest.json last into
models/<name>/.tmp-<anything>/ (hidden: never read), then rename it to models/<name>/<version>/.
A version directory without manifest.json yet is "not complete" (tried again at the next poll);
one whose manifest does not verify is skipped, and older versions are served instead.

models/<name>/PINNED (one line: a version) makes services serve that version instead of the
newest (`tenure models pin|rollback|unpin`); a pinned version that does not verify is skipped too.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tenure.errors import ArtifactError, InvalidInput

MANIFEST = "manifest.json"
PINNED = "PINNED"
"""models/<name>/PINNED: the version services serve instead of the newest."""
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
"""A name that stays inside its directory: no separators, no '..', no hidden or control characters."""


def safe_name(value: str, what: str) -> str:
    """`value` when it can name a file or directory inside the model repository (or any directory of
    ours) without leaving it; InvalidInput (INVALID_ARGUMENT) saying what is allowed otherwise. Every
    name a request or a manifest gives (model, version, job, file) goes through here."""
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value):
        shown = repr(value[:64]) + ("..." if isinstance(value, str) and len(value) > 64 else "")
        raise InvalidInput(f"{what} {shown}: expected 1-128 letters, digits, '.', '_' or '-', not starting with '.'")
    return value


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


ORT_TO_OIP = {
    "tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(int64)": "INT64", "tensor(int32)": "INT32",
    "tensor(bool)": "BOOL", "tensor(string)": "BYTES", "tensor(float16)": "FP16", "tensor(int8)": "INT8",
    "tensor(uint8)": "UINT8", "tensor(int16)": "INT16", "tensor(uint16)": "UINT16", "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
}
"""onnxruntime tensor type -> Open Inference Protocol datatype (a manifest's inputs/outputs "dtype")."""


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
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        manifest = cls(**known)
        if not isinstance(manifest.files, dict) or not all(isinstance(v, str) for v in manifest.files.values()):
            raise ValueError("'files' must map file names to sha256 strings")
        return manifest


def _new_version() -> str:
    """UTC timestamp to the microsecond: versions sort by name, newest last."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def write_artifact(repo: Path, manifest: Manifest, files: dict[str, bytes | Path]) -> Path:
    """Write files + manifest as a new version of manifest.name; returns the version directory."""
    name_dir = Path(repo) / safe_name(manifest.name, "model name")
    for fname in files:
        safe_name(fname, "artifact file name")
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


def label(version_dir: Path) -> str:
    """<name>/<version>: how messages name a version (never the server's absolute path)."""
    return f"{Path(version_dir).parent.name}/{Path(version_dir).name}"


class IncompleteVersion(ArtifactError):
    """A version directory without manifest.json (yet): a publisher may still be writing it."""


def fingerprint(version_dir: Path) -> tuple[tuple[str, int, int, int], ...]:
    """(name, size, mtime_ns, inode) of every file of a version directory: a version whose files
    change (a late file, an edit in place) gets a new fingerprint and is checked again."""
    try:
        with os.scandir(version_dir) as entries:
            stats = [(e.name, e.stat()) for e in entries if e.is_file()]
    except OSError:
        return ()
    return tuple(sorted((n, st.st_size, st.st_mtime_ns, st.st_ino) for n, st in stats))


_checked: dict[Path, tuple[tuple[tuple[str, int, int, int], ...], str, str, bool]] = {}
"""Version dir -> (fingerprint, manifest text, problem, not complete yet): sha256 is computed once per state of a
version, not at every poll of the repository."""
_checked_lock = threading.Lock()


def load_manifest(version_dir: Path, verify: bool = True) -> Manifest:
    """Read and (by default) verify a version: every listed file exists with its sha256. Errors name
    the version as <name>/<version>; IncompleteVersion when there is no manifest.json yet."""
    version_dir = Path(version_dir)
    path = version_dir / MANIFEST
    if not verify:
        try:
            return Manifest.from_json(path.read_text())
        except (OSError, ValueError, TypeError) as err:
            raise ArtifactError(f"{label(version_dir)}: unreadable manifest ({err})") from err
    key = version_dir.absolute()
    stamp = fingerprint(version_dir)
    with _checked_lock:
        cached = _checked.get(key)
    if cached is None or cached[0] != stamp:
        text, problem, incomplete = _verify(version_dir)
        with _checked_lock:
            if len(_checked) > 4096:  # forget versions that were deleted
                for gone in [k for k in _checked if not k.is_dir()]:
                    del _checked[gone]
            _checked[key] = cached = (stamp, text, problem, incomplete)
    _, text, problem, incomplete = cached
    if problem:
        raise (IncompleteVersion if incomplete else ArtifactError)(problem)
    return Manifest.from_json(text)


def _verify(version_dir: Path) -> tuple[str, str, bool]:
    """(manifest text, "", False) or ("", the problem, whether the version is just not complete yet)."""
    where = label(version_dir)
    path = version_dir / MANIFEST
    if not path.is_file():
        return "", f"{where}: not complete (no {MANIFEST} yet)", True
    try:
        text = path.read_text()
        manifest = Manifest.from_json(text)
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as err:
        return "", f"{where}: unreadable manifest ({' '.join(str(err).split())[:200]})", False
    if not manifest.files:
        return "", f"{where}: the manifest lists no files", False
    for fname, expected in manifest.files.items():
        if not SAFE_NAME.fullmatch(fname):  # a manifest names only files of its own version directory
            return "", f"{where}: file name {fname[:64]!r} in the manifest: expected a plain file name", False
        fpath = version_dir / fname
        if not fpath.is_file():
            return "", f"{where}: {fname} is missing", False
        actual = sha256_file(fpath)
        if actual != expected:
            return "", (f"{where}: {fname} sha256 {actual[:12]}... does not match the manifest's "
                        f"{expected[:12]}..."), False
    return text, "", False


def pinned(repo: Path, name: str) -> str:
    """The version models/<name>/PINNED names ("" when there is none)."""
    try:
        return (Path(repo) / name / PINNED).read_text().strip()
    except OSError:
        return ""


def pin(repo: Path, name: str, version: str) -> None:
    """Serve `version` of `name` instead of the newest: PINNED written to a temp file and renamed."""
    name_dir = Path(repo) / name
    fd, tmp = tempfile.mkstemp(prefix=".tmp-pin-", dir=name_dir)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(version + "\n")
        os.replace(tmp, name_dir / PINNED)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def unpin(repo: Path, name: str) -> bool:
    """Serve the newest valid version again; False when nothing was pinned."""
    try:
        (Path(repo) / name / PINNED).unlink()
    except FileNotFoundError:
        return False
    return True


def candidates(repo: Path, name: str) -> list[Path]:
    """Version directories in the order services try them: the pinned one (when it is there), then
    the others newest first."""
    found = versions(repo, name)
    pin_to = pinned(repo, name)
    first = [v for v in found if v.name == pin_to]
    return first + [v for v in found if v.name != pin_to]


def latest_valid(repo: Path, name: str) -> tuple[Path, Manifest]:
    """The pinned version, or else the newest, whose manifest verifies; older ones are the fallback."""
    problems: list[str] = []
    for vdir in candidates(repo, name):
        try:
            return vdir, load_manifest(vdir)
        except ArtifactError as err:
            problems.append(str(err))
    detail = "; ".join(problems) if problems else f"no versions under {name}/"
    raise ArtifactError(f"model {name!r}: no valid version ({detail})", model=name)
