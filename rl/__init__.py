"""rl: reinforcement learning with actors, an object store and learners.

Public API::

    from rl import PPOConfig
    algo = PPOConfig().environment("CartPole-v1").build()
    result = algo.train()

Names load on first use, so ``import rl.runtime`` or ``rl --help`` do not pay for
importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Algorithm": "rl.algorithms.algorithm",
    "AlgorithmConfig": "rl.config",
    "CallbackError": "rl.callbacks",
    "Callbacks": "rl.callbacks",
    "Episode": "rl.callbacks",
    "ConfigError": "rl.config",
    "DQNConfig": "rl.algorithms.dqn",
    "IMPALAConfig": "rl.algorithms.impala",
    "PPOConfig": "rl.algorithms.ppo",
    "SACConfig": "rl.algorithms.sac",
    "register_env": "rl.envs",
    "register_model": "rl.policies",
}

__all__ = [
    "Algorithm",
    "AlgorithmConfig",
    "CallbackError",
    "Callbacks",
    "ConfigError",
    "DQNConfig",
    "Episode",
    "IMPALAConfig",
    "PPOConfig",
    "SACConfig",
    "register_env",
    "register_model",
]

if TYPE_CHECKING:
    from rl.algorithms.algorithm import Algorithm
    from rl.algorithms.dqn import DQNConfig
    from rl.algorithms.impala import IMPALAConfig
    from rl.algorithms.ppo import PPOConfig
    from rl.algorithms.sac import SACConfig
    from rl.callbacks import CallbackError, Callbacks, Episode
    from rl.config import AlgorithmConfig, ConfigError
    from rl.envs import register_env
    from rl.policies import register_model


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
