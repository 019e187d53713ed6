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

A recurrent policy (``use_lstm``, or a model with ``initial_state``) exports one step
(``rl.serve.graph.RecurrentInferenceGraph``): its state tensors are the extra inputs
``state_in_0 ..`` and outputs ``state_out_0 ..`` (the previous action of
``lstm_use_prev_action`` is one more state tensor; the previous reward of
``lstm_use_prev_reward`` is the input ``prev_rewards``), every one with the dynamic batch
dimension first. The sidecar's ``state`` lists them with their shapes (without the
batch), dtypes and the initial state (what ``initial_state`` returns, zeros for the
previous action), so a client without torch can start an episode; the check rolls the
observations through both as sequences, carrying the state (``rl.serve.agreement``).

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
from rl.serve.agreement import Agreement, compare, compare_recurrent, random_observations
from rl.serve.graph import InferenceGraph, RecurrentInferenceGraph
from rl.serve.target import policy_target

__all__ = ["FORMATS", "AgreementError", "ExportResult", "MissingExtraError", "export_policy",
           "space_to_json"]

INPUT = "obs"
CHECK_OBSERVATIONS = 1000
RECURRENT_STEPS = 10  # a recurrent check: CHECK_OBSERVATIONS / 10 sequences of 10 steps
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
    if stochastic and target.model_spec.kind == "q":
        raise ConfigError(f"--stochastic: {algo.name}'s policy is the greedy argmax of its "
                          "Q-values (epsilon exploration is for training only); export it "
                          "without --stochastic")
    if target.model_spec.recurrent:
        policy_state = worker.policy
        return RecurrentInferenceGraph(
            model, target.action_space, stats, target.mask_columns, stochastic,
            num_model_states=policy_state.num_model_states,
            prev_inputs=target.model_spec.prev_inputs).eval()
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


def _input_names(graph: InferenceGraph) -> list[str]:
    return getattr(graph, "input_names", [INPUT])


def _write_onnx(graph: InferenceGraph, example: tuple[torch.Tensor, ...], path: str):
    onnx = _require("onnx")
    _require("onnxscript")
    ort = _require("onnxruntime")
    names = _input_names(graph)
    # One batch symbol for every input: a state's rows are the observations'.
    batch = torch.export.Dim("batch") if len(example) > 1 else torch.export.Dim.DYNAMIC
    with _quiet(), torch.no_grad():
        torch.onnx.export(graph, example, path, input_names=names,
                          output_names=graph.output_names, dynamo=True,
                          dynamic_shapes=({0: batch},) if len(example) == 1 else
                          ({0: batch}, tuple({0: batch} for _ in example[1:])),
                          external_data=False)
    # The exporter names the dynamic dimension after its symbol (s0, s6...): call it batch.
    model = onnx.load(path)
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(model, path)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    def run(*arrays: np.ndarray) -> list[np.ndarray]:
        return session.run(None, dict(zip(names, arrays)))
    return run


def _write_torchscript(graph: InferenceGraph, example: tuple[torch.Tensor, ...], path: str):
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(graph, example, check_trace=False)
    traced.save(path)
    with _quiet():
        loaded = torch.jit.load(path)

    def run(*arrays: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            return [t.numpy() for t in loaded(*(torch.from_numpy(a) for a in arrays))]
    return run


def _state_spec(graph: RecurrentInferenceGraph, worker, steps: int) -> dict[str, Any]:
    """The sidecar's ``state``: each state tensor's names, shape, dtype and initial value."""
    from rl.serve.graph import PREV_REWARDS_INPUT, STATE_IN, STATE_OUT

    initial = worker.policy.initial[: graph.num_states]
    roles = ["model"] * graph.num_model_states + ["prev_actions"] * graph.prev_action
    return {
        "tensors": [{"input": STATE_IN.format(i), "output": STATE_OUT.format(i),
                     "role": role, "shape": list(x.shape), "dtype": str(x.dtype),
                     "initial": x.tolist()}
                    for i, (x, role) in enumerate(zip(initial, roles))],
        "prev_rewards": PREV_REWARDS_INPUT if graph.prev_reward else None,
        "steps_checked": steps,
    }


def _io(name: str, array: np.ndarray) -> dict[str, Any]:
    return {"name": name, "shape": ["batch", *array.shape[1:]], "dtype": str(array.dtype)}


def export_policy(algo, path: str, fmt: str, *, stochastic: bool = False,
                  checkpoint: str | None = None, observations: int = CHECK_OBSERVATIONS,
                  seed: int = 0, policy: str | None = None) -> ExportResult:
    """Export ``algo``'s policy to ``path`` (``onnx`` or ``torchscript``), check it and
    write ``path + ".json"``; see the module docstring. ``policy``: which policy of a
    multi-agent run (None: the only one).

    Raises:
        ConfigError: an unknown format, a multi-agent run of several policies and no ``policy``,
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
    recurrent = isinstance(graph, RecurrentInferenceGraph)
    extra = [] if not recurrent else [
        np.repeat(s[None], _TRACE_BATCH, axis=0) for s in worker.policy.initial[
            : graph.num_states]] + ([np.zeros(_TRACE_BATCH, np.float32)]
                                    if graph.prev_reward else [])
    example = tuple(torch.from_numpy(np.ascontiguousarray(a))
                    for a in [batch[:_TRACE_BATCH], *extra])
    writer = _write_onnx if fmt == "onnx" else _write_torchscript
    run = writer(graph, example, path)
    steps = min(RECURRENT_STEPS, len(batch))
    try:
        if recurrent:
            agreement, outputs, feeds = compare_recurrent(target, run, graph, batch,
                                                          stochastic, steps, seed)
        else:
            outs = run(batch)
            feeds = [batch]
    except Exception as e:
        raise AgreementError(
            f"the exported {fmt} file does not run on a batch of "
            f"{len(batch) // steps if recurrent else len(batch)} observations "
            f"(traced with {_TRACE_BATCH}): {type(e).__name__}: {str(e).splitlines()[0]}; a "
            "model that computes with len(obs) fixes the batch size under torch.jit.trace: "
            "use obs.shape[0]") from None
    if not recurrent:
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
        "inputs": [_io(n, a) for n, a in zip(_input_names(graph), feeds)],
        "outputs": [_io(n, outputs[n]) for n in graph.output_names],
        "state": _state_spec(graph, worker, steps) if recurrent else None,
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
