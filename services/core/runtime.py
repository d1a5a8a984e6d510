"""ONNX sessions loaded from the model repository, and the holder that swaps in new versions."""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import logging
import os
import threading
import weakref
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, TypeVar

import numpy as np
import onnx
import onnx.compose
import onnx.numpy_helper
import onnxruntime as ort

from services.core import metrics
from services.core.compiled import CompiledForest, declared, parity_rows
from tenure.artifacts import IncompleteVersion, Manifest, candidates, fingerprint, label, load_manifest, versions
from tenure.errors import ArtifactError, ModelUnavailable
from tenure.store import SNAPSHOT_NAME, FeatureSnapshot

log = logging.getLogger(__name__)
T = TypeVar("T")
STABLE_READS = 5
"""Reads of the repository until two agree (Holder._stable_key), and plans per refresh."""
WARMUP_ROWS = (1, 8, 64, 256)
TREE_BACKEND = "auto"
"""ServiceSettings.tree_backend, set by services.core.server.build_service: "onnxruntime" never uses
a compiled forest."""
FOREST_PARITY = 1e-5
"""Max |compiled forest - onnxruntime| on parity_rows for the forest to be used."""
_HALF = np.float32(0.5)


class OnnxModel:
    """One verified ONNX artifact: predict(float32 rows) -> the score column its manifest names."""

    def __init__(self, version_dir: Path, manifest: Manifest, threads: int = 1) -> None:
        self.manifest = manifest
        self.name = manifest.name
        self.version = manifest.version
        self.features = list(manifest.features)
        self.path = Path(version_dir) / "model.onnx"
        try:
            self.session = shared_session(self.path, threads)
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
            detail = " ".join(str(err).replace(str(self.path), "model.onnx").split())[:300]  # no server paths
            raise ArtifactError(f"{label(self.path.parent)}: onnxruntime cannot load it ({detail})",
                                model=self.name) from err
        self._check_signature()
        out = manifest.outputs[0]
        self.output = out["name"]
        self.column = out.get("use_column")
        # Looked up once: session.get_inputs() builds new objects on every call.
        self.input_name = self.session.get_inputs()[0].name
        self._outputs = [self.output]
        self.rows_scored = metrics.ROWS_SCORED.labels(self.name, self.version)
        self.forest: CompiledForest | None = None
        spec = declared(manifest.params)
        self.classifier: tuple[int, int] | None = None
        """(index of "label", index of "probabilities") in graph order when run_all answers from the
        compiled forest (a LightGBM binary classifier, zipmap off, whose labels also matched)."""
        if spec is not None and TREE_BACKEND == "auto" and self.column == 1 and len(self.manifest.inputs) == 1:
            self.forest = self._load_forest(Path(version_dir), spec)
        if self.forest is not None and self.forest.exponent == 1.0:  # an extended horizon keeps the label's
            self.classifier = self._classifier_outputs(Path(version_dir))  # window: onnxruntime

    @property
    def backend(self) -> str:
        """What predict() runs: "compiled" (the version's compiled forest) or "onnxruntime"."""
        return "compiled" if self.forest is not None else "onnxruntime"

    def _load_forest(self, version_dir: Path, spec: dict[str, Any]) -> CompiledForest | None:
        """The version's compiled forest if it loads and gives onnxruntime's answers; else None, the
        reason logged once (the model is served with onnxruntime)."""
        try:
            forest = CompiledForest(version_dir, spec, len(self.features))
            X = parity_rows(len(self.features))
            want = self.session.run(self._outputs, {self.input_name: X})[0][:, self.column]
            diff = float(np.max(np.abs(forest.predict(X) - want)))
            if not diff <= FOREST_PARITY:
                raise ArtifactError(f"it differs from onnxruntime by {diff:.2e} (> {FOREST_PARITY:g})")
        except Exception as err:  # any failure of the optional backend means "use onnxruntime"
            report_once(f"{version_dir}|forest|{err}", f"{label(version_dir)}: compiled forest {spec.get('file')!r} "
                        f"not used ({str(err)[:300]}); serving with onnxruntime", logging.WARNING)
            return None
        return forest

    def _classifier_outputs(self, version_dir: Path) -> tuple[int, int] | None:
        """Where run_all's outputs go when the graph's outputs are exactly a binary classifier's, "label"
        (int64 [n]) and "probabilities" (float32 [n, 2]), and the forest gives onnxruntime's labels and
        both probability columns on parity_rows (labels: p > 0.5, as TreeEnsembleClassifier decides
        on the margin); else None (run_all runs onnxruntime; logged once)."""
        outs = self.session.get_outputs()
        kinds = {(o.name, o.type, len(o.shape or ())) for o in outs}
        if len(outs) != 2 or kinds != {("label", "tensor(int64)", 1), ("probabilities", "tensor(float)", 2)}:
            return None
        names = [o.name for o in outs]
        where = (names.index("label"), names.index("probabilities"))
        assert self.forest is not None
        X = parity_rows(len(self.features))
        want = self.session.run(None, {self.input_name: X})
        got = self._classify(self.forest.predict(X), where)
        diff = float(np.max(np.abs(got[where[1]] - want[where[1]])))
        if want[where[1]].shape != (len(X), 2) or not diff <= FOREST_PARITY \
                or not np.array_equal(got[where[0]], want[where[0]].reshape(-1)):
            report_once(f"{version_dir}|classifier", f"{label(version_dir)}: the compiled forest's classifier outputs "
                        f"differ from onnxruntime's (probabilities by {diff:.2e}, or labels); ModelInfer runs "
                        "onnxruntime", logging.WARNING)
            return None
        return where

    @staticmethod
    def _classify(p: np.ndarray, where: tuple[int, int]) -> list[np.ndarray]:
        """P(class 1), float32 (n,) -> [label, probabilities] placed in graph order."""
        out: list[np.ndarray] = [p, p]
        proba = np.empty((len(p), 2), np.float32)
        proba[:, 1] = p
        np.subtract(np.float32(1.0), p, out=proba[:, 0])
        out[where[0]] = (p > _HALF).astype(np.int64)
        out[where[1]] = proba
        return out

    def _check_signature(self) -> None:
        """The graph must have the inputs and outputs its manifest declares (a model whose
        manifest lists features takes one input of exactly that width)."""
        inputs = self.session.get_inputs()
        got = [i.name for i in inputs]
        want = [i["name"] for i in self.manifest.inputs]
        if got != want:
            raise ArtifactError(f"{self.name}: ONNX inputs {got} do not match the manifest's {want}", model=self.name)
        if self.features:
            width = inputs[0].shape[-1] if len(inputs) == 1 and inputs[0].shape else None
            if width != len(self.features):
                raise ArtifactError(f"{self.name}: ONNX expects {width} features, the manifest lists "
                                    f"{len(self.features)}", model=self.name)
        outputs = {o.name for o in self.session.get_outputs()}
        missing = [o["name"] for o in self.manifest.outputs if o["name"] not in outputs]
        if missing:
            raise ArtifactError(f"{self.name}: ONNX lacks outputs {missing}", model=self.name)

    def run_all(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Every output of the graph, in graph order (from the compiled forest for a binary classifier
        whose outputs it reproduces, see _classifier_outputs)."""
        if self.classifier is not None and self.forest is not None and len(feeds) == 1:
            x = feeds.get(self.input_name)
            if x is not None and x.dtype == np.float32 and x.ndim == 2 and x.shape[1] == len(self.features) \
                    and len(x):
                out = self._classify(self.forest.predict(x), self.classifier)
                self.rows_scored.inc(len(x))
                return out
        out = list(self.session.run(None, feeds))
        self.rows_scored.inc(len(out[0]) if out and out[0].ndim else 0)
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        """float32 (n, n_features) -> float32 (n,)."""
        if len(X) == 0:
            return np.zeros(0, np.float32)
        if self.forest is not None:
            p = self.forest.predict(X)
            self.rows_scored.inc(len(X))
            return p
        out = self.session.run(self._outputs, {self.input_name: X})[0]
        self.rows_scored.inc(len(X))
        return out[:, self.column] if self.column is not None else out.reshape(len(X))

    def matrix(self, X: np.ndarray) -> np.ndarray:
        """float32 (n, n_features) -> the manifest's first output whole, (n, k) (contributions, class
        probabilities, cluster distances)."""
        out = self.session.run(self._outputs, {self.input_name: X})[0]
        self.rows_scored.inc(len(X))
        return out.reshape(len(X), -1)

    def warm_up(self) -> None:
        """Run the usual batch sizes once (not counted in tenure_rows_scored_total)."""
        for n in WARMUP_ROWS:
            self.session.run(self._outputs, {self.input_name: np.zeros((n, len(self.features)), np.float32)})
            if self.forest is not None:
                self.forest.predict(np.zeros((n, len(self.features)), np.float32))

    @classmethod
    def load_latest(cls, repo: Path, name: str, threads: int = 1) -> "OnnxModel":
        """The pinned or newest version that verifies, loads and warms up (older ones are the fallback)."""
        def load(vdir: Path, manifest: Manifest) -> OnnxModel:
            model = cls(vdir, manifest, threads)
            model.warm_up()
            return model

        return load_version(repo, name, load)


_sessions: weakref.WeakValueDictionary[tuple[Any, ...], ort.InferenceSession] = weakref.WeakValueDictionary()
_sessions_lock = threading.Lock()


def shared_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """One onnxruntime session per model file (and thread count) in the process, while anything holds it:
    the scoring service's Score/Predict models and ModelInfer's are the same files, each loaded once."""
    st = path.stat()
    key = (str(path.absolute()), st.st_mtime_ns, st.st_size, st.st_ino, threads)
    with _sessions_lock:
        session = _sessions.get(key)
    if session is None:
        session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
        with _sessions_lock:
            session = _sessions.setdefault(key, session)
    return session


def session_options(threads: int) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3  # errors only: the converter's declared output shapes trigger warnings
    # Spinning threads burn a core while idle; on a shared 2-core box that hurts the serving threads.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


class FusedModels:
    """Several models that read one feature vector, fused into one ONNX graph and one session: a
    per-request call pays for one onnxruntime run instead of one per model. Each model gets the
    columns it needs by a Gather inside the graph; outputs are each model's manifest output (and
    column), in order."""

    def __init__(self, models: list[OnnxModel], columns: list[np.ndarray | None], n_features: int,
                 threads: int = 1) -> None:
        nodes, inits, outputs = [], [], []
        opsets: dict[str, int] = {}
        feature_input = onnx.helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, [None, n_features])
        for k, (model, cols) in enumerate(zip(models, columns)):
            proto = onnx.compose.add_prefix(onnx.load(str(model.path)), f"m{k}_")
            source = proto.graph.input[0].name
            if cols is None:
                nodes.append(onnx.helper.make_node("Identity", ["features"], [source]))
            else:
                inits.append(onnx.numpy_helper.from_array(np.asarray(cols, np.int64), f"m{k}_columns"))
                nodes.append(onnx.helper.make_node("Gather", ["features", f"m{k}_columns"], [source], axis=1))
            nodes.extend(proto.graph.node)
            inits.extend(proto.graph.initializer)
            outputs.append(next(o for o in proto.graph.output if o.name == f"m{k}_{model.output}"))
            for op in proto.opset_import:
                opsets[op.domain] = max(opsets.get(op.domain, 0), op.version)  # Gather, Identity: opset 1
        graph = onnx.helper.make_graph(nodes, "fused", [feature_input], outputs, inits)
        fused = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in opsets.items()])
        fused.ir_version = max(onnx.load(str(m.path), load_external_data=False).ir_version for m in models)
        self.session = ort.InferenceSession(fused.SerializeToString(), session_options(threads),
                                            providers=["CPUExecutionProvider"])
        self._outputs = [o.name for o in outputs]
        self._columns = [m.column for m in models]
        self._rows = [m.rows_scored for m in models]

    def run(self, X: np.ndarray) -> list[np.ndarray]:
        """float32 (n, n_features) -> one float32 (n,) array per model."""
        got = self.session.run(self._outputs, {"features": X})
        for rows in self._rows:
            rows.inc(len(X))
        return [g[:, c] if c is not None else g.reshape(len(X)) for g, c in zip(got, self._columns)]


def load_snapshot(repo: Path) -> FeatureSnapshot:
    """The pinned or newest feature snapshot that verifies and loads: the one artifact every service needs."""
    if not versions(repo, SNAPSHOT_NAME):
        raise ArtifactError(f"the feature snapshot {SNAPSHOT_NAME!r} is not in the repository: every service "
                            "needs it (train the shop, or write one with `tenure snapshot`)", model=SNAPSHOT_NAME)
    return load_version(repo, SNAPSHOT_NAME, FeatureSnapshot.load)


def load_present(repo: Path, names: tuple[str, ...] | list[str], threads: int = 1) -> dict[str, OnnxModel]:
    """The pinned or newest loadable version of each named model that the repository holds (a version
    directory under models/<name>/); names without one are left out: the shop's data could not
    support them, they were not published, or every version of theirs is broken (logged once; the
    service reports the model missing and serves everything else)."""
    loaded = {}
    for name in names:
        if versions(repo, name):
            model = load_optional(repo, name, threads)
            if model is not None:
                loaded[name] = model
    return loaded


def load_optional(repo: Path, name: str, threads: int = 1) -> OnnxModel | None:
    """OnnxModel.load_latest, or None (logged once) when no version of the model loads."""
    try:
        return OnnxModel.load_latest(repo, name, threads)
    except ArtifactError as err:
        report_once(str(err), f"{err}; served without it (reported missing)")
        return None


# -- choosing versions -------------------------------------------------------------------------------

_failed: dict[Path, tuple[tuple[tuple[str, int, int, int], ...], str]] = {}
"""Version dir -> (its fingerprint, why it failed to load): a version whose manifest verifies but
that onnxruntime (or the snapshot reader, or the signature check) refuses; not tried again until
its files change."""
_reported: set[str] = set()
_failed_lock = threading.Lock()
_selection = threading.local()


def report_once(key: str, message: str, level: int = logging.ERROR) -> None:
    """Log a problem of the repository once per process, not at every poll."""
    with _failed_lock:
        if key in _reported:
            return
        if len(_reported) > 10_000:
            _reported.clear()
        _reported.add(key)
    log.log(level, "%s", message)


def usable(repo: Path, name: str) -> Iterator[tuple[Path, Manifest]]:
    """(version dir, verified manifest) in the order services try them (pinned, then newest first),
    without versions that are not complete, do not verify, or failed to load before; each skipped
    version is logged once."""
    for vdir in candidates(repo, name):
        try:
            manifest = load_manifest(vdir)
        except IncompleteVersion as err:
            report_once(f"{vdir}|{err}", f"{err}; checked again at the next poll", logging.INFO)
            continue
        except ArtifactError as err:
            report_once(f"{vdir}|{err}", f"{err}: this version is skipped")
            continue
        with _failed_lock:
            failed = _failed.get(vdir.absolute())
        if failed is not None and failed[0] == fingerprint(vdir):
            continue
        yield vdir, manifest


def selected(repo: Path, name: str) -> str:
    """The version a service would load now ("" when there is none)."""
    return next((vdir.name for vdir, _ in usable(repo, name)), "")


class StalePlan(Exception):
    """A version the Holder planned to load failed to load (it is remembered as broken now): plan again."""


def load_version(repo: Path, name: str, load: Callable[[Path, Manifest], T]) -> T:
    """load(version dir, manifest) of the first usable version that loads; a version that fails to
    load is remembered (logged once, skipped from then on) and the next one is tried.

    Within a Holder's build (`recording(plan)`), a name of the plan loads exactly the planned version
    (one of a set the repository held at one moment); if it fails, StalePlan."""
    problems: list[str] = []
    record: Selection | None = getattr(_selection, "record", None)
    planned = record.plan.get(name) if record is not None else None
    for vdir, manifest in usable(repo, name):
        if planned is not None and vdir.name != planned:
            continue
        stamp = fingerprint(vdir)
        try:
            loaded = load(vdir, manifest)
        except Exception as err:  # onnxruntime, numpy and the checks raise many types: any means "broken"
            why = str(err) if isinstance(err, ArtifactError) else f"{label(vdir)}: cannot load it ({err!r:.300})"
            with _failed_lock:
                _failed[vdir.absolute()] = (stamp, why)
            report_once(f"{vdir}|{why}", f"{why}: this version is skipped")
            problems.append(why)
            if record is not None and planned is not None:
                record.skipped.append(why)
                raise StalePlan(why) from err
            continue
        if record is not None:
            record.chosen[name] = vdir.name
            record.skipped.extend(problems)
        return loaded
    if planned is not None:  # the planned version went away (deleted, its files changed) since the plan
        raise StalePlan(f"{name}/{planned} is no longer usable")
    with _failed_lock:
        known = [_failed[v.absolute()][1] for v in versions(repo, name) if v.absolute() in _failed]
    detail = "; ".join(dict.fromkeys(problems + known)) or f"no complete, verified version under {name}/"
    raise ArtifactError(f"model {name!r}: no valid version ({detail[:800]})", model=name)


class Selection:
    """The versions to load (plan: name -> version; names not in it: the first usable), and what
    load_version loaded (chosen) and skipped within `recording()`."""

    def __init__(self, plan: dict[str, str] | None = None) -> None:
        self.plan = {name: version for name, version in (plan or {}).items() if version}
        self.chosen: dict[str, str] = {}
        self.skipped: list[str] = []


@contextlib.contextmanager
def recording(plan: dict[str, str] | None = None) -> Iterator[Selection]:
    """Within the block (on this thread), load_version loads the planned versions and records what it loads."""
    _selection.record = record = Selection(plan)
    try:
        yield record
    finally:
        _selection.record = None


def inventory(loaded: list[tuple[str, str]], missing: tuple[str, ...] | list[str]) -> str:
    """One line for the log: the loaded models with versions, then the missing ones."""
    text = ", ".join(f"{name}@{version}" for name, version in loaded)
    return f"{text}; not in the repository: {', '.join(missing)}" if missing else f"{text}; none missing"


def column_index(names: list[str], wanted: list[str], model: str) -> np.ndarray:
    """Positions of a model's features within a feature vector; ArtifactError if any is absent."""
    pos = {n: i for i, n in enumerate(names)}
    missing = [n for n in wanted if n not in pos]
    if missing:
        raise ArtifactError(f"{model}: features {missing[:5]} are not in the feature snapshot", model=model)
    return np.array([pos[n] for n in wanted], dtype=np.int64)


class Holder(Generic[T]):
    """Holds a service's engine and swaps in a new one when the repository has newer versions.

    `build` loads, verifies and warms everything from the repository. It runs off the serving
    path; only when it succeeds is the reference swapped (one assignment, so callers see the old
    engine or the new one, never a mix). The key that says "something changed" is, per name, the
    version a build would load (`selected`: pinned or newest that is complete, verifies and has not
    failed to load), so a version still being written is picked up once it is complete, and a
    broken one never causes a swap.
    """

    def __init__(self, repo: Path, names: tuple[str, ...] | Callable[[Path], tuple[str, ...]],
                 build: Callable[[Path], T], describe: Callable[[T], str] | None = None) -> None:
        """names: every artifact the engine may use (present or not: one that appears later changes
        the key, and the engine is rebuilt with it); describe: the engine in one log line (the
        loaded models and the missing ones), logged when an engine is swapped in."""
        self.repo = Path(repo)
        self._names = names
        self._build = build
        self._describe = describe
        self._lock = threading.Lock()
        self.current: T | None = None
        self.loaded_key: tuple[str, ...] | None = None
        self.last_error: str = ""
        self._failed_key: tuple[str, ...] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return self._names(self.repo) if callable(self._names) else self._names

    def _key(self, names: tuple[str, ...], chosen: dict[str, str] | None = None) -> tuple[str, ...]:
        if chosen is not None:
            return names + tuple(chosen.get(n, "") for n in names)
        return names + tuple(selected(self.repo, n) for n in names)

    def _stable_key(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(names, key) read twice in a row with the same result: publishing only adds versions, so
        every name had its selected version at the moment between the two reads, and the engine is
        built from a set of versions that the repository held at one moment (not, say, a churn model
        read before a publish and a lookalike read after it)."""
        names = self.names
        key = self._key(names)
        for _ in range(STABLE_READS):
            names_again = self.names
            again = self._key(names_again)
            if again == key:
                break
            names, key = names_again, again
        return names, key

    @property
    def ready(self) -> bool:
        """An engine is loaded and it has something to serve (an engine may say `ready = False`,
        e.g. a ModelSet without any model)."""
        engine = self.current
        return engine is not None and bool(getattr(engine, "ready", True))

    def refresh(self) -> bool:
        """Load newer versions if there are any; True when a new engine was swapped in."""
        with self._lock:
            skipped: list[str] = []
            for _ in range(STABLE_READS):
                names, key = self._stable_key()
                if key == self.loaded_key:
                    if skipped:  # the newer versions were broken: the engine we have is the one to serve
                        self.last_error = "; ".join(skipped)
                    return False
                try:
                    with recording(dict(zip(names, key[len(names):]))) as selection:
                        engine = self._build(self.repo)
                except StalePlan:  # a planned version failed to load: it is skipped from now on; plan again
                    skipped.extend(selection.skipped)
                    continue
                except Exception as err:  # any failure keeps the engine that works
                    # The same failure on the same repository state is logged once, not at every poll.
                    repeated = key == self._failed_key and str(err) == self.last_error
                    self.last_error, self._failed_key = str(err), key
                    (log.debug if repeated else log.error)("loading %s from %s failed, keeping %s: %s", names,
                                                           self.repo, self.loaded_key or "nothing", err)
                    return False
                built = self._key(names, selection.chosen)
                previous = self.loaded_key
                self.current, self.loaded_key, self.last_error, self._failed_key = engine, built, "", None
                _swapped_metrics(previous, built, engine)
                log.info("serving %s", self._describe(engine) if self._describe is not None else built)
                return True
            return False

    def get(self) -> T:
        engine = self.current
        if engine is None:
            detail = f": {self.last_error}" if self.last_error else ""
            names = ", ".join(self.names) or "(none in the repository)"
            raise ModelUnavailable(f"models {names} are not loaded yet{detail}")
        return engine


def _served(key: tuple[str, ...] | None) -> dict[str, str]:
    """A holder's key (names, then the version of each) as {name: version} of what it loaded."""
    if not key:
        return {}
    half = len(key) // 2
    return {name: version for name, version in zip(key[:half], key[half:]) if version}


def _swapped_metrics(old_key: tuple[str, ...] | None, new_key: tuple[str, ...], engine: Any) -> None:
    """tenure_model_info and the snapshot's timestamp follow what a holder serves now."""
    old, new = _served(old_key), _served(new_key)
    metrics.models_swapped([(n, v) for n, v in old.items() if n != SNAPSHOT_NAME],
                           [(n, v) for n, v in new.items() if n != SNAPSHOT_NAME])
    snapshot = getattr(engine, "snapshot", None)
    if SNAPSHOT_NAME in new or snapshot is not None:
        metrics.snapshot_swapped(old.get(SNAPSHOT_NAME, ""), new.get(SNAPSHOT_NAME, ""),
                                 getattr(snapshot, "cutoff", None))


def servable_models(repo: Path) -> tuple[str, ...]:
    """Names in the repository with a version holding an ONNX model (not the feature snapshot)."""
    names = []
    for path in sorted(Path(repo).iterdir()) if Path(repo).is_dir() else []:
        if not path.name.startswith(".") and any((v / "model.onnx").is_file() for v in versions(repo, path.name)):
            names.append(path.name)
    return tuple(names)


_libc: Any = None
MALLOC_ARENAS = 2
"""glibc malloc arenas of a server process (M_ARENA_MAX; glibc's default is 8 per core): each handler
thread that gets its own arena keeps that arena's peak. Measured with the bench load: VmHWM 324 MiB
instead of 361, 268 MiB steady instead of 293, at the same CPU per call."""
_M_ARENA_MAX = -8


def _c_library() -> Any:
    """glibc through ctypes, or False (another C library, or none found)."""
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name) if name else False
        except OSError:
            _libc = False
    return _libc


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> None:
    """Cap glibc's malloc arenas, before the server starts its threads; MALLOC_ARENA_MAX in the
    environment (read by glibc itself) wins."""
    libc = _c_library()
    if not os.environ.get("MALLOC_ARENA_MAX") and libc and hasattr(libc, "mallopt"):
        libc.mallopt(_M_ARENA_MAX, arenas)


def release_memory() -> None:
    """After an engine was dropped: collect it (unfreezing first: gc.freeze() keeps frozen objects
    for good), then hand freed heap pages back to the kernel (glibc keeps them in its arenas)."""
    gc.unfreeze()
    gc.collect()
    libc = _c_library()
    if libc and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
