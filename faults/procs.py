"""Service subprocesses the harness starts (each in a session of its own), their RSS, and stopping them.

Only processes started here are ever signalled, by pid or by the process group of a child started here."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.procs import descendants, free_port, proc_status

ROOT = Path(__file__).resolve().parents[1]


def python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The harness's environment without TENURE_* settings (each scenario sets its own), plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENURE_")}
    env["PYTHONPATH"] = str(ROOT)
    return {**env, **(extra or {})}


class ServiceProc:
    """`tenure serve KIND` on a free port with TENURE_MODELS_DIR / TENURE_STATE_DIR and extra settings."""

    def __init__(self, kind: str, repo: Path, state: Path, log: Path, env: dict[str, str] | None = None,
                 workers: int = 1, port: int | None = None) -> None:
        self.kind = kind
        self.repo = repo
        self.state = state
        self.log = log
        self.extra = env or {}
        self.workers = workers
        self.port = port or free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "ServiceProc":
        self.state.mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = child_env({"TENURE_MODELS_DIR": str(self.repo), "TENURE_STATE_DIR": str(self.state), **self.extra})
        cmd = [python(), "-m", "tenure.cli", "serve", self.kind, "--port", str(self.port)]
        if self.workers != 1:
            cmd += ["--workers", str(self.workers)]
        with open(self.log, "wb") as out:  # this run's log only (scenarios read it)
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, cwd=ROOT, start_new_session=True)
        return self

    def wait_serving(self, timeout_s: float = 120.0) -> None:
        from services.demo import wait_serving

        wait_serving(self.target, timeout_s=timeout_s, proc=self.proc)  # type: ignore[arg-type]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pids(self) -> list[int]:
        return [self.pid, *descendants(self.pid)] if self.alive() else []

    def rss_mib(self) -> float:
        """Resident memory of the service's process tree now."""
        return sum(proc_status(p).get("VmRSS", 0) for p in self.pids()) / 1024

    def peak_mib(self) -> float:
        """The high-water mark of resident memory (VmHWM) summed over the tree: the peak since start."""
        return sum(proc_status(p).get("VmHWM", 0) for p in self.pids()) / 1024

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL of the process group when it does not exit in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the service and everything in its process group (its workers)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def __enter__(self) -> "ServiceProc":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


class LoadProc:
    """faults.load in a subprocess: the spec goes in a JSON file, the per-call records come back."""

    def __init__(self, spec: dict[str, Any], work: Path, name: str) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.spec_path = work / f"{name}-spec.json"
        self.out_path = work / f"{name}-calls.json"
        self.out_path.unlink(missing_ok=True)
        self.spec_path.write_text(json.dumps(spec))
        self.log = work / f"{name}-load.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "LoadProc":
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([python(), "-m", "faults.load", str(self.spec_path), str(self.out_path)],
                                         stdout=out, stderr=subprocess.STDOUT, env=child_env(), cwd=ROOT,
                                         start_new_session=True)
        return self

    def wait(self, timeout_s: float) -> list[list[Any]]:
        assert self.proc is not None
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"the load generator did not finish in {timeout_s:.0f}s") from None
        if self.proc.returncode != 0 or not self.out_path.exists():
            tail = self.log.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"the load generator failed ({self.proc.returncode}): {' | '.join(tail)}")
        calls: list[list[Any]] = json.loads(self.out_path.read_text())["calls"]
        return calls

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def __enter__(self) -> "LoadProc":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def wait_until(check: Any, timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll check() until it is truthy (True) or the safety-net timeout passes (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval_s)
    return bool(check())
