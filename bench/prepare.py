"""Everything the measurements need, built once into the cache dir (TENURE_BENCH_CACHE, default
/tmp/tenure-bench) so reruns start measuring at once:

  venv-mlserver/   MLServer 1.7.1 (+ onnxruntime), pins from the peers' requirements-main.txt
                   (minus lleaves/llvmlite/tritonclient, which nothing here uses)
  venv-pytriton/   nvidia-pytriton 0.7.0, pins from requirements-pytriton.txt
  gen/             kserve_v2_pb2 compiled from the peers' proto (the clients' ModelInfer messages)
  model/           the benchmark model (bench.model) + bench_X.npy + in-process reference predictions
  shop/, repo/     `tenure synth` -> `tenure train` -> `tenure import-onnx --name bench`
  mlserver/        settings.json (tuned) + churn-ort-custom/ + the peers' custom ORT runtime
  frames/, logs/   pre-serialised gRPC frames for h2load; server and install logs

Each step is skipped when its output exists (TENURE_BENCH_RETRAIN=1 rebuilds the Tenure repository).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _git_toplevel() -> Path:
    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        pass
    return REPO_ROOT


@dataclass
class Paths:
    root: Path
    peers: Path
    cache: Path
    out: Path

    @classmethod
    def make(cls, cache: str | None, out: str) -> "Paths":
        root = _git_toplevel()
        peers = Path(os.environ.get("TENURE_BENCH_PEERS", root / ".." / "shared" / "bench" / "peers")).resolve()
        c = Path(cache or os.environ.get("TENURE_BENCH_CACHE", "/tmp/tenure-bench")).resolve()
        o = Path(out)
        return cls(root, peers, c, o if o.is_absolute() else (root / o))

    @property
    def py(self) -> str:
        """Tenure's own interpreter (the harness, the clients, the bare handler, Tenure)."""
        venv = self.root / ".venv" / "bin" / "python"
        return str(venv) if venv.exists() else sys.executable

    gen = property(lambda self: self.cache / "gen")
    model = property(lambda self: self.cache / "model")
    shop = property(lambda self: self.cache / "shop")
    repo = property(lambda self: self.cache / "repo")
    frames = property(lambda self: self.cache / "frames")
    logs = property(lambda self: self.cache / "logs")
    mlserver_dir = property(lambda self: self.cache / "mlserver")
    mlserver_py = property(lambda self: str(self.cache / "venv-mlserver" / "bin" / "python"))
    pytriton_py = property(lambda self: str(self.cache / "venv-pytriton" / "bin" / "python"))


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def tail(path: Path, n: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def ensure_h2load() -> str | None:
    """None when h2load is there (installing Debian's nghttp2-client if needed), else why not."""
    if shutil.which("h2load"):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "h2load missing and cannot apt-get install nghttp2-client (not root / no apt)"
    log("installing h2load: apt-get install nghttp2-client")
    try:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300, check=False)
        p = subprocess.run(["apt-get", "install", "-y", "-qq", "nghttp2-client"], capture_output=True, text=True,
                           timeout=300, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    except subprocess.TimeoutExpired:
        return "apt-get install nghttp2-client timed out"
    return None if shutil.which("h2load") else f"apt-get install nghttp2-client failed: {p.stderr[-300:]}"


def gen_protos(p: Paths) -> None:
    """kserve_v2_pb2 (the clients' messages) and kserve_v2_pb2_grpc (baseline_server.py imports it)."""
    if (p.gen / "kserve_v2_pb2.py").exists() and (p.gen / "kserve_v2_pb2_grpc.py").exists():
        return
    p.gen.mkdir(parents=True, exist_ok=True)
    subprocess.run([p.py, "-m", "grpc_tools.protoc", f"-I{p.peers / 'proto'}", f"--python_out={p.gen}",
                    f"--grpc_python_out={p.gen}", str(p.peers / "proto" / "kserve_v2.proto")], check=True, timeout=120)


# ------------------------------------------------------------------ peer venvs
VENVS = {
    # name: (requirements file in peers/, lines to leave out, import check)
    "mlserver": ("requirements-main.txt", ("lleaves==", "llvmlite==", "tritonclient=="),
                 "import mlserver, mlserver.codecs, onnxruntime, uvloop"),
    "pytriton": ("requirements-pytriton.txt", (), "import pytriton.triton, onnxruntime"),
}


class VenvInstall:
    """Create/refresh one peer venv in the background; .wait() -> None or why it is unusable."""

    def __init__(self, p: Paths, name: str) -> None:
        self.p, self.name = p, name
        req_name, drop, self.check = VENVS[name]
        self.dir = p.cache / f"venv-{name}"
        self.py = str(self.dir / "bin" / "python")
        self.log = p.logs / f"install-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.error: str | None = None
        self.secs = 0.0
        src = p.peers / req_name
        if not src.exists():
            self.error = f"{src} not found"
            return
        lines = [ln for ln in src.read_text().splitlines() if ln.strip() and not (drop and ln.startswith(drop))]
        self.req = p.cache / f"requirements-{name}.txt"
        text = "\n".join(lines) + "\n"
        self.digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        self.req.write_text(text)
        self.marker = self.dir / ".bench-requirements"

    def ready(self) -> bool:
        if not Path(self.py).exists():
            return False
        ok = subprocess.run([self.py, "-c", self.check], capture_output=True, timeout=120).returncode == 0
        if ok and (not self.marker.exists() or self.marker.read_text().strip() != self.digest):
            # a venv made by hand from the same pins is fine; one from other pins is rebuilt
            if self.marker.exists():
                return False
            self.marker.write_text(self.digest)
        return ok

    def start(self) -> "VenvInstall":
        if self.error or self.ready():
            return self
        base = shutil.which("python3.11") or shutil.which("python3") or sys.executable
        log(f"creating {self.dir} from {self.req.name} (background; log {self.log})")
        script = (f"rm -rf '{self.dir}' && '{base}' -m venv '{self.dir}' && "
                  f"'{self.py}' -m pip install -q --disable-pip-version-check -r '{self.req}' && "
                  f"echo {self.digest} > '{self.marker}'")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.t0 = time.perf_counter()
        with open(self.log, "wb") as f:
            self.proc = subprocess.Popen(["bash", "-c", script], stdout=f, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        return self

    def wait(self, timeout_s: float = 1200) -> str | None:
        if self.error:
            return self.error
        if self.proc is not None:
            try:
                rc = self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                rc = -1
            self.secs = time.perf_counter() - self.t0
            self.proc = None
            log(f"venv-{self.name}: pip exited {rc} after {self.secs:.0f}s")
            if rc != 0:
                self.error = f"pip install -r {self.req.name} failed (exit {rc}): {tail(self.log, 4)}"
                return self.error
        if not self.ready():
            self.error = f"venv-{self.name} does not import ({self.check})"
        return self.error


# ------------------------------------------------------------------ models
def bench_model(p: Paths) -> None:
    if (p.model / "model.onnx").exists() and (p.model / "bench_X.npy").exists():
        return
    log("training + exporting the benchmark model (LightGBM 300 trees x 63 leaves, 40 features -> ONNX)")
    subprocess.run([p.py, "-m", "bench.model", "--out", str(p.model)], cwd=p.root, check=True, timeout=900)


def _tenure(p: Paths, args: list[str], logname: str, timeout: float = 1200) -> None:
    with open(p.logs / logname, "ab") as f:
        r = subprocess.run([p.py, "-m", "tenure.cli", *args], cwd=p.root, stdout=f, stderr=subprocess.STDOUT,
                           timeout=timeout, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    if r.returncode != 0:
        raise RuntimeError(f"tenure {' '.join(args[:1])} failed (exit {r.returncode}): "
                           f"{tail(p.logs / logname, 6)}")


def tenure_repo(p: Paths) -> None:
    """Synthetic shop -> Tenure models (churn, propensity, lookalike, features) + the bench ONNX."""
    if os.environ.get("TENURE_BENCH_RETRAIN") == "1" and p.repo.exists():
        shutil.rmtree(p.repo)
    p.logs.mkdir(parents=True, exist_ok=True)
    if not (p.shop / "transactions.parquet").exists():
        log("tenure synth (synthetic shop)")
        _tenure(p, ["synth", "--out", str(p.shop)], "tenure-synth.log")
    if not (p.repo / "churn").exists():
        log("tenure train (churn, propensity, lookalike; ~1-2 min)")
        t0 = time.perf_counter()
        _tenure(p, ["train", "--shop", str(p.shop), "--models", str(p.repo)], "tenure-train.log")
        log(f"tenure train done in {time.perf_counter() - t0:.0f}s")
    if not (p.repo / "bench").exists():
        # --lightgbm: the bench model's LightGBM text compiled into the version too (the compiled forest
        # serves ModelInfer; ~1.5-3 min of LLVM). Without lleaves/ld (no [train] extra) the import fails.
        lightgbm = ["--lightgbm", str(p.model / "model.txt")] if (p.model / "model.txt").exists() else []
        log(f"tenure import-onnx --name bench {' '.join(lightgbm)}")
        _tenure(p, ["import-onnx", "--models", str(p.repo), "--name", "bench", "--onnx", str(p.model / "model.onnx"),
                    *lightgbm], "tenure-import.log", timeout=900)


def mlserver_folder(p: Paths, grpc_port: int, http_port: int, metrics_port: int) -> Path:
    """MLServer 'tuned' (shared/bench/peers/RESULTS.md): inference in the server process, no access
    log, no metrics; model churn-ort-custom = the peers' onnxruntime runtime, 1 intra-op thread."""
    d = p.mlserver_dir
    (d / "churn-ort-custom").mkdir(parents=True, exist_ok=True)
    shutil.copy(p.peers / "mlserver_ort_runtime.py", d / "mlserver_ort_runtime.py")
    link = d / "churn-ort-custom" / "model.onnx"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(p.model / "model.onnx")
    (d / "churn-ort-custom" / "model-settings.json").write_text(json.dumps(
        {"name": "churn-ort-custom", "implementation": "mlserver_ort_runtime.OnnxRuntimeModel",
         "parameters": {"uri": "./model.onnx", "version": "v1"}}, indent=2))
    (d / "settings.json").write_text(json.dumps(
        {"host": "127.0.0.1", "http_port": http_port, "grpc_port": grpc_port, "metrics_port": metrics_port,
         "debug": False, "metrics_endpoint": None, "parallel_workers": 0}, indent=2))
    return d
