"""The check every export ends with: the exported file against ``compute_actions``.

``random_observations`` draws valid observations of the env's own space (every Box
dimension within its bounds, at most 10 either side of the point nearest 0, so that
unbounded or huge ranges give finite network inputs; an action mask allows at least one
action of every sub-action). ``compare`` runs the exported graph's outputs against the
algorithm: greedy actions must be identical to ``Algorithm.compute_actions`` (Box
actions within the tolerance), and the values, logits or Q-values within ``1e-5`` of
the trained model in the training process (relative to the magnitude where that
exceeds 1; masked ``-inf`` entries must sit in the same places). A stochastic export
cannot match sampled actions row by row: its actions are checked to lie in the action
space and be allowed by the mask, its values and logits as above.

``compare_recurrent`` checks a recurrent graph (``rl.serve.graph``) step by step: the
observations are cut into ``steps`` consecutive batches (sequences of ``steps`` steps,
``len / steps`` of them), every sequence from the initial state; the file and the
driver's worker (``compute_actions(obs, state)``, previous rewards drawn at random for a
model that reads them) each carry their own state, and at every step the greedy actions
must be identical, the values, logits and every ``state_out`` within the tolerance. A
stochastic graph's sampled actions (and so a previous-action state) cannot match: both
sides then take the file's state at every step, and the sampled actions are checked to
be valid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces

from rl.envs.obs_layout import ACTION_MASK
from rl.envs.spaces import flatten_observations

__all__ = ["Agreement", "compare", "compare_recurrent", "random_observations"]

TOLERANCE = 1e-5


@dataclass
class Agreement:
    """The largest difference per output (``actions``: a count of differing rows for
    discrete actions under ``greedy``) and whether all are within tolerance."""

    observations: int
    max_diff: dict[str, float]
    mismatched_actions: int
    ok: bool

    def describe(self) -> str:
        """What disagrees: the differing greedy actions, the largest other difference."""
        parts = []
        if self.mismatched_actions:
            parts.append(f"{self.mismatched_actions} of {self.observations} greedy actions "
                         "differ")
        name, diff = max(((k, v) for k, v in self.max_diff.items()
                          if k != "actions" or not self.mismatched_actions),
                         key=lambda kv: kv[1])
        what = "sampled actions outside the action space or the mask" if \
            name == "actions" and np.isinf(diff) else f"{diff:.3g}"
        parts.append(f"largest difference in {name!r}: {what} (tolerance {TOLERANCE:g})")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {"observations": self.observations, "tolerance": TOLERANCE,
                "mismatched_actions": self.mismatched_actions,
                "max_diff": {k: float(v) for k, v in self.max_diff.items()}, "ok": self.ok}


def _sample(space: spaces.Space, rng: np.random.Generator, action_space: spaces.Space,
            key: str | None = None):
    if isinstance(space, spaces.Dict):
        return {k: _sample(s, rng, action_space, k) for k, s in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(_sample(s, rng, action_space) for s in space.spaces)
    if isinstance(space, spaces.Discrete):
        return np.int64(space.start + rng.integers(space.n))
    if isinstance(space, spaces.MultiDiscrete):
        return (space.start + rng.integers(space.nvec)).astype(space.dtype)
    if isinstance(space, spaces.MultiBinary):
        x = rng.integers(0, 2, space.shape).astype(space.dtype)
    else:
        low, high = space.low.astype(np.float64), space.high.astype(np.float64)
        center = np.clip(0.0, low, high)
        lo, hi = np.maximum(low, center - 10), np.minimum(high, center + 10)
        if np.issubdtype(space.dtype, np.integer):
            x = rng.integers(np.ceil(lo), np.floor(hi), endpoint=True)
        else:
            x = rng.uniform(lo, hi)
        x = x.astype(space.dtype)
    if key == ACTION_MASK:
        x = _allow_one(x, action_space, rng)
    return x


def _allow_one(mask: np.ndarray, action_space: spaces.Space, rng) -> np.ndarray:
    sizes = [int(action_space.n)] if isinstance(action_space, spaces.Discrete) else \
        [int(n) for n in np.ravel(action_space.nvec)]
    mask, offset = mask.copy(), 0
    for n in sizes:
        if not (mask[offset:offset + n] > 0.5).any():
            mask[offset + rng.integers(n)] = 1
        offset += n
    return mask


def random_observations(env_obs_space: spaces.Space, action_space: spaces.Space, n: int,
                        seed: int = 0):
    """``n`` valid observations in the env's format: a list for Dict/Tuple spaces (as
    ``compute_actions`` takes them), else an array ``[n, *shape]``."""
    rng = np.random.default_rng(seed)
    items = [_sample(env_obs_space, rng, action_space) for _ in range(n)]
    if isinstance(env_obs_space, spaces.Dict | spaces.Tuple):
        return items
    return np.stack(items)


def _value_diff(got: np.ndarray, want: np.ndarray) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return float("inf")
    inf_got, inf_want = np.isinf(got), np.isinf(want)
    if (inf_got != inf_want).any() or (np.sign(got[inf_got]) != np.sign(want[inf_want])).any():
        return float("inf")
    finite = ~inf_want
    if not finite.any():
        return 0.0
    diff = np.abs(got[finite] - want[finite]) / np.maximum(1.0, np.abs(want[finite]))
    return float(np.nan_to_num(diff, nan=np.inf).max())


def _allowed(actions: np.ndarray, action_space: spaces.Space, mask: np.ndarray | None) -> bool:
    if not all(action_space.contains(a) for a in actions):
        return False
    if mask is None:
        return True
    if isinstance(action_space, spaces.Discrete):
        return bool((mask[np.arange(len(actions)), actions - action_space.start] > 0.5).all())
    offsets = np.cumsum([0] + [int(n) for n in np.ravel(action_space.nvec)])[:-1]
    index = np.asarray(actions).reshape(len(actions), -1) - np.ravel(action_space.start) + offsets
    return bool((np.take_along_axis(mask, index, 1) > 0.5).all())


def _actions_diff(got: np.ndarray, ref: np.ndarray, action_space: spaces.Space
                  ) -> tuple[float, int]:
    """``(difference, mismatched rows)`` of greedy actions."""
    if isinstance(action_space, spaces.Box):
        return _value_diff(got, ref), 0
    rows = (got == ref).reshape(len(ref), -1).all(-1) if got.shape == ref.shape else \
        np.zeros(len(ref), bool)
    mismatched = int((~rows).sum())
    return float(mismatched), mismatched


def _within(diffs: dict[str, float], action_space: spaces.Space) -> bool:
    return all(v <= (0 if k == "actions" and not isinstance(action_space, spaces.Box)
                     else TOLERANCE) for k, v in diffs.items())


def compare_recurrent(target, run, graph, batch: np.ndarray, stochastic: bool,
                      steps: int, seed: int = 0):
    """Roll ``batch`` (flattened observations) through the exported file ``run`` (its
    inputs in order -> its outputs) and through the policy ``target``'s worker as
    ``steps`` steps of sequences; see the module docstring.

    Returns:
        ``(agreement, outputs, feeds)``: the file's outputs of the last step by name and
        the inputs it was given.
    """
    worker = target.worker
    policy = worker.policy
    n_seq = len(batch) // steps
    width = worker.spec.obs_space.shape[0] if len(worker.spec.obs_space.shape) == 1 else None
    rng = np.random.default_rng(seed + 1)
    k, n = graph.num_model_states, graph.num_states
    initial = [np.repeat(s[None], n_seq, axis=0) for s in policy.initial]
    file_state = [s.copy() for s in initial[:n]]
    ref_state = None  # compute_actions' state (None: the initial one)
    names = graph.output_names
    diffs: dict[str, float] = {}
    mismatched = 0
    split = target.model_spec.layout.split if target.model_spec.masked else None
    for t in range(steps):
        obs = np.ascontiguousarray(batch[t * n_seq:(t + 1) * n_seq])
        reward = np.zeros(n_seq, np.float32) if t == 0 else \
            rng.uniform(-1, 1, n_seq).astype(np.float32)
        feeds = [obs, *file_state] + ([reward] if graph.prev_reward else [])
        outputs = dict(zip(names, run(*feeds)))
        ref_obs = obs
        if width is not None and obs.shape[1] < width:  # a shared policy's padded rows
            ref_obs = np.zeros((n_seq, width), np.float32)
            ref_obs[:, : obs.shape[1]] = obs
        if stochastic and t > 0:  # both from the file's state
            ref_state = list(file_state) + ([reward] if graph.prev_reward else [])
        before = initial if ref_state is None else \
            list(ref_state[:n]) + ([reward] if graph.prev_reward else [])
        prev = {name: torch.from_numpy(np.ascontiguousarray(s))[:, None]
                for name, s in zip(policy.prev_inputs, before[k:])}
        with torch.no_grad():
            logits, values, _ = target.module(
                torch.from_numpy(worker.normalize(ref_obs))[:, None],
                tuple(torch.from_numpy(np.ascontiguousarray(s)) for s in before[:k]), **prev)
        actions, new = worker.compute_actions(ref_obs, False, ref_state,
                                              reward if graph.prev_reward else None)
        want = {"values": values[:, 0].numpy(), "logits": logits[:, 0].numpy()}
        for i in range(n if not stochastic else k):
            want[names[3 + i]] = new[i]
        step = {name: _value_diff(outputs[name], w) for name, w in want.items()}
        got_actions = np.asarray(outputs["actions"])
        if stochastic:
            mask = split(obs)[1] if split is not None else None
            step["actions"] = 0.0 if _allowed(got_actions, target.action_space, mask) \
                else float("inf")
        else:
            step["actions"], bad = _actions_diff(got_actions, np.asarray(actions),
                                                 target.action_space)
            mismatched += bad
        for name, v in step.items():
            diffs[name] = max(diffs.get(name, 0.0), v)
        file_state = [np.asarray(outputs[names[3 + i]]) for i in range(n)]
        ref_state = [np.asarray(s) for s in new]
    if not stochastic and not isinstance(target.action_space, spaces.Box):
        diffs["actions"] = float(mismatched)
    agreement = Agreement(n_seq * steps, diffs, mismatched,
                          _within(diffs, target.action_space))
    return agreement, outputs, feeds


def compare(target, outputs: dict[str, np.ndarray], env_obs, stochastic: bool) -> Agreement:
    """Check the exported graph's ``outputs`` (by name) on ``env_obs`` against the policy
    ``target`` (``rl.serve.target``) of the algorithm."""
    batch, _ = flatten_observations(target.env_obs_space, env_obs)
    # The driver-side worker is what compute_actions runs: its normalisation and model.
    worker = target.worker
    prepared = torch.from_numpy(worker.normalize(batch))
    with torch.no_grad():
        model_out = target.module(prepared)
    kind = target.model_spec.kind
    names = {"q": ["q_values"], "squashed_gaussian": ["logits"]}.get(kind, ["logits", "values"])
    want = dict(zip(names, [model_out] if len(names) == 1 else model_out))
    diffs = {name: _value_diff(outputs[name], want[name].numpy()) for name in names}
    got_actions = np.asarray(outputs["actions"])
    mismatched = 0
    if stochastic:
        mask = target.model_spec.layout.split(batch)[1] if target.model_spec.masked else None
        valid = _allowed(got_actions, target.action_space, mask)
        diffs["actions"] = 0.0 if valid else float("inf")
    else:
        diffs["actions"], mismatched = _actions_diff(
            got_actions, target.compute_actions(batch), target.action_space)
    return Agreement(len(batch), diffs, mismatched, _within(diffs, target.action_space))
