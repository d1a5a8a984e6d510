"""Every ONNX model of the repository, loaded for raw-tensor inference, each with its batcher."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.core.batching import Batcher
from services.core.errors import ModelMissing
from services.core.runtime import OnnxModel, load_version, report_once, servable_models
from tenure.artifacts import ORT_TO_OIP, Manifest, safe_name
from tenure.errors import ArtifactError, UnknownModel
from tenure.settings import ServiceSettings


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]
    """-1 marks a variable dimension."""


@dataclass
class ServedModel:
    name: str
    version: str
    model: OnnxModel
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    batcher: Batcher | None
    """Only for single-input models whose first dimension is the batch."""

    def __post_init__(self) -> None:
        self.input_by_name = {s.name: s for s in self.inputs}
        self.output_index = {s.name: i for i, s in enumerate(self.outputs)}


def _specs(nodes: list) -> list[TensorSpec]:  # type: ignore[type-arg]
    return [TensorSpec(n.name, ORT_TO_OIP.get(n.type, n.type),
                       tuple(d if isinstance(d, int) and d >= 0 else -1 for d in n.shape)) for n in nodes]


class ModelSet:
    """Name -> loaded model (the pinned or newest loadable version of each); models none of whose
    versions loads are in `broken` (name -> why), and every other model is served."""

    def __init__(self, models: dict[str, ServedModel], broken: dict[str, str] | None = None) -> None:
        self.models = models
        self.broken = broken or {}

    @property
    def ready(self) -> bool:
        """At least one model to serve (ServerReady, health)."""
        return bool(self.models)

    @classmethod
    def load(cls, repo: Path, settings: ServiceSettings) -> "ModelSet":
        models: dict[str, ServedModel] = {}
        broken: dict[str, str] = {}
        for name in servable_models(repo):
            try:
                models[name] = load_version(repo, name, functools.partial(_serve, settings=settings))
            except ArtifactError as err:
                broken[name] = str(err)
                report_once(str(err), f"{err}; ModelInfer serves the other models")
        return cls(models, broken)

    def describe(self) -> str:
        """The one log line of a loaded set: what ModelInfer serves (every ONNX model in the repository)."""
        served = ", ".join(f"{m.name}@{m.version}" for m in self.models.values()) or "no models"
        broken = f"; no valid version: {', '.join(sorted(self.broken))}" if self.broken else ""
        return f"inference (ModelInfer): {served}{broken}"

    def get(self, name: str, version: str = "") -> ServedModel:
        safe_name(name, "model name")
        if version:
            safe_name(version, "model version")
        served = self.models.get(name)
        if served is None and name in self.broken:
            raise ModelMissing(self.broken[name], name)
        if served is None:
            raise UnknownModel(f"model {name[:64]!r} is not loaded; loaded: {', '.join(sorted(self.models))[:400]}")
        if version and version != served.version:
            raise UnknownModel(f"model {name[:64]!r} has no version {version[:64]!r}; loaded: {served.version}")
        return served


def _serve(vdir: Path, manifest: Manifest, settings: ServiceSettings) -> ServedModel:
    """One version loaded, checked and warmed for ModelInfer (any failure: the version is broken)."""
    threads, max_batch_rows = settings.ort_threads, settings.max_batch_rows_per_run
    model = OnnxModel(vdir, manifest, threads)
    inputs, outputs = _specs(model.session.get_inputs()), _specs(model.session.get_outputs())
    if len(inputs) == 1 and inputs[0].shape and inputs[0].shape[0] == -1:
        # Outputs follow the input's batch dimension, whatever the converter declared (the
        # LightGBM converter declares "label" as [1]).
        outputs = [TensorSpec(o.name, o.datatype, (-1, *o.shape[1:])) for o in outputs]
    batcher = None
    if len(inputs) == 1 and inputs[0].shape and inputs[0].shape[0] == -1:
        input_name = inputs[0].name
        batcher = Batcher(functools.partial(_run_one, model, input_name), name=model.name,
                          max_batch_rows=max_batch_rows, max_queue_delay_us=settings.max_queue_delay_us,
                          max_queue_rows=settings.max_queue_rows)
        for rows in (1, 8, 64, max_batch_rows):  # warm the batch sizes the batcher will send
            model.session.run(None, {input_name: np.zeros((rows, *[max(d, 1) for d in inputs[0].shape[1:]]),
                                                          _NUMPY.get(inputs[0].datatype, np.float32))})
    return ServedModel(vdir.parent.name, manifest.version, model, inputs, outputs, batcher)


def _run_one(model: OnnxModel, input_name: str, x: np.ndarray) -> list[np.ndarray]:
    return model.run_all({input_name: x})


_NUMPY = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32, "BOOL": np.bool_}
