"""Action distributions over flat ``dist_inputs`` tensors produced by a policy head.

Each distribution is built from one ``[B, D]`` tensor (the same tensor IMPALA ships
as behaviour logits), so a batch can rebuild the behaviour distribution exactly.

* ``Categorical``      Discrete(n):      D = n logits.
* ``MultiCategorical`` MultiDiscrete(v): D = sum(v), independent categoricals, log-probs summed.
* ``DiagGaussian``     Box(d):           D = 2d (mean, log_std); log-probs summed over dims.
  The policy samples raw actions; ``env_actions`` clips them to the Box for the env,
  while the batch keeps the raw sample so log-probs stay exact.
* ``SquashedGaussian`` Box(d), squashed: D = 2d (mean, log_std of the Gaussian before
  ``tanh``); actions lie in (-1, 1) and ``env_actions`` rescales them to the Box's
  bounds (SAC; Haarnoja et al. 2018, arXiv:1812.05905, appendix C).

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

import torch
import torch.nn.functional as F

from rl.policies.dist_spec import (  # DistributionSpec re-exported: its home is dist_spec
    LOG_STD_MAX,
    LOG_STD_MIN,
    DistributionSpec,
)

__all__ = [
    "Categorical",
    "DiagGaussian",
    "Distribution",
    "DistributionSpec",
    "MultiCategorical",
    "SquashedGaussian",
    "masked_logits",
    "squashed_log_prob",
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




def squashed_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Log-density ``[B]`` of ``a = tanh(u)`` where ``u ~ N(mean, exp(log_std))``, ``[B, d]``.

    The change of variables subtracts ``log(1 - tanh(u)^2)`` per dimension, written as
    ``2 * (log 2 - u - softplus(-2u))``: the same value, but finite even where
    ``tanh(u)`` rounds to +-1 in float32 (``|u| > ~9``).
    """
    z = (u - mean) * torch.exp(-log_std)
    gaussian = (-0.5 * z.pow(2) - log_std - _LOG_SQRT_2PI).sum(-1)
    return gaussian - (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)


class SquashedGaussian(Distribution):
    """``tanh`` of a diagonal Gaussian; inputs ``[B, 2d]`` = (mean, log_std) before the
    squash, log_std clamped to ``[LOG_STD_MIN, LOG_STD_MAX]``; actions float ``[B, d]``
    in (-1, 1).

    ``rsample_with_log_prob`` is the reparameterised draw SAC's losses differentiate
    through; ``log_prob`` of a given action inverts the squash (``atanh``, clamped just
    inside the bounds) and is exact except within ~1e-6 of them.
    """

    def __init__(self, inputs: torch.Tensor):
        super().__init__(inputs)
        self.mean, log_std = torch.chunk(inputs, 2, dim=-1)
        self.log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def _noise(self, generator: torch.Generator | None) -> torch.Tensor:
        return torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype,
                           device=self.mean.device)

    def rsample_with_log_prob(self, generator: torch.Generator | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(actions [B, d], log_prob [B])``, differentiable in the inputs."""
        u = self.mean + self.log_std.exp() * self._noise(generator)
        return torch.tanh(u), squashed_log_prob(u, self.mean, self.log_std)

    def sample(self, generator=None):
        return torch.tanh(self.mean + self.log_std.exp() * self._noise(generator))

    def deterministic(self):
        return torch.tanh(self.mean)

    def log_prob(self, actions):
        eps = torch.finfo(actions.dtype).eps
        u = torch.atanh(actions.clamp(-1.0 + eps, 1.0 - eps))
        return squashed_log_prob(u, self.mean, self.log_std)

    def entropy(self):
        """A one-sample estimate, ``-log_prob`` of a fresh draw (no closed form)."""
        return -self.rsample_with_log_prob()[1]

    def kl(self, other):
        """Exact: ``tanh`` is a bijection, and KL is invariant under one, so this is the
        KL of the two Gaussians before the squash (with the clamped log-stds)."""
        return DiagGaussian(torch.cat([self.mean, self.log_std], -1)).kl(
            DiagGaussian(torch.cat([other.mean, other.log_std], -1)))


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
