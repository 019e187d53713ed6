"""The action distributions in numpy, for workers that run the built-in MLPs torch-free.

The same math as ``rl.policies.distributions`` on the same ``dist_inputs`` (so a
worker's log-probabilities equal the learner's torch ones on the same actions, which
keeps PPO's first-epoch ratio at 1), sampled from a ``numpy.random.Generator``:

* ``categorical`` / ``multi_categorical``: Gumbel-max over the log-softmax (``-inf``
  logits of masked actions are never drawn);
* ``diag_gaussian``: ``mean + std * N(0, 1)``;
* ``squashed_gaussian``: ``tanh`` of it, log-std clamped as ``SquashedGaussian`` does;
* ``epsilon_greedy``: DQN's exploration, uniform among the allowed actions.
"""

from __future__ import annotations

import math

import numpy as np

from rl.policies.dist_spec import LOG_STD_MAX, LOG_STD_MIN, DistributionSpec

__all__ = ["deterministic", "epsilon_greedy", "log_prob", "sample", "sample_with_log_prob"]

_LOG_SQRT_2PI = np.float32(0.5 * math.log(2 * math.pi))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    z = x - m
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _groups(spec: DistributionSpec, inputs: np.ndarray) -> list[np.ndarray]:
    if spec.kind == "multi_categorical":
        return np.split(inputs, np.cumsum(spec.nvec)[:-1], axis=-1)
    return [inputs]


def _gaussian(spec: DistributionSpec, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, log_std = np.split(inputs.astype(np.float32, copy=False), 2, axis=-1)
    if spec.kind == "squashed_gaussian":
        log_std = np.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)
    return mean, log_std


def sample(spec: DistributionSpec, inputs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random action per row of ``inputs [B, D]``: int64 ``[B]`` / ``[B, k]`` or
    float32 ``[B, d]``."""
    if spec.is_continuous:
        mean, log_std = _gaussian(spec, inputs)
        u = mean + np.exp(log_std) * rng.standard_normal(mean.shape, np.float32)
        return np.tanh(u) if spec.kind == "squashed_gaussian" else u
    picks = []
    for logits in _groups(spec, inputs):
        g = -np.log(-np.log(np.maximum(rng.random(logits.shape), 1e-20)))
        picks.append(np.argmax(_log_softmax(logits) + g, axis=-1))
    out = np.stack(picks, axis=-1) if spec.kind == "multi_categorical" else picks[0]
    return out.astype(np.int64)


def sample_with_log_prob(spec: DistributionSpec, inputs: np.ndarray, rng: np.random.Generator
                         ) -> tuple[np.ndarray, np.ndarray]:
    """``(sample(...), log_prob(...) of it)``, the same numbers as the two calls; for a
    categorical the log-softmax is computed once (the rollout worker's per-step path)."""
    if spec.kind != "categorical":
        actions = sample(spec, inputs, rng)
        return actions, log_prob(spec, inputs, actions)
    logp = _log_softmax(inputs.astype(np.float32, copy=False))
    g = -np.log(-np.log(np.maximum(rng.random(logp.shape), 1e-20)))
    actions = np.argmax(logp + g, axis=-1)
    return actions.astype(np.int64), logp[np.arange(len(actions)), actions]


def deterministic(spec: DistributionSpec, inputs: np.ndarray) -> np.ndarray:
    """The greedy action per row (mode; mean, squashed for SAC)."""
    if spec.is_continuous:
        mean = _gaussian(spec, inputs)[0]
        return np.tanh(mean) if spec.kind == "squashed_gaussian" else mean
    picks = [np.argmax(logits, axis=-1) for logits in _groups(spec, inputs)]
    out = np.stack(picks, axis=-1) if spec.kind == "multi_categorical" else picks[0]
    return out.astype(np.int64)


def log_prob(spec: DistributionSpec, inputs: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Log-probability float32 ``[B]`` of ``actions`` under ``inputs [B, D]``."""
    if spec.is_continuous:
        mean, log_std = _gaussian(spec, inputs)
        a = actions.astype(np.float32, copy=False)
        if spec.kind == "squashed_gaussian":
            eps = np.finfo(np.float32).eps
            u = np.arctanh(np.clip(a, -1.0 + eps, 1.0 - eps))
            z = (u - mean) * np.exp(-log_std)
            gauss = (-0.5 * z * z - log_std - _LOG_SQRT_2PI).sum(-1)
            two = np.float32(2.0)
            return gauss - (two * (np.float32(math.log(2.0)) - u
                                   - np.logaddexp(np.float32(0), -two * u))).sum(-1)
        z = (a - mean) / np.exp(log_std)
        return (-0.5 * z * z - log_std - _LOG_SQRT_2PI).sum(-1)
    acts = actions.astype(np.int64).reshape(len(actions), -1)
    total = np.zeros(len(actions), np.float32)
    for k, logits in enumerate(_groups(spec, inputs)):
        logp = _log_softmax(logits.astype(np.float32, copy=False))
        total += np.take_along_axis(logp, acts[:, k:k + 1], axis=-1)[:, 0]
    return total


def epsilon_greedy(q_values: np.ndarray, epsilon: float, rng: np.random.Generator,
                   allowed: np.ndarray | None = None) -> np.ndarray:
    """DQN's actions int64 ``[B]``: the greedy one, or with probability ``epsilon`` a
    uniform one among the ``allowed [B, n]`` (all of them where none is allowed)."""
    n_rows, n = q_values.shape
    greedy = np.argmax(q_values, axis=-1)
    explore = rng.random(n_rows) < epsilon
    if allowed is None:
        random = rng.integers(n, size=n_rows)
    else:
        allowed = allowed > 0.5
        allowed = allowed | ~allowed.any(-1, keepdims=True)
        random = np.argmax(np.where(allowed, rng.random((n_rows, n)), -1.0), axis=-1)
    return np.where(explore, random, greedy).astype(np.int64)
