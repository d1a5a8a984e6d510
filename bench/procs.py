"""Processes the harness starts: servers pinned with taskset, their process trees, RSS, and stopping.

Only processes started here are ever signalled, by pid (the server and the descendants it spawned).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

SERVER_CORE = "0"
CLIENT_CORE = "1"


def ncpus() -> int:
    return len(os.sched_getaffinity(0))


def pin(cores: str | None) -> list[str]:
    """taskset prefix for a command (nothing when cores is None or the box has a single core)."""
    return ["taskset", "-c", cores] if cores is not None and ncpus() > 1 else []


def free_port(span: int = 1) -> int:
    """A free 127.0.0.1 port p such that p..p+span-1 are all free (PyTriton binds grpc-1 and grpc+1 too)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + span >= 65535:
            continue
        ok = True
        for p in range(base, base + span):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise OSError("no free port range")


def _ppids() -> dict[int, int]:
    out: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        # comm may contain spaces/parens: the fields after the last ')' are fixed
        fields = stat[stat.rfind(")") + 2:].split()
        out[int(d)] = int(fields[1])
    return out


def descendants(pid: int) -> list[int]:
    parents = _ppids()
    kids: dict[int, list[int]] = {}
    for p, pp in parents.items():
        kids.setdefault(pp, []).append(p)
    out, todo = [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (peak RSS) in KiB, {} when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0])
    return out


def start_time(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (tells a reused pid from the original)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rfind(")") + 2:].split()[19])


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (not its children), seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """One server process (and whatever it spawns), started by the harness."""

    def __init__(self, name: str, cmd: list[str], log_path: Path, cores: str | None = SERVER_CORE,
                 env: dict[str, str] | None = None, cwd: str | Path | None = None) -> None:
        self.name = name
        self.cmd = pin(cores) + cmd
        self.cores = cores
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen: dict[int, int | None] = {}

    def start(self) -> "Server":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        env = dict(os.environ, **(self.env or {}))
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, cwd=self.cwd, start_new_session=True)
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tree(self) -> list[int]:
        """The server pid and its live descendants (remembered, so stop() can reap stragglers)."""
        if self.proc is None:
            return []
        pids = [self.pid, *descendants(self.pid)] if self.alive() else descendants(self.pid)
        for p in pids:
            self.seen.setdefault(p, start_time(p))
        return pids

    def rss(self) -> dict[int, dict[str, object]]:
        """Per process of the tree: VmRSS and VmHWM in KiB, and its command line."""
        out: dict[int, dict[str, object]] = {}
        for p in self.tree():
            st = proc_status(p)
            if st:
                out[p] = {**st, "cmd": cmdline(p)[:160]}
        return out

    def repin(self, cores: str) -> None:
        """Change the CPU affinity of every thread of every process of the tree."""
        for p in self.tree():
            subprocess.run(["taskset", "-a", "-p", "-c", cores, str(p)], capture_output=True, check=False)
        self.cores = cores

    def log_tail(self, n: int = 15) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, grace_s: float = 20.0) -> int | None:
        """SIGTERM to the server, wait up to grace_s, then SIGKILL to any of its processes still alive."""
        if self.proc is None:
            return None
        self.tree()
        if self.alive():
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        for p, started in sorted(self.seen.items()):
            if (p == self.pid and self.proc.poll() is not None) or start_time(p) != started:
                continue  # gone (or the pid now belongs to someone else)
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        time.sleep(0.2)
        return code


class ForeignCpu:
    """Samples, every interval_s, the CPU time of processes the harness did not start (anything that is not
    this process or a descendant): on a shared box, that is the noise in every figure of the run."""

    def __init__(self, interval_s: float = 2.0) -> None:
        import threading

        self.interval_s = interval_s
        self.me = os.getpid()
        self.prev: dict[tuple[int, int | None], float] = {}
        self.by_cmd: dict[str, float] = {}
        self.total = 0.0
        self.kernel = 0.0
        self.window: dict[str, float] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.t0 = time.monotonic()

    def start(self) -> "ForeignCpu":
        self._sample()
        self._thread.start()
        return self

    def _sample(self) -> None:
        parents = _ppids()
        ours = {self.me}
        changed = True
        while changed:  # descendants of this process (few levels; cheap)
            changed = False
            for p, pp in parents.items():
                if pp in ours and p not in ours:
                    ours.add(p)
                    changed = True
        cur: dict[tuple[int, int | None], float] = {}
        delta = kdelta = 0.0
        for p, pp in parents.items():
            key = (p, start_time(p))
            cur[key] = cpu_seconds(p)  # ours too: one of ours orphaned by its parent's exit is foreign from then on
            if p in ours:
                continue
            # a process born since the last sample counts from 0; on the first sample nothing counts
            d = cur[key] - self.prev.get(key, 0.0) if self.prev else 0.0
            if d <= 0:
                continue
            if p == 2 or pp == 2:  # kernel threads: mostly network/softirq work our own loopback load causes
                kdelta += d
                continue
            delta += d
            name = cmdline(p)[:80] or f"[{comm(p)}] (pid {p})"
            self.by_cmd[name] = self.by_cmd.get(name, 0.0) + d
        with self._lock:
            self.prev = cur
            self.kernel += kdelta
            self.total += delta
            for k in self.window:
                self.window[k] += delta

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._sample()
            except Exception:  # noqa: BLE001  (a monitor must never break the run)
                pass

    def mark(self, name: str) -> None:
        """Start accumulating a named window (e.g. one phase)."""
        with self._lock:
            self.window[name] = 0.0

    def close(self, name: str) -> float:
        with self._lock:
            return self.window.pop(name, 0.0)

    def stop(self) -> dict[str, object]:
        self._stop.set()
        secs = time.monotonic() - self.t0
        top = [kv for kv in sorted(self.by_cmd.items(), key=lambda kv: -kv[1])[:5] if kv[1] >= 0.5]
        return {"core_seconds": round(self.total, 1), "kernel_threads_core_seconds": round(self.kernel, 1),
                "wall_s": round(secs, 1),
                "share_of_capacity": round(self.total / max(secs * ncpus(), 1e-9), 3),
                "top": [{"cmd": c, "core_seconds": round(s, 1)} for c, s in top]}
