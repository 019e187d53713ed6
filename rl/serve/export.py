"""``rl export``: a trained policy as one ONNX or TorchScript file plus a JSON sidecar.

``export_policy(algo, path, fmt)`` builds the ``InferenceGraph`` (``rl.serve.graph``:
normalisation, model, action masks, greedy or sampled action, bounds and offsets
folded in), writes it, runs the written file on 1,000 random valid observations
against ``Algorithm.compute_actions`` (``rl.serve.agreement``) and writes
``FILE.json`` describing the spaces and every input and output. A failed check raises
``AgreementError`` naming the largest difference (the files stay, for inspection).

The graph's first (only) input ``obs`` is the prepared observation batch
``[batch, *shape]``: the env's observation flattened as ``gymnasium.spaces.flatten``
does for Dict/Tuple spaces (keys in the space's order; the sidecar's
``observation_layout`` gives each key's columns), float32 (images: their own dtype).
The first output is ``actions``.

ONNX goes through the torch.export-based ("dynamo") exporter: it traces shapes
symbolically, so a model that computes with ``len(obs)`` or ``x.shape[0]`` keeps a
dynamic batch size; the legacy TorchScript-based exporter is deprecated in torch 2.x and
bakes such batch sizes in as constants. It needs ``onnxscript`` (in ``rl[export]``).
TorchScript goes through ``torch.jit.trace``, which cannot follow ``len(obs)`` (it
records the traced batch size): models exported to TorchScript must use
``obs.shape[0]``; the agreement check, run on another batch size than the trace,
reports a model that does not.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from rl.config import ConfigError
from rl.serve import FORMATS
from rl.serve.agreement import Agreement, compare, random_observations
from rl.serve.graph import InferenceGraph
from rl.serve.target import policy_target

__all__ = ["FORMATS", "AgreementError", "ExportResult", "MissingExtraError", "export_policy",
           "space_to_json"]

INPUT = "obs"
CHECK_OBSERVATIONS = 1000
_TRACE_BATCH = 3  # not the check's batch size, so a baked-in batch size shows


class MissingExtraError(ConfigError):
    """An optional package the export needs is not installed."""


class AgreementError(RuntimeError):
    """The exported file and ``compute_actions`` disagree."""


@dataclass
class ExportResult:
    """What ``export_policy`` wrote and how well the file agreed."""

    path: str
    sidecar: str
    agreement: Agreement


def space_to_json(space: spaces.Space) -> dict[str, Any]:
    """A JSON description of a gymnasium space (``null`` bounds: unbounded)."""
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_json(s) for k, s in space.spaces.items()}}
    if isinstance(space, spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_json(s) for s in space.spaces]}
    out: dict[str, Any] = {"type": type(space).__name__, "shape": list(space.shape),
                           "dtype": str(space.dtype)}
    if isinstance(space, spaces.Discrete):
        out.update(n=int(space.n), start=int(space.start))
    elif isinstance(space, spaces.MultiDiscrete):
        out.update(nvec=np.asarray(space.nvec).tolist(), start=np.asarray(space.start).tolist())
    elif isinstance(space, spaces.Box):
        def bound(a):
            return [None if not np.isfinite(v) else v.item() for v in np.ravel(a)]
        out.update(low=bound(space.low), high=bound(space.high))
    return out


def build_graph(algo, stochastic: bool = False, policy: str | None = None) -> InferenceGraph:
    """The inference graph of ``algo``'s current weights and observation filter (of its
    policy ``policy``: None, the only one; see ``rl.serve.target``)."""
    import copy

    target = policy_target(algo, policy)
    worker = target.worker  # compute_actions' own model and filter
    model = copy.deepcopy(target.module).eval()
    filt = worker.obs_filter
    stats = None if filt is None else (filt.mean, filt.var, filt.clip, filt.eps)
    if target.model_spec.recurrent:
        raise ConfigError(f"{algo.name}'s policy is recurrent (use_lstm): rl export writes "
                          "feed-forward policies only so far; the state as extra inputs and "
                          "outputs is not exported yet")
    if stochastic and target.model_spec.kind == "q":
        raise ConfigError(f"--stochastic: {algo.name}'s policy is the greedy argmax of its "
                          "Q-values (epsilon exploration is for training only); export it "
                          "without --stochastic")
    return InferenceGraph(model, target.model_spec.kind, target.action_space, stats,
                          target.mask_columns, stochastic).eval()


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise MissingExtraError(f"exporting to ONNX needs the {module!r} package: "
                                "pip install 'rl[export]'") from None


@contextlib.contextmanager
def _quiet():
    """The exporters' deprecation and progress chatter is not the user's business."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo",
                                                "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), open(os.devnull, "w") as null, \
                contextlib.redirect_stdout(null):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _write_onnx(graph: InferenceGraph, example: torch.Tensor, path: str):
    onnx = _require("onnx")
    _require("onnxscript")
    ort = _require("onnxruntime")
    with _quiet(), torch.no_grad():
        torch.onnx.export(graph, (example,), path, input_names=[INPUT],
                          output_names=graph.output_names, dynamo=True,
                          dynamic_shapes={"obs": {0: torch.export.Dim.DYNAMIC}},
                          external_data=False)
    # The exporter names the dynamic dimension after its symbol (s0, s6...): call it batch.
    model = onnx.load(path)
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(model, path)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    def run(batch: np.ndarray) -> list[np.ndarray]:
        return session.run(None, {INPUT: batch})
    return run


def _write_torchscript(graph: InferenceGraph, example: torch.Tensor, path: str):
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(graph, (example,), check_trace=False)
    traced.save(path)
    with _quiet():
        loaded = torch.jit.load(path)

    def run(batch: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            return [t.numpy() for t in loaded(torch.from_numpy(batch))]
    return run


def _io(name: str, array: np.ndarray) -> dict[str, Any]:
    return {"name": name, "shape": ["batch", *array.shape[1:]], "dtype": str(array.dtype)}


def export_policy(algo, path: str, fmt: str, *, stochastic: bool = False,
                  checkpoint: str | None = None, observations: int = CHECK_OBSERVATIONS,
                  seed: int = 0, policy: str | None = None) -> ExportResult:
    """Export ``algo``'s policy to ``path`` (``onnx`` or ``torchscript``), check it and
    write ``path + ".json"``; see the module docstring. ``policy``: which policy of a
    multi-agent run (None: the only one).

    Raises:
        ConfigError: an unknown format, a recurrent policy (not exported yet), a
            multi-agent run of several policies and no ``policy``,
            ``stochastic`` for a Q-model, or (as
            ``MissingExtraError``) onnx/onnxruntime missing.
        AgreementError: the file does not run on a batch of ``observations`` or its
            outputs disagree with the algorithm's.
    """
    from rl import __version__

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    graph = build_graph(algo, stochastic, policy)
    target = policy_target(algo, policy)
    worker = target.worker
    env_obs = random_observations(target.env_obs_space, target.action_space, observations,
                                  seed)
    from rl.envs.spaces import flatten_observations

    batch = np.ascontiguousarray(flatten_observations(target.env_obs_space, env_obs)[0],
                                 worker.obs_dtype)
    example = torch.from_numpy(batch[:_TRACE_BATCH].copy())
    writer = _write_onnx if fmt == "onnx" else _write_torchscript
    run = writer(graph, example, path)
    try:
        outs = run(batch)
    except Exception as e:
        raise AgreementError(
            f"the exported {fmt} file does not run on a batch of {len(batch)} observations "
            f"(traced with {_TRACE_BATCH}): {type(e).__name__}: {str(e).splitlines()[0]}; a "
            "model that computes with len(obs) fixes the batch size under torch.jit.trace: "
            "use obs.shape[0]") from None
    outputs = dict(zip(graph.output_names, outs))
    agreement = compare(target, outputs, env_obs, stochastic)
    sidecar = path + ".json"
    layout = target.model_spec.layout
    meta = {
        "format": fmt, "file": os.path.basename(path), "rl_version": __version__,
        "algorithm": algo.name, "env": algo.config.env,
        "checkpoint": None if checkpoint is None else os.path.abspath(checkpoint),
        "stochastic": stochastic,
        "policy": target.pid, "agents": target.agents,
        "observation_space": space_to_json(target.env_obs_space),
        "prepared_observation_space": space_to_json(target.obs_space),
        "action_space": space_to_json(target.action_space),
        "observation_layout": None if layout is None else {
            "flatten": "gymnasium.spaces.flatten",
            "keys": [{"key": k, "start": a, "stop": b, "shape": None if s is None else list(s)}
                     for k, a, b, s in layout.keys],
            "action_mask": None if layout.mask is None else list(layout.mask)},
        "normalization": "folded in" if graph.normalize else None,
        "inputs": [_io(INPUT, batch)],
        "outputs": [_io(n, outputs[n]) for n in graph.output_names],
        "agreement": agreement.to_dict(),
    }
    with open(sidecar, "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    if not agreement.ok:
        raise AgreementError(f"{path} disagrees with compute_actions on "
                             f"{agreement.observations} random observations: "
                             f"{agreement.describe()}")
    return ExportResult(path, sidecar, agreement)
