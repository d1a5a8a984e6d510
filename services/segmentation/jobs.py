"""Lookalike training jobs: train on any seed list in the background, watchable, then served.

Each job trains in a child process (`python -m training.lookalike_job`, which needs tenure[train]):
the service itself never loads LightGBM or the converters. One job runs at a time per service
(more would only compete for the same cores); others wait in order. A finished job's model is in
the repository and the service reloads so that StreamLookalikeAudience(model=name) serves it. Jobs
live in memory: a restart forgets them, not their models (and ends a job's process).
"""
from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from tenure.artifacts import safe_name
from tenure.errors import InvalidInput, TooLarge, UnknownModel
from tenure.store import SNAPSHOT_NAME, FeatureSnapshot

log = logging.getLogger(__name__)
QUEUED, RUNNING, SUCCEEDED, FAILED = 1, 2, 3, 4
"""Job states, as in the contract's JobState enum."""
NAME = re.compile(r"^[A-Za-z0-9_-]{1,48}$")
MIN_SEED = 20
MAX_SEED = 1_000_000
MAX_WAITING = 16
JOB_COMMAND = [sys.executable, "-m", "training.lookalike_job"]
"""The process that trains one job (reads the request on stdin, answers in JSON lines)."""


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    state: int
    progress: float = 0.0
    message: str = ""
    model: tuple[str, str] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    seed_found: int = 0
    seed_unknown: int = 0

    @property
    def finished(self) -> bool:
        return self.state in (SUCCEEDED, FAILED)


class Jobs:
    def __init__(self, repo: Path, snapshot: Callable[[], FeatureSnapshot], on_model: Callable[[], object],
                 threads: int = 1) -> None:
        self.repo = repo
        self.snapshot = snapshot
        self.on_model = on_model
        self.threads = threads
        self._jobs: dict[str, JobStatus] = {}
        self._cond = threading.Condition()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookalike-job")

    def start(self, name: str, seed_ids: list[str]) -> JobStatus:
        safe_name(name, "name")
        if not NAME.fullmatch(name):  # fullmatch: with match, '$' lets a trailing newline through
            raise InvalidInput(f"name {name[:64]!r}: expected 1-48 letters, digits, '-' or '_'")
        if len(seed_ids) > MAX_SEED:
            raise TooLarge(f"{len(seed_ids)} seed ids; at most {MAX_SEED}")
        snapshot = self.snapshot()
        unique = sorted(set(seed_ids))
        rows = snapshot.rows(unique)
        found = [i for i, r in zip(unique, rows) if r >= 0]
        if len(found) < MIN_SEED:
            raise InvalidInput(f"{len(found)} of the {len(unique)} distinct seed ids are known customers; "
                               f"a lookalike needs at least {MIN_SEED}")
        if len(found) >= len(snapshot.customer_ids):
            raise InvalidInput("the seed holds every customer; nobody is left to find")
        with self._cond:
            if sum(not j.finished for j in self._jobs.values()) >= MAX_WAITING:
                raise TooLarge(f"{MAX_WAITING} lookalike jobs are already waiting or running; retry later")
            job = JobStatus(uuid.uuid4().hex[:12], QUEUED, message="waiting for a free trainer",
                            seed_found=len(found), seed_unknown=len(unique) - len(found))
            self._jobs[job.job_id] = job
        self._pool.submit(self._run, job.job_id, "lookalike-" + name, found)
        return job

    def _update(self, job_id: str, **changes: object) -> None:
        with self._cond:
            self._jobs[job_id] = replace(self._jobs[job_id], **changes)  # type: ignore[arg-type]
            self._cond.notify_all()

    def _train(self, job_id: str, model_name: str, seed: list[str]) -> dict[str, Any]:
        """Train in a child process, relaying its progress; its result, or a RuntimeError saying why not."""
        snapshot = self.snapshot()
        snapshot_dir = Path(self.repo, SNAPSHOT_NAME, snapshot.version) if snapshot.version else None
        request = {"repo": str(Path(self.repo).resolve()), "seed_ids": seed, "name": model_name,
                   "threads": self.threads,
                   "snapshot_dir": str(snapshot_dir.resolve()) if snapshot_dir and snapshot_dir.is_dir() else ""}
        result: dict[str, Any] | None = None
        error = ""
        with subprocess.Popen(JOB_COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              encoding="utf-8") as proc:
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps(request) + "\n")
                proc.stdin.flush()  # and kept open: the job ends if this process goes away
                for line in proc.stdout:
                    try:
                        message = json.loads(line)
                    except ValueError:
                        message = None
                    if not isinstance(message, dict):
                        log.warning("lookalike job %s: unexpected output %r", job_id, line[:200])
                        continue
                    if "progress" in message:
                        self._update(job_id, progress=round(min(max(float(message["progress"]), 0.01), 0.94), 3),
                                     message=str(message.get("message", "")))
                    elif "result" in message:
                        result = message["result"]
                    elif "error" in message:
                        error = str(message["error"])
            finally:
                proc.stdin.close()
                code = proc.wait()
        if result is not None:
            return result
        raise RuntimeError(error or f"the training process exited with code {code} (its log is on stderr)")

    def _run(self, job_id: str, model_name: str, seed: list[str]) -> None:
        self._update(job_id, state=RUNNING, progress=0.01, message="starting")
        try:
            result = self._train(job_id, model_name, seed)
            self._update(job_id, progress=0.95, message="loading the new model")
            self.on_model()
            version = Path(result["path"]).name
            metrics = {k: float(v) for k, v in result["metrics"].items() if isinstance(v, (int, float))}
            self._update(job_id, state=SUCCEEDED, progress=1.0, message=f"{model_name} {version} is served",
                         model=(model_name, version), metrics=metrics)
        except Exception as err:  # a failed job reports why; the service goes on
            log.exception("lookalike job %s failed", job_id)
            self._update(job_id, state=FAILED, message=f"failed: {str(err)[:500]}")

    def get(self, job_id: str) -> JobStatus:
        with self._cond:
            job = self._jobs.get(job_id)
        if job is None:
            raise UnknownModel(f"no job {job_id[:64]!r} (jobs live until the service restarts)")
        return job

    def watch(self, job_id: str, active: Callable[[], bool], poll_s: float = 1.0) -> Iterator[JobStatus]:
        """The job now, then at every change, until it finishes (or the caller goes away)."""
        last = self.get(job_id)
        yield last
        while not last.finished and active():
            with self._cond:
                self._cond.wait_for(lambda seen=last: self._jobs[job_id] != seen, timeout=poll_s)  # type: ignore[misc]
                now = self._jobs[job_id]
            if now != last:
                last = now
                yield now
