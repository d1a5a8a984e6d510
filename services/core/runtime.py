"""ONNX sessions loaded from the model repository, and the holder that swaps in new versions."""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable, Generic, TypeVar

import numpy as np
import onnx
import onnx.compose
import onnx.numpy_helper
import onnxruntime as ort

from tenure.artifacts import Manifest, latest_valid, versions
from tenure.errors import ArtifactError, ModelUnavailable
from tenure.store import SNAPSHOT_NAME, FeatureSnapshot

log = logging.getLogger(__name__)
WARMUP_ROWS = (1, 8, 64, 256)


class OnnxModel:
    """One verified ONNX artifact: predict(float32 rows) -> the score column its manifest names."""

    def __init__(self, version_dir: Path, manifest: Manifest, threads: int = 1) -> None:
        self.manifest = manifest
        self.name = manifest.name
        self.version = manifest.version
        self.features = list(manifest.features)
        self.path = Path(version_dir) / "model.onnx"
        try:
            self.session = ort.InferenceSession(str(self.path), session_options(threads),
                                                providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ArtifactError(f"{self.name} {self.version}: onnxruntime cannot load it ({err})", model=self.name) from err
        self._check_signature()
        out = manifest.outputs[0]
        self.output = out["name"]
        self.column = out.get("use_column")
        # Looked up once: session.get_inputs() builds new objects on every call.
        self.input_name = self.session.get_inputs()[0].name
        self._outputs = [self.output]

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
        """Every output of the graph, in graph order."""
        return list(self.session.run(None, feeds))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """float32 (n, n_features) -> float32 (n,)."""
        if len(X) == 0:
            return np.zeros(0, np.float32)
        out = self.session.run(self._outputs, {self.input_name: X})[0]
        return out[:, self.column] if self.column is not None else out.reshape(len(X))

    def matrix(self, X: np.ndarray) -> np.ndarray:
        """float32 (n, n_features) -> the manifest's first output whole, (n, k) (contributions, class
        probabilities, cluster distances)."""
        out = self.session.run(self._outputs, {self.input_name: X})[0]
        return out.reshape(len(X), -1)

    def warm_up(self) -> None:
        for n in WARMUP_ROWS:
            self.matrix(np.zeros((n, len(self.features)), np.float32))

    @classmethod
    def load_latest(cls, repo: Path, name: str, threads: int = 1) -> "OnnxModel":
        vdir, manifest = latest_valid(repo, name)
        model = cls(vdir, manifest, threads)
        model.warm_up()
        return model


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

    def run(self, X: np.ndarray) -> list[np.ndarray]:
        """float32 (n, n_features) -> one float32 (n,) array per model."""
        got = self.session.run(self._outputs, {"features": X})
        return [g[:, c] if c is not None else g.reshape(len(X)) for g, c in zip(got, self._columns)]


def load_snapshot(repo: Path) -> FeatureSnapshot:
    """The newest valid feature snapshot: the one artifact every service needs."""
    if not versions(repo, SNAPSHOT_NAME):
        raise ArtifactError(f"the feature snapshot {SNAPSHOT_NAME!r} is not in the repository {repo}: every service "
                            "needs it (train the shop, or write one with `tenure snapshot`)", model=SNAPSHOT_NAME)
    return FeatureSnapshot.load_latest(repo)


def load_present(repo: Path, names: tuple[str, ...] | list[str], threads: int = 1) -> dict[str, OnnxModel]:
    """The newest valid version of each named model that the repository holds (a version directory
    under models/<name>/); names without one are left out: the shop's data could not support them,
    or they were not published. A model whose versions are all broken is an error (ArtifactError),
    not a missing model: the Holder then keeps serving what it loaded before."""
    return {name: OnnxModel.load_latest(repo, name, threads) for name in names if versions(repo, name)}


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


T = TypeVar("T")


class Holder(Generic[T]):
    """Holds a service's engine and swaps in a new one when the repository has newer versions.

    `build` loads, verifies and warms everything from the repository. It runs off the serving
    path; only when it succeeds is the reference swapped (one assignment, so callers see the old
    engine or the new one, never a mix). A broken newer artifact is logged and skipped.
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

    def _key(self) -> tuple[str, ...]:
        names = self.names
        return names + tuple(v[0].name if (v := versions(self.repo, n)) else "" for n in names)

    def refresh(self) -> bool:
        """Load newer versions if there are any; True when a new engine was swapped in."""
        with self._lock:
            key = self._key()
            if key == self.loaded_key:
                return False
            try:
                engine = self._build(self.repo)
            except Exception as err:  # any failure keeps the engine that works
                # The same failure on the same repository state is logged once, not at every poll.
                repeated = key == self._failed_key and str(err) == self.last_error
                self.last_error, self._failed_key = str(err), key
                (log.debug if repeated else log.error)("loading %s failed, keeping %s: %s", self.names,
                                                       self.loaded_key or "nothing", err)
                return False
            self.current, self.loaded_key, self.last_error, self._failed_key = engine, key, "", None
            log.info("serving %s", self._describe(engine) if self._describe is not None else key)
            return True

    def get(self) -> T:
        engine = self.current
        if engine is None:
            detail = f": {self.last_error}" if self.last_error else ""
            names = ", ".join(self.names) or "(none in the repository)"
            raise ModelUnavailable(f"models {names} are not loaded yet{detail}")
        return engine


def servable_models(repo: Path) -> tuple[str, ...]:
    """Names in the repository whose newest version holds an ONNX model (not the feature snapshot)."""
    names = []
    for path in sorted(Path(repo).iterdir()) if Path(repo).is_dir() else []:
        newest = versions(repo, path.name)
        if newest and (newest[0] / "model.onnx").is_file():
            names.append(path.name)
    return tuple(names)
