"""Policies: the model contract (``ModelSpec``, ``register_model``), the built-in torch
models (encoders, heads) and the action distributions.

A model is a ``torch.nn.Module`` built as ``Cls(obs_space, action_space, num_outputs,
**model_kwargs)``; actor-critic models return ``(dist_inputs [B, num_outputs], values
[B])`` from ``forward(obs)``, Q-models ``q_values [B, n]``, SAC's actors ``dist_inputs
[B, 2 * dim(A)]`` and its critics ``forward(obs, actions) -> q [B]``. See
``rl.policies.model_spec`` for ``num_outputs`` per action space.
"""

from rl.policies.distributions import (
    Categorical,
    DiagGaussian,
    Distribution,
    DistributionSpec,
    MultiCategorical,
    SquashedGaussian,
    distribution_for,
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
