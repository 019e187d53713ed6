"""Policies: the model contract (``ModelSpec``, ``register_model``), the built-in torch
models (encoders, heads) and the action distributions.

A model is a ``torch.nn.Module`` built as ``Cls(obs_space, action_space, num_outputs,
**model_kwargs)``; actor-critic models return ``(dist_inputs [B, num_outputs], values
[B])`` from ``forward(obs)``, Q-models ``q_values [B, n]``, SAC's actors ``dist_inputs
[B, 2 * dim(A)]`` and its critics ``forward(obs, actions) -> q [B]``. See
``rl.policies.model_spec`` for ``num_outputs`` per action space.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Imported on first use (PEP 562), so that ``import rl.policies`` (a worker unpickling a
# ``ModelSpec``) loads no torch: only the names of ``_TORCH`` need it.
_HOMES = {
    "DistributionSpec": "rl.policies.dist_spec",
    "distribution_for": "rl.policies.dist_spec",
    "ModelError": "rl.policies.model_spec",
    "ModelSpec": "rl.policies.model_spec",
    "register_model": "rl.policies.model_spec",
    **dict.fromkeys(["Categorical", "DiagGaussian", "Distribution", "MultiCategorical",
                     "SquashedGaussian"], "rl.policies.distributions"),
    **dict.fromkeys(["ActorCritic", "ContinuousQCritic", "NatureCNN", "QNetwork",
                     "SquashedGaussianActor", "flat_params", "load_flat_params",
                     "num_flat_params"], "rl.policies.models"),
}

if TYPE_CHECKING:
    from rl.policies.dist_spec import DistributionSpec, distribution_for
    from rl.policies.distributions import (
        Categorical,
        DiagGaussian,
        Distribution,
        MultiCategorical,
        SquashedGaussian,
    )
    from rl.policies.model_spec import ModelError, ModelSpec, register_model
    from rl.policies.models import (
        ActorCritic,
        ContinuousQCritic,
        NatureCNN,
        QNetwork,
        SquashedGaussianActor,
        flat_params,
        load_flat_params,
        num_flat_params,
    )


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'rl.policies' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_HOMES))


__all__ = [
    "ActorCritic",
    "Categorical",
    "ContinuousQCritic",
    "DiagGaussian",
    "Distribution",
    "DistributionSpec",
    "ModelError",
    "ModelSpec",
    "MultiCategorical",
    "NatureCNN",
    "QNetwork",
    "SquashedGaussian",
    "SquashedGaussianActor",
    "distribution_for",
    "flat_params",
    "load_flat_params",
    "num_flat_params",
    "register_model",
]
