"""Per-feature tree contributions of a LightGBM binary model, as a second ONNX model.

onnxruntime has no TreeSHAP, but path-based (Saabas) contributions depend only on the leaf a row
lands in, so a TreeEnsembleRegressor whose leaves carry contribution vectors computes them:

* a node's expected value E is the cover-weighted (data-count) mean of the leaf values below it;
* for every leaf, walking root -> leaf, a split on feature f adds E(child) - E(parent) to f;
* the bias is sum over trees of E(root).

Per tree the path telescopes to leaf_value - E(root), so contributions + bias sum exactly to the
raw margin (log-odds) LightGBM predicts. The graph replicates LightGBM's splits one for one
(`x <= threshold` -> left = BRANCH_LEQ, true branch = left child).

Thresholds. LightGBM compares the input as double against a double threshold; onnxruntime
compares float32 against a float32 attribute. onnxmltools passes the double thresholds as a float
attribute, i.e. rounds them to the *nearest*
float32. When that rounds up, a float32 input x with t < x <= float32(t) goes left in ONNX but
right in LightGBM (LightGBM puts thresholds halfway between neighbouring training values, so this
happens whenever a value equals the rounded threshold, e.g. neighbouring float32 prices).
`thresholds="lightgbm"` (default) rounds every threshold *down* to the largest float32 <= t,
which makes `x <= t32` identical to LightGBM's `double(x) <= t` for every float32 x: leaf
assignment is exactly LightGBM's. `thresholds="onnxmltools"` reproduces the churn ONNX model's
rounding and NaN rule bit for bit instead (to show the difference). `snap_onnx_thresholds` applies
the exact rule to an onnxmltools conversion; `training.export` applies it to every LightGBM model.

NaN. LightGBM: missing_type "NaN" sends NaN to the default side; missing_type "None" (no NaN seen
in training) replaces NaN by 0.0 and compares, i.e. left iff 0 <= t. That is what
nodes_missing_value_tracks_true encodes. missing_type "Zero" (zero_as_missing) and categorical
splits ("==") cannot be expressed with BRANCH_LEQ and raise ValueError.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from tenure.artifacts import Manifest, write_artifact
from tenure.errors import ArtifactError

log = logging.getLogger(__name__)

INPUT_NAME = "features"
OUTPUT_NAME = "contributions"
KIND = "lightgbm-contributions"
PARITY_TOLERANCE = 1e-4
"""Max |sum(contributions) - LightGBM raw margin| and max |ONNX - reference| allowed on X_check."""

ThresholdMode = Literal["lightgbm", "onnxmltools"]
MISSING_NONE, MISSING_ZERO, MISSING_NAN = 0, 1, 2
_MISSING = {"None": MISSING_NONE, "Zero": MISSING_ZERO, "NaN": MISSING_NAN}
_TREE_OPS = ("TreeEnsembleClassifier", "TreeEnsembleRegressor")


@dataclass(frozen=True)
class Tree:
    """One LightGBM tree flattened in preorder (node 0 = root); leaves have feature -1."""

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    default_left: np.ndarray
    missing: np.ndarray
    expected: np.ndarray
    """Cover-weighted mean leaf value below each node; a leaf's own value."""
    count: np.ndarray
    """Training rows reaching each node (LightGBM's leaf_count / internal_count)."""

    @property
    def is_leaf(self) -> np.ndarray:
        return self.feature < 0


def parse_trees(model: lgb.LGBMModel | lgb.Booster, single_output: bool = True) -> list[Tree]:
    """LightGBM's dump (best iteration) -> flattened trees with expected values per node.

    single_output=False also accepts multiclass models (several trees per iteration, in dump order)."""
    booster = model.booster_ if isinstance(model, lgb.LGBMModel) else model
    dump = booster.dump_model()
    if single_output and dump.get("num_tree_per_iteration", 1) != 1:
        raise ValueError("contributions need a single-output model (binary or regression), "
                         f"got {dump['num_tree_per_iteration']} trees per iteration")
    if dump.get("average_output"):
        raise ValueError("random-forest boosting averages trees; contributions are implemented for gbdt/dart")
    return [_flatten(info["tree_structure"], i) for i, info in enumerate(dump["tree_info"])]


def _flatten(root: dict[str, Any], tree_index: int) -> Tree:
    nodes: list[dict[str, Any]] = []
    left: list[int] = []
    right: list[int] = []
    stack: list[tuple[dict[str, Any], int, bool]] = [(root, -1, True)]
    while stack:  # iterative preorder: parents before children, left subtree before right
        node, parent, is_left = stack.pop()
        idx = len(nodes)
        nodes.append(node)
        left.append(-1)
        right.append(-1)
        if parent >= 0:
            (left if is_left else right)[parent] = idx
        if "split_feature" in node:
            if node["decision_type"] != "<=":
                raise ValueError(f"tree {tree_index}: categorical split (decision_type "
                                 f"{node['decision_type']!r}) is not supported; train without categorical_feature")
            if node["missing_type"] not in ("None", "NaN"):
                raise ValueError(f"tree {tree_index}: missing_type {node['missing_type']!r} (zero_as_missing) "
                                 "cannot be expressed as an ONNX tree split")
            stack.append((node["right_child"], idx, False))
            stack.append((node["left_child"], idx, True))
        elif "leaf_coeff" in node:
            raise ValueError(f"tree {tree_index}: linear trees are not supported")
    n = len(nodes)
    split = ["split_feature" in nd for nd in nodes]
    feature = np.array([nd["split_feature"] if s else -1 for nd, s in zip(nodes, split)], np.int64)
    threshold = np.array([float(nd["threshold"]) if s else 0.0 for nd, s in zip(nodes, split)], np.float64)
    default_left = np.array([bool(nd.get("default_left", True)) for nd in nodes])
    missing = np.array([_MISSING[nd["missing_type"]] if s else 0 for nd, s in zip(nodes, split)], np.int8)
    expected = np.array([0.0 if s else float(nd["leaf_value"]) for nd, s in zip(nodes, split)])
    count = np.array([0.0 if s else float(nd.get("leaf_count", 0)) for nd, s in zip(nodes, split)])
    lidx, ridx = np.array(left, np.int64), np.array(right, np.int64)
    for i in range(n - 1, -1, -1):  # reverse preorder: children are done before their parent
        if feature[i] >= 0:
            cl, cr = count[lidx[i]], count[ridx[i]]
            total = cl + cr
            expected[i] = ((cl * expected[lidx[i]] + cr * expected[ridx[i]]) / total if total > 0
                           else 0.5 * (expected[lidx[i]] + expected[ridx[i]]))
            count[i] = total
    return Tree(feature, threshold, lidx, ridx, default_left, missing, expected, count)


def float32_thresholds(trees: list[Tree], mode: ThresholdMode = "lightgbm") -> list[np.ndarray]:
    """Per tree, the float32 thresholds for `x <= t32`: rounded down ("lightgbm", exact) or to nearest."""
    out = []
    for tree in trees:
        with np.errstate(over="ignore"):
            t32 = tree.threshold.astype(np.float32)  # round to nearest (what onnx/protobuf do)
        if mode == "lightgbm":
            up = t32.astype(np.float64) > tree.threshold
            t32 = np.where(up, np.nextafter(t32, np.float32(-np.inf)), t32)
        elif mode != "onnxmltools":
            raise ValueError(f"thresholds must be 'lightgbm' or 'onnxmltools', not {mode!r}")
        out.append(t32)
    return out


def nan_goes_left(tree: Tree, mode: ThresholdMode = "lightgbm") -> np.ndarray:
    """Per node: does NaN take the left (true) branch? LightGBM's rule, or onnxmltools' approximation."""
    if mode == "onnxmltools":
        return tree.default_left & ~((tree.missing == MISSING_NONE) & (tree.threshold < 0.0))
    return np.where(tree.missing == MISSING_NAN, tree.default_left, tree.threshold >= 0.0)


def leaf_contributions(tree: Tree) -> dict[int, dict[int, float]]:
    """Leaf node -> {feature: summed E(child) - E(parent) over the splits on the root -> leaf path}."""
    parent = np.full(len(tree.feature), -1, np.int64)
    inner = np.flatnonzero(~tree.is_leaf)
    parent[tree.left[inner]] = inner
    parent[tree.right[inner]] = inner
    out: dict[int, dict[int, float]] = {}
    for leaf in np.flatnonzero(tree.is_leaf).tolist():
        acc: dict[int, float] = {}
        child = leaf
        while parent[child] >= 0:
            p = int(parent[child])
            f = int(tree.feature[p])
            acc[f] = acc.get(f, 0.0) + float(tree.expected[child] - tree.expected[p])
            child = p
        out[leaf] = acc
    return out


def contributions_onnx(model: lgb.LGBMClassifier | lgb.Booster, n_features: int,
                       thresholds: ThresholdMode = "lightgbm") -> bytes:
    """ONNX graph: "features" float32 [N, n_features] -> "contributions" float32 [N, n_features + 1]
    (the last column is the bias; a row sums to the raw margin)."""
    trees = parse_trees(model)
    used = max((int(t.feature.max()) for t in trees), default=-1)
    if used >= n_features:
        raise ValueError(f"the model splits on feature {used}, but n_features is {n_features}")
    t32s = float32_thresholds(trees, thresholds)
    a: dict[str, Any] = {k: [] for k in (
        "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes", "nodes_values",
        "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true",
        "target_treeids", "target_nodeids", "target_ids", "target_weights")}
    bias = 0.0
    for tid, (tree, t32) in enumerate(zip(trees, t32s)):
        n = len(tree.feature)
        leaf = tree.is_leaf
        a["nodes_treeids"] += [tid] * n
        a["nodes_nodeids"] += list(range(n))
        a["nodes_featureids"] += np.where(leaf, 0, tree.feature).tolist()
        a["nodes_modes"] += ["LEAF" if lf else "BRANCH_LEQ" for lf in leaf.tolist()]
        a["nodes_values"] += np.where(leaf, 0.0, t32.astype(np.float64)).tolist()
        a["nodes_truenodeids"] += np.where(leaf, 0, tree.left).tolist()
        a["nodes_falsenodeids"] += np.where(leaf, 0, tree.right).tolist()
        a["nodes_missing_value_tracks_true"] += (nan_goes_left(tree, thresholds) & ~leaf).astype(int).tolist()
        bias += float(tree.expected[0])
        for node, contrib in leaf_contributions(tree).items():
            # Every leaf also carries a zero on the bias column: onnxruntime adds base_values only to
            # targets that received a weight in the row, and the total bias lives in base_values.
            items = [(f, w) for f, w in sorted(contrib.items()) if w != 0.0] + [(n_features, 0.0)]
            for f, w in items:
                a["target_treeids"].append(tid)
                a["target_nodeids"].append(node)
                a["target_ids"].append(f)
                a["target_weights"].append(w)
    base = [0.0] * n_features + [bias]
    tree_node = helper.make_node(
        "TreeEnsembleRegressor", [INPUT_NAME], [OUTPUT_NAME], name="saabas_contributions", domain="ai.onnx.ml",
        n_targets=n_features + 1, aggregate_function="SUM", post_transform="NONE", base_values=base, **a)
    graph = helper.make_graph(
        [tree_node], "lightgbm_contributions",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None, n_features + 1])])
    onx = helper.make_model(graph, producer_name="tenure.training.contrib",
                            opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    onx.ir_version = 8
    onnx.checker.check_model(onx)
    return onx.SerializeToString()


def reference_contributions(model: lgb.LGBMClassifier | lgb.Booster, X: np.ndarray,
                            thresholds: ThresholdMode = "lightgbm") -> np.ndarray:
    """numpy walk of every tree, row-vectorised: float64 [N, n_features + 1], bias last.

    "lightgbm" decides splits exactly like LightGBM (double compare, NaN rules); "onnxmltools"
    like the onnxmltools conversion (float32 compare against nearest-rounded thresholds)."""
    X = np.asarray(X, dtype=np.float32)
    trees = parse_trees(model)
    t32s = float32_thresholds(trees, "onnxmltools")
    n, width = X.shape
    out = np.zeros((n, width + 1))
    rows = np.arange(n)
    for tree, t32 in zip(trees, t32s):
        out[:, width] += tree.expected[0]
        nan_left = nan_goes_left(tree, thresholds)
        node = np.zeros(n, np.int64)
        active = rows[~tree.is_leaf[node]]
        while len(active):
            nd = node[active]
            f = tree.feature[nd]
            x = X[active, f]
            if thresholds == "lightgbm":
                go_left = x.astype(np.float64) <= tree.threshold[nd]
            else:
                go_left = x <= t32[nd]
            go_left = np.where(np.isnan(x), nan_left[nd], go_left)
            child = np.where(go_left, tree.left[nd], tree.right[nd])
            out[active, f] += tree.expected[child] - tree.expected[nd]  # a row appears once per step
            node[active] = child
            active = active[~tree.is_leaf[child]]
    return out


def session(onnx_bytes: bytes, threads: int = 1) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])


def onnx_contributions(model_or_bytes: bytes | ort.InferenceSession, X: np.ndarray) -> np.ndarray:
    """Run the contributions graph: float32 [N, n_features + 1]."""
    sess = session(model_or_bytes) if isinstance(model_or_bytes, bytes) else model_or_bytes
    out = sess.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(X, dtype=np.float32)})[0]
    return np.asarray(out)


def parity(model: lgb.LGBMClassifier, onnx_bytes: bytes, X: np.ndarray,
           thresholds: ThresholdMode = "lightgbm") -> dict[str, float]:
    """Max abs errors on X: sum of ONNX contributions vs LightGBM raw margin, ONNX vs the reference walk."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    if not len(X):
        return {"margin_max_abs_diff": 0.0, "reference_max_abs_diff": 0.0}
    got = onnx_contributions(onnx_bytes, X).astype(np.float64)
    margin = np.asarray(model.predict(X, raw_score=True), dtype=np.float64)
    ref = reference_contributions(model, X, thresholds)
    return {"margin_max_abs_diff": float(np.max(np.abs(got.sum(axis=1) - margin))),
            "reference_max_abs_diff": float(np.max(np.abs(got - ref)))}


def booster_fingerprint(model: lgb.LGBMClassifier | lgb.Booster) -> str:
    """sha256 of the booster's text (best iteration): pairs a contributions artifact with its model."""
    booster = model.booster_ if isinstance(model, lgb.LGBMModel) else model
    return hashlib.sha256(booster.model_to_string().encode()).hexdigest()


def export_contributions(
    repo: Path,
    name: str,
    model: lgb.LGBMClassifier,
    feature_names: list[str],
    X_check: np.ndarray,
    *,
    explains: str = "churn",
    thresholds: ThresholdMode = "lightgbm",
    metrics: dict[str, Any] | None = None,
    training_window: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    data_fingerprint: str = "",
) -> Path:
    """Build the contributions graph, check parity on X_check, write models/<name>/<version>/."""
    t0 = time.perf_counter()
    onnx_bytes = contributions_onnx(model, len(feature_names), thresholds)
    checks = parity(model, onnx_bytes, X_check, thresholds)
    worst = max(checks.values())
    if not worst <= PARITY_TOLERANCE:
        raise ArtifactError(f"{name}: contributions parity {checks} exceeds {PARITY_TOLERANCE}", model=name)
    n_out = len(feature_names) + 1
    manifest = Manifest(
        name=name,
        kind=KIND,
        features=list(feature_names),
        inputs=[{"name": INPUT_NAME, "dtype": "float32", "shape": [-1, len(feature_names)]}],
        outputs=[{"name": OUTPUT_NAME, "dtype": "float32", "shape": [-1, n_out]}],
        training_window=dict(training_window or {}),
        metrics={**(metrics or {}), **{f"parity_{k}": v for k, v in checks.items()},
                 "parity_rows": int(len(X_check))},
        params={"explains": explains, "method": "saabas", "link": "logit", "bias_column": n_out - 1,
                "columns": [*feature_names, "bias"], "thresholds": thresholds,
                "booster_sha256": booster_fingerprint(model),
                "best_iteration": int(model.best_iteration_ or model.n_estimators), **(params or {})},
        data_fingerprint=data_fingerprint,
    )
    path = write_artifact(repo, manifest, {"model.onnx": onnx_bytes})
    log.info("exported %s -> %s (parity %s on %d rows, %.1fs)", name, path, checks, len(X_check),
             time.perf_counter() - t0)
    return path


def snap_onnx_thresholds(onnx_bytes: bytes, model: lgb.LGBMModel | lgb.Booster) -> bytes:
    """Rewrite an onnxmltools LightGBM conversion (binary, multiclass or regression) so its splits
    are exactly LightGBM's.

    Each BRANCH_LEQ value (nearest float32) is matched to its LightGBM threshold by (tree, feature,
    value) and replaced by the rounded-down float32; NaN directions follow LightGBM's rule."""
    trees = parse_trees(model, single_output=False)
    lookup: list[dict[tuple[int, float], tuple[float, int]]] = []
    for tree, near, down in zip(trees, float32_thresholds(trees, "onnxmltools"), float32_thresholds(trees)):
        table: dict[tuple[int, float], tuple[float, int]] = {}
        left = nan_goes_left(tree)
        for i in np.flatnonzero(~tree.is_leaf).tolist():
            key, val = (int(tree.feature[i]), float(near[i])), (float(down[i]), int(left[i]))
            if table.setdefault(key, val) != val:
                raise ArtifactError(f"tree has two splits on feature {key[0]} within one float32 step")
        lookup.append(table)
    onx = onnx.load_from_string(onnx_bytes)
    for node in onx.graph.node:
        if node.domain != "ai.onnx.ml" or node.op_type not in _TREE_OPS:
            continue
        attrs = {at.name: at for at in node.attribute}
        tids, fids = list(attrs["nodes_treeids"].ints), list(attrs["nodes_featureids"].ints)
        modes = [m.decode() for m in attrs["nodes_modes"].strings]
        values, tracks = list(attrs["nodes_values"].floats), list(attrs["nodes_missing_value_tracks_true"].ints)
        for j, mode in enumerate(modes):
            if mode == "LEAF":
                continue
            if mode != "BRANCH_LEQ" or tids[j] >= len(lookup):
                raise ArtifactError(f"unexpected tree node {mode} in tree {tids[j]}")
            hit = lookup[tids[j]].get((fids[j], float(np.float32(values[j]))))
            if hit is None:
                raise ArtifactError(f"no LightGBM split matches tree {tids[j]} feature {fids[j]} <= {values[j]}")
            values[j], tracks[j] = hit
        del attrs["nodes_values"].floats[:]
        attrs["nodes_values"].floats.extend(values)
        del attrs["nodes_missing_value_tracks_true"].ints[:]
        attrs["nodes_missing_value_tracks_true"].ints.extend(tracks)
    return onx.SerializeToString()
