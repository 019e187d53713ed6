"""Policies: the model contract (``ModelSpec``, ``register_model``), the built-in torch
models (encoders, heads) and the action distributions.

A model is a ``torch.nn.Module`` built as ``Cls(obs_space, action_space, num_outputs,
**model_kwargs)``; actor-critic models return ``(dist_inputs [B, num_outputs], values
[B])`` from ``forward(obs)``, Q-models ``q_values [B, n]``. See
``rl.policies.model_spec`` for ``num_outputs`` per action space.
"""

from rl.policies.distributions import (
    Categorical,
    DiagGaussian,
    Distribution,
    DistributionSpec,
    MultiCategorical,
    distribution_for,
)
from rl.policies.model_spec import ModelError, ModelSpec, register_model
from rl.policies.models import (
    ActorCritic,
    NatureCNN,
    QNetwork,
    flat_params,
    load_flat_params,
    num_flat_params,
)

__all__ = [
    "ActorCritic",
    "Categorical",
    "DiagGaussian",
    "Distribution",
    "DistributionSpec",
    "ModelError",
    "ModelSpec",
    "MultiCategorical",
    "NatureCNN",
    "QNetwork",
    "distribution_for",
    "flat_params",
    "load_flat_params",
    "num_flat_params",
    "register_model",
]
