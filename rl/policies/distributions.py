"""Action distributions over flat ``dist_inputs`` tensors produced by a policy head.

Each distribution is built from one ``[B, D]`` tensor (the same tensor IMPALA ships
as behaviour logits), so a batch can rebuild the behaviour distribution exactly.

* ``Categorical``      Discrete(n):      D = n logits.
* ``MultiCategorical`` MultiDiscrete(v): D = sum(v), independent categoricals, log-probs summed.
* ``DiagGaussian``     Box(d):           D = 2d (mean, log_std); log-probs summed over dims.
  The policy samples raw actions; ``env_actions`` clips them to the Box for the env,
  while the batch keeps the raw sample so log-probs stay exact.

Written directly on tensors rather than through ``torch.distributions``: the same
math without argument validation and object overhead on the per-step inference path
(``benchmarks/distributions.py`` measures the difference).

**Action masks** are applied here and only here: ``masked_logits`` sets the logits of
disallowed actions to ``-inf`` (``DistributionSpec.mask`` for a policy's
``dist_inputs``, the same function for a Q-head's values), so sampling, greedy
actions, log-probabilities, entropy and KL all see one masked distribution. A row (or,
for MultiDiscrete, a sub-action) with no allowed action is left unmasked rather than
made undefined. Entropy and KL treat ``-inf`` logits as probability 0 and stay finite.
"""

from __future__ import annotations

import abc
import math

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces

__all__ = [
    "Categorical",
    "DiagGaussian",
    "Distribution",
    "MultiCategorical",
    "distribution_for",
    "masked_logits",
]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class Distribution(abc.ABC):
    """Interface: ``sample``, ``deterministic``, ``log_prob``, ``entropy``, ``kl``."""

    def __init__(self, inputs: torch.Tensor):
        self.inputs = inputs

    @abc.abstractmethod
    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A random action per row."""

    @abc.abstractmethod
    def deterministic(self) -> torch.Tensor:
        """The greedy action per row (mode / mean)."""

    @abc.abstractmethod
    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """Log-probability ``[B]`` of ``actions``."""

    @abc.abstractmethod
    def entropy(self) -> torch.Tensor:
        """Entropy ``[B]``."""

    @abc.abstractmethod
    def kl(self, other: Distribution) -> torch.Tensor:
        """KL(self || other) ``[B]``."""


def _gumbel_argmax(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    # Gumbel-max: one uniform draw and an argmax, cheaper than multinomial for small B.
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
    return torch.argmax(logits - torch.log(-torch.log(u.clamp_min(1e-20))), dim=-1)


class Categorical(Distribution):
    """Softmax over ``n`` logits; actions int64 ``[B]``."""

    def __init__(self, inputs: torch.Tensor):
        super().__init__(inputs)
        self.logp_all = F.log_softmax(inputs, dim=-1)

    def sample(self, generator=None):
        return _gumbel_argmax(self.logp_all, generator)

    def deterministic(self):
        return torch.argmax(self.logp_all, dim=-1)

    def log_prob(self, actions):
        return self.logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def _finite_logp(self) -> torch.Tensor:
        # A masked (-inf) logit has probability 0 and adds 0 to entropy and KL: clamp it
        # to the dtype's lowest value so that 0 * logp is 0 (and its gradient finite)
        # instead of 0 * -inf = NaN.
        return self.logp_all.clamp_min(torch.finfo(self.logp_all.dtype).min)

    def entropy(self):
        logp = self._finite_logp()
        return -(logp.exp() * logp).sum(-1)

    def kl(self, other):
        logp = self._finite_logp()
        return (logp.exp() * (logp - other._finite_logp())).sum(-1)


class MultiCategorical(Distribution):
    """Independent categoricals with sizes ``nvec``; actions int64 ``[B, len(nvec)]``."""

    def __init__(self, inputs: torch.Tensor, nvec: tuple[int, ...]):
        super().__init__(inputs)
        self.nvec = tuple(int(n) for n in nvec)
        self.cats = [Categorical(x) for x in torch.split(inputs, self.nvec, dim=-1)]

    def sample(self, generator=None):
        return torch.stack([c.sample(generator) for c in self.cats], dim=-1)

    def deterministic(self):
        return torch.stack([c.deterministic() for c in self.cats], dim=-1)

    def log_prob(self, actions):
        actions = actions.long()
        return sum(c.log_prob(actions[..., i]) for i, c in enumerate(self.cats))

    def entropy(self):
        return sum(c.entropy() for c in self.cats)

    def kl(self, other):
        return sum(a.kl(b) for a, b in zip(self.cats, other.cats))


class DiagGaussian(Distribution):
    """Normal with diagonal covariance; inputs ``[B, 2d]`` = (mean, log_std)."""

    def __init__(self, inputs: torch.Tensor):
        super().__init__(inputs)
        self.mean, self.log_std = torch.chunk(inputs, 2, dim=-1)
        self.std = self.log_std.exp()

    def sample(self, generator=None):
        noise = torch.randn(
            self.mean.shape, generator=generator, dtype=self.mean.dtype, device=self.mean.device
        )
        return self.mean + self.std * noise

    def deterministic(self):
        return self.mean

    def log_prob(self, actions):
        z = (actions - self.mean) / self.std
        return (-0.5 * z.pow(2) - self.log_std - _LOG_SQRT_2PI).sum(-1)

    def entropy(self):
        return (self.log_std + 0.5 + _LOG_SQRT_2PI).sum(-1)

    def kl(self, other):
        var_ratio = (self.std / other.std).pow(2)
        t = ((self.mean - other.mean) / other.std).pow(2)
        return (0.5 * (var_ratio + t - 1.0) - torch.log(self.std / other.std)).sum(-1)


class DistributionSpec:
    """How to build the distribution for an action space, and its sizes.

    Attributes:
        input_dim: D, the width of ``dist_inputs``.
        action_shape, action_dtype: how actions are stored in batches.
    """

    def __init__(self, action_space: spaces.Space):
        self.action_space = action_space
        if isinstance(action_space, spaces.Discrete):
            self.kind, self.input_dim = "categorical", int(action_space.n)
            self.action_shape, self.action_dtype = (), np.int64
        elif isinstance(action_space, spaces.MultiDiscrete):
            self.nvec = tuple(int(n) for n in np.asarray(action_space.nvec).ravel())
            self.kind, self.input_dim = "multi_categorical", sum(self.nvec)
            self.action_shape, self.action_dtype = (len(self.nvec),), np.int64
        elif isinstance(action_space, spaces.Box):
            self.action_dim = int(np.prod(action_space.shape))
            self.kind, self.input_dim = "diag_gaussian", 2 * self.action_dim
            self.action_shape, self.action_dtype = (self.action_dim,), np.float32
            self.low = action_space.low.reshape(-1).astype(np.float32)
            self.high = action_space.high.reshape(-1).astype(np.float32)
        else:
            raise ValueError(f"no action distribution for {action_space}")
        if isinstance(action_space, spaces.Discrete):
            self.start = int(action_space.start)

    @property
    def is_continuous(self) -> bool:
        return self.kind == "diag_gaussian"

    def __call__(self, inputs: torch.Tensor) -> Distribution:
        if self.kind == "categorical":
            return Categorical(inputs)
        if self.kind == "multi_categorical":
            return MultiCategorical(inputs, self.nvec)
        return DiagGaussian(inputs)

    def mask(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``dist_inputs`` with the disallowed actions' logits at ``-inf``.

        Args:
            inputs: ``[B, D]`` distribution inputs.
            mask: ``[B, D]``, 1 (or True) where the action is allowed: ``[n]`` per row
                for Discrete(n), ``[sum(nvec)]`` for MultiDiscrete.
        """
        if self.kind == "diag_gaussian":
            raise ValueError("action masks apply to Discrete and MultiDiscrete actions only")
        return masked_logits(inputs, mask, self.nvec if self.kind == "multi_categorical"
                             else None)

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """Raw sampled actions ``[B, ...]`` -> what each env receives (clipped, reshaped)."""
        if self.kind == "diag_gaussian":
            clipped = np.clip(actions, self.low, self.high)
            return clipped.reshape((len(actions),) + self.action_space.shape)
        if self.kind == "categorical" and self.start:
            return actions + self.start
        if self.kind == "multi_categorical":
            start = np.asarray(self.action_space.start).ravel() if hasattr(self.action_space, "start") else 0
            return (actions + start).reshape((len(actions),) + self.action_space.shape)
        return actions


def masked_logits(logits: torch.Tensor, mask: torch.Tensor,
                  sizes: tuple[int, ...] | None = None) -> torch.Tensor:
    """``logits`` ``[B, D]`` with ``-inf`` where ``mask`` ``[B, D]`` is 0.

    ``sizes``: the sub-action widths of a MultiDiscrete space (None: one group of D).
    A group in which nothing is allowed keeps its logits (an all-masked row is a
    terminal or broken observation; it must not make the distribution undefined).
    """
    allowed = mask > 0.5
    groups = [allowed] if sizes is None else list(torch.split(allowed, list(sizes), dim=-1))
    some = torch.cat([g.any(-1, keepdim=True).expand_as(g) for g in groups], dim=-1)
    return logits.masked_fill(some & ~allowed, float("-inf"))


def distribution_for(action_space: spaces.Space) -> DistributionSpec:
    """The ``DistributionSpec`` for an action space."""
    return DistributionSpec(action_space)
