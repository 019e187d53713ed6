"""Policies: torch modules (encoders, heads) and action distributions."""

from rl.policies.distributions import (
    Categorical,
    DiagGaussian,
    Distribution,
    DistributionSpec,
    MultiCategorical,
    distribution_for,
)
from rl.policies.models import (
    ActorCritic,
    ModelConfig,
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
    "ModelConfig",
    "MultiCategorical",
    "NatureCNN",
    "QNetwork",
    "distribution_for",
    "flat_params",
    "load_flat_params",
    "num_flat_params",
]
