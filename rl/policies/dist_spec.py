"""``DistributionSpec``: the torch-free facts of an action space's distribution (its
kind, the width of its inputs, how actions are stored and handed to the env).

Building the distribution itself (``spec(inputs)``, ``spec.mask``) imports the torch
distributions of ``rl.policies.distributions``; everything else here runs on numpy
alone, so a worker whose model runs in numpy never loads torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from gymnasium import spaces

if TYPE_CHECKING:
    import torch

    from rl.policies.distributions import Distribution

__all__ = ["LOG_STD_MAX", "LOG_STD_MIN", "DistributionSpec", "distribution_for"]

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
"""The squashed Gaussian's log-std is clamped to this range: below it the log-prob
overflows float32, above it almost every sample lands on the bounds."""


class DistributionSpec:
    """How to build the distribution for an action space, and its sizes.

    Args:
        action_space: the env's action space.
        squashed: for a Box, the ``SquashedGaussian`` (actions in (-1, 1), rescaled to
            the bounds for the env) rather than the ``DiagGaussian``.

    Attributes:
        input_dim: D, the width of ``dist_inputs``.
        action_shape, action_dtype: how actions are stored in batches.
    """

    def __init__(self, action_space: spaces.Space, squashed: bool = False):
        self.action_space = action_space
        if squashed and not isinstance(action_space, spaces.Box):
            raise ValueError(f"a squashed Gaussian needs a Box action space, got {action_space}")
        if isinstance(action_space, spaces.Discrete):
            self.kind, self.input_dim = "categorical", int(action_space.n)
            self.action_shape, self.action_dtype = (), np.int64
        elif isinstance(action_space, spaces.MultiDiscrete):
            self.nvec = tuple(int(n) for n in np.asarray(action_space.nvec).ravel())
            self.kind, self.input_dim = "multi_categorical", sum(self.nvec)
            self.action_shape, self.action_dtype = (len(self.nvec),), np.int64
        elif isinstance(action_space, spaces.Box):
            self.action_dim = int(np.prod(action_space.shape))
            self.kind = "squashed_gaussian" if squashed else "diag_gaussian"
            self.input_dim = 2 * self.action_dim
            self.action_shape, self.action_dtype = (self.action_dim,), np.float32
            self.low = action_space.low.reshape(-1).astype(np.float32)
            self.high = action_space.high.reshape(-1).astype(np.float32)
        else:
            raise ValueError(f"no action distribution for {action_space}")
        if isinstance(action_space, spaces.Discrete):
            self.start = int(action_space.start)

    @property
    def is_continuous(self) -> bool:
        return self.kind in ("diag_gaussian", "squashed_gaussian")

    def __call__(self, inputs: torch.Tensor) -> Distribution:
        """The torch distribution over ``inputs [B, D]`` (imports torch)."""
        from rl.policies.distributions import (
            Categorical,
            DiagGaussian,
            MultiCategorical,
            SquashedGaussian,
        )

        if self.kind == "categorical":
            return Categorical(inputs)
        if self.kind == "multi_categorical":
            return MultiCategorical(inputs, self.nvec)
        if self.kind == "squashed_gaussian":
            return SquashedGaussian(inputs)
        return DiagGaussian(inputs)

    def mask(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``dist_inputs`` with the disallowed actions' logits at ``-inf``.

        Args:
            inputs: ``[B, D]`` distribution inputs.
            mask: ``[B, D]``, 1 (or True) where the action is allowed: ``[n]`` per row
                for Discrete(n), ``[sum(nvec)]`` for MultiDiscrete.
        """
        from rl.policies.distributions import masked_logits

        if self.kind == "diag_gaussian":
            raise ValueError("action masks apply to Discrete and MultiDiscrete actions only")
        return masked_logits(inputs, mask, self.nvec if self.kind == "multi_categorical"
                             else None)

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """Raw sampled actions ``[B, ...]`` -> what each env receives (clipped, reshaped)."""
        if self.kind == "squashed_gaussian":
            # (-1, 1) -> [low, high]; the clip only absorbs float rounding at the ends.
            scaled = self.low + 0.5 * (actions + 1.0) * (self.high - self.low)
            clipped = np.clip(scaled, self.low, self.high)
            return clipped.reshape((len(actions),) + self.action_space.shape)
        if self.kind == "diag_gaussian":
            clipped = np.clip(actions, self.low, self.high)
            return clipped.reshape((len(actions),) + self.action_space.shape)
        if self.kind == "categorical" and self.start:
            return actions + self.start
        if self.kind == "multi_categorical":
            start = np.asarray(self.action_space.start).ravel() if hasattr(self.action_space, "start") else 0
            return (actions + start).reshape((len(actions),) + self.action_space.shape)
        return actions


def distribution_for(action_space: spaces.Space) -> DistributionSpec:
    """The ``DistributionSpec`` for an action space."""
    return DistributionSpec(action_space)
