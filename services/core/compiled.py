"""A LightGBM forest compiled to machine code at export (training.compiled), loaded with ctypes.

The version directory holds a shared library (ELF, x86-64) that the manifest declares under
params["compiled"]; loading it needs no compiler, no LLVM and no package beyond the standard library.
It was built for a generic x86-64 CPU, so any x86-64 Linux host with glibc runs it. OnnxModel uses it
only after a parity check against onnxruntime (services.core.runtime).

A compiled forest is code: loading it runs machine code from the model repository in the service's
process, so a repository with compiled forests must be trusted like the service's own code (who can
write it can run code as the service). TENURE_TREE_BACKEND=onnxruntime never loads one."""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import random
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from tenure.errors import ArtifactError

FORMAT = "lleaves-shared-v1"
"""params["compiled"]["format"] this loader understands: an x86-64 ELF shared library (lleaves' object
linked with `ld -shared`, needing only libm) exporting
`void forest_root(double *rows, double *out, int start, int end)`, out = the model's probability of
class 1 (the objective applied)."""
ENTRY = "forest_root"
INLINE_ROWS = 16
"""Batches of at most this many rows (~2-8 us a row) run holding the GIL (PyDLL), in per-thread buffers
whose addresses are computed once; bigger ones release it (CDLL) so other calls proceed meanwhile."""
_ET_DYN, _EM_X86_64 = 3, 62


def declared(params: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest's compiled-model entry, or None when the version has none."""
    spec = params.get("compiled")
    return spec if isinstance(spec, dict) and spec.get("file") else None


def _dlopen(data: bytes, name: str) -> ctypes.CDLL:
    """dlopen exactly these (checked) bytes: from an anonymous memory file, so that the file in the
    repository changing after the check cannot change what runs; from a private temporary file where
    memfd is missing or not executable.

    The memory file stays open while the library is loaded (closed by _dlclose, after dlclose): glibc
    returns an already loaded library whose path string matches, so a second forest loaded from a
    reused /proc/self/fd/N would silently be the first one."""
    try:
        fd = os.memfd_create(f"tenure-{name}", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        fd = -1
    if fd >= 0:
        try:
            os.write(fd, data)
            lib = ctypes.CDLL(f"/proc/self/fd/{fd}", mode=os.RTLD_LOCAL | os.RTLD_NOW)
            lib._tenure_fd = fd  # type: ignore[attr-defined]
            return lib
        except OSError:
            os.close(fd)  # e.g. vm.memfd_noexec, or no /proc: the temporary file below
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="tenure-forest-", suffix=".so") as tmp:
        tmp.write(data)
        tmp.flush()
        return ctypes.CDLL(tmp.name, mode=os.RTLD_LOCAL | os.RTLD_NOW)


def _dlclose(handle: int, fd: int = -1) -> None:
    import _ctypes

    _ctypes.dlclose(handle)  # type: ignore[attr-defined]
    if fd >= 0:
        os.close(fd)  # only now may another library be loaded from the same /proc/self/fd path


class CompiledForest:
    """predict(float32 rows) -> float32 P(class 1), from the compiled library; raises ArtifactError if it
    cannot be loaded here (another CPU architecture, a damaged or foreign file, a missing symbol)."""

    def __init__(self, version_dir: Path, spec: dict[str, Any], n_features: int) -> None:
        if spec.get("format") != FORMAT:
            raise ArtifactError(f"compiled forest format {spec.get('format')!r} is not {FORMAT!r}")
        if spec.get("arch", "x86_64") != platform.machine() or platform.system() != "Linux":
            raise ArtifactError(f"compiled for Linux {spec.get('arch')}, this host is "
                                f"{platform.system()} {platform.machine()}")
        if int(spec.get("n_features", -1)) != n_features:
            raise ArtifactError(f"compiled for {spec.get('n_features')} features, the model has {n_features}")
        path = Path(version_dir) / str(spec["file"])
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ArtifactError(f"{path.name}: cannot read it ({err.strerror})") from err
        # Only the exact bytes the exporter wrote and checked run (their sha256 is in the manifest entry),
        # and only an x86-64 ELF shared library.
        if hashlib.sha256(data).hexdigest() != spec.get("sha256"):
            raise ArtifactError(f"{path.name}: its sha256 is not the one the exporter recorded")
        if (data[:6] != b"\x7fELF\x02\x01" or int.from_bytes(data[16:18], "little") != _ET_DYN
                or int.from_bytes(data[18:20], "little") != _EM_X86_64):
            raise ArtifactError(f"{path.name}: not an x86-64 ELF shared library")
        try:
            self._lib = _dlopen(data, path.name)
        except OSError as err:
            raise ArtifactError(f"{path.name}: cannot load it ({str(err)[:200]})") from err
        # unmapped with the last reference (hot reload)
        weakref.finalize(self, _dlclose, self._lib._handle, getattr(self._lib, "_tenure_fd", -1))
        try:
            entry = getattr(self._lib, ENTRY)
        except AttributeError as err:
            raise ArtifactError(f"{path.name}: has no {ENTRY} function") from err
        # Two handles on the one loaded library: CDLL's calls release the GIL (big batches: other calls
        # proceed meanwhile), PyDLL's keep it (small batches: a few microseconds of forest cost less than
        # dropping and re-taking the GIL, which makes the server's handler threads convoy).
        inline = getattr(ctypes.PyDLL(path.name, handle=self._lib._handle), ENTRY)
        for fn in (entry, inline):
            fn.restype = None
            fn.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32)
        self._entry = entry
        self._inline = inline
        self._local = threading.local()
        self.n_features = n_features
        self.exponent = float(spec.get("horizon_exponent", 1.0))
        self.positive_is_none = bool(spec.get("positive_is_none", False))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """float32 (n, n_features) -> float32 (n,). The forest compares in float64 like LightGBM."""
        n = len(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected (n, {self.n_features}) rows, got {X.shape}")
        if 0 < n <= INLINE_ROWS:  # small: this thread's buffers, the GIL kept (cheaper than a hand-off)
            try:
                buf, res, buf_p, res_p = self._local.buffers
            except AttributeError:
                buf, res = np.empty((INLINE_ROWS, self.n_features)), np.empty(INLINE_ROWS)
                buf_p, res_p = buf.ctypes.data, res.ctypes.data  # ~3 us each: once per thread
                self._local.buffers = buf, res, buf_p, res_p
            np.copyto(buf[:n], X)
            self._inline(buf_p, res_p, 0, n)
            out = res[:n]
        else:
            rows = np.ascontiguousarray(X, dtype=np.float64)
            out = np.empty(n, np.float64)
            if n:
                self._entry(rows.ctypes.data, out.ctypes.data, 0, n)
        if self.exponent != 1.0:  # training.export.extend_horizon_graph, on the compiled output
            none = np.power(out if self.positive_is_none else 1.0 - out, self.exponent)
            out = none if self.positive_is_none else 1.0 - none
        return out.astype(np.float32)


def parity_rows(n_features: int, n: int = 256, seed: int = 0) -> np.ndarray:
    """Rows for the load-time parity check: zeros, small and large values of both signs, exact
    integers (counts, days: where split thresholds sit), so most branches of most trees are taken.
    Drawn with the standard library's random (numpy.random costs a service 2.4 MiB RSS to import)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        scale = 10.0 ** rng.randint(-2, 3)
        if i < n // 4:
            rows.append([float(round(abs(rng.gauss(0.0, 1.0) * scale))) for _ in range(n_features)])
        elif i < n // 2:
            rows.append([rng.random() for _ in range(n_features)])
        else:
            rows.append([rng.gauss(0.0, 1.0) * scale for _ in range(n_features)])
    X = np.array(rows, dtype=np.float32).reshape(n, n_features)
    X[:1] = 0
    return X
