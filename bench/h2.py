"""h2load (Debian nghttp2-client) as the gRPC load generator, driven by a pre-serialised frame.

One frame file = the 5-byte gRPC prefix + one serialised request; h2load sends it on every
stream (`--data`), so the client does no protobuf work at all. `-c CONNS -m STREAMS` keeps
CONNS x STREAMS requests in flight (closed loop); -c 1 is one HTTP/2 connection, like one
gRPC channel. Latency percentiles come from h2load's per-request --log-file.

h2load only sees HTTP status, not grpc-status: a gRPC error is a "200 succeeded" trailers-only
reply without a DATA frame. So every response's DATA size is known beforehand (from a checked
call with the real client) and a request counts as OK only if its bytes arrived:
ok = min(succeeded, data_bytes // expected_bytes). That accounting needs the counters to
cover exactly the measured requests, and h2load's traffic counters include its own
--warm-up-time phase, so the warm-up is a separate h2load run on its own connection(s)
just before the measured one.
"""
from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import tempfile
from typing import Any, Callable

import numpy as np

from bench.procs import CLIENT_CORE, pin


def available() -> bool:
    return shutil.which("h2load") is not None


def _cmd(target: str, path: str, frame: str, conc: int, conns: int, secs: float, log: str | None) -> list[str]:
    streams = max(1, conc // conns)
    cmd = ["h2load", "-D", str(max(1, int(round(secs)))), "-c", str(conns), "-m", str(streams), "-t", "1",
           f"--data={frame}", "-H", "content-type: application/grpc", "-H", "te: trailers"]
    if log:
        cmd.append(f"--log-file={log}")
    return [*cmd, f"http://{target}{path}"]


def parse(out: str) -> tuple[int, int, int]:
    """(done, succeeded, DATA bytes) from h2load's summary."""
    m_req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                      r"(\d+) errored, (\d+) timeout", out)
    m_data = re.search(r"traffic: .*\((\d+)\) data", out)
    if not (m_req and m_data):
        raise RuntimeError(f"h2load output not understood: {out[-600:]}")
    return int(m_req.group(3)), int(m_req.group(4)), int(m_data.group(1))


def ok_count(done: int, succeeded: int, data: int, expect_bytes: int) -> int:
    return min(succeeded, data // expect_bytes) if expect_bytes > 0 else succeeded


def background(target: str, path: str, frame: str, conc: int, secs: float, conns: int = 1,
               cores: str | None = None) -> subprocess.Popen[str]:
    """An h2load run in the background (the soak); read its stdout with parse() when it ends."""
    return subprocess.Popen(pin(cores) + _cmd(target, path, frame, conc, conns, secs, None),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(target: str, path: str, frame: str, expect_bytes: int, conc: int, conns: int = 1, dur: float = 5,
        warm: float = 1, cores: str | None = CLIENT_CORE,
        server_cpu: Callable[[], float] | None = None) -> dict[str, Any]:
    """Warm up, then measure for dur seconds; returns req/s, latency percentiles (ms) and errors.

    server_cpu: the server's CPU seconds so far; given, the result also has the CPU seconds the
    server and h2load used during the measured run (to show who had how much of the box)."""
    if not target.startswith("127.0.0.1:"):
        raise ValueError("loopback targets only")
    if conc % conns:
        raise ValueError(f"concurrency {conc} is not a multiple of {conns} connections")
    if warm > 0:
        subprocess.run(pin(cores) + _cmd(target, path, frame, conc, conns, warm, None),
                       capture_output=True, text=True, timeout=warm + 60)
    fd, log = tempfile.mkstemp(suffix=".h2log")
    os.close(fd)
    try:
        cpu0, client0 = (server_cpu() if server_cpu else 0.0), _children_cpu_s()
        p = subprocess.run(pin(cores) + _cmd(target, path, frame, conc, conns, dur, log),
                           capture_output=True, text=True, timeout=dur + 60)
        cpu1, client1 = (server_cpu() if server_cpu else 0.0), _children_cpu_s()
        done, succeeded, data = parse(p.stdout + p.stderr[-300:])
        lat = np.loadtxt(log, dtype=np.int64, ndmin=2) if os.path.getsize(log) else np.zeros((0, 3), np.int64)
    finally:
        os.unlink(log)
    ok = ok_count(done, succeeded, data, expect_bytes)
    secs = float(max(1, int(round(dur))))
    ms = lat[:, 2].astype(np.float64) / 1e3 if len(lat) else np.array([np.nan])
    return {
        "client": "h2load", "conc": conc, "conns": conns, "requests": ok, "errors": done - ok, "secs": secs,
        "req_s": ok / secs,
        "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
        "p999_ms": float(np.percentile(ms, 99.9)),
        "resp_bytes_per_req": round(data / max(done, 1), 1), "expect_bytes": expect_bytes,
        **({"server_cpu_s": round(cpu1 - cpu0, 3), "client_cpu_s": round(client1 - client0, 3)} if server_cpu else {}),
    }
