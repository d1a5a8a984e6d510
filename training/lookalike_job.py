"""`python -m training.lookalike_job`: one lookalike job, in its own process.

The segmentation service starts this for every StartLookalikeJob, so that LightGBM and the ONNX
converters load here and never in the serving process. The request is one JSON line on stdin
({"repo", "snapshot_dir", "seed_ids", "name", "threads"}); the answers are JSON lines on stdout:
{"progress": fraction, "message": what} as the work advances, then {"result": {...}} (the entry
of training.pipeline.train_lookalike) or {"error": why}. Anything else written to stdout (a library
printing) goes to stderr. The job stops when stdin closes (the service went away).
"""
from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import IO, Any


def _send(out: IO[str], lock: threading.Lock, message: dict[str, Any]) -> None:
    with lock:
        out.write(json.dumps(message) + "\n")
        out.flush()


def _exit_when_orphaned(stdin: IO[str]) -> None:
    """The service keeps stdin open while it waits for this job; end the job once it closes."""
    stdin.read()
    os._exit(3)


def run(request: dict[str, Any], out: IO[str]) -> int:
    lock = threading.Lock()
    try:
        from tenure.artifacts import load_manifest
        from tenure.settings import TrainSettings
        from tenure.store import FeatureSnapshot
        from training.pipeline import train_lookalike

        repo, snapshot_dir = Path(request["repo"]), request.get("snapshot_dir")
        snapshot = (FeatureSnapshot.load(Path(snapshot_dir), load_manifest(Path(snapshot_dir))) if snapshot_dir
                    else FeatureSnapshot.load_latest(repo))
        result = train_lookalike(
            repo, TrainSettings(lgbm_threads=int(request.get("threads", 1))), list(request["seed_ids"]),
            name=str(request["name"]), snapshot=snapshot,
            progress=lambda f, what: _send(out, lock, {"progress": float(f), "message": str(what)}))
    except ImportError as err:  # a serving-only install (tenure[serve]) has no LightGBM
        _send(out, lock, {"error": f"lookalike jobs need the training stack (pip install 'tenure[train]', or the "
                                   f"train image): {err}"})
        return 1
    except Exception as err:  # reported to the service, which marks the job failed with this message
        _send(out, lock, {"error": str(err) or type(err).__name__})
        return 1
    _send(out, lock, {"result": json.loads(json.dumps(result, default=str))})
    return 0


def main() -> int:
    request = json.loads(sys.stdin.readline())
    threading.Thread(target=_exit_when_orphaned, args=(sys.stdin,), daemon=True).start()
    # The protocol keeps the real stdout; fd 1 (print, native libraries) goes to stderr instead.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return run(request, out)


if __name__ == "__main__":
    sys.exit(main())
