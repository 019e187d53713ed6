"""rl: reinforcement learning with actors, an object store and learners.

Public API::

    from rl import PPOConfig
    algo = PPOConfig().environment("CartPole-v1").build()
    result = algo.train()
"""

from rl.algorithms.algorithm import Algorithm
from rl.algorithms.impala import IMPALAConfig
from rl.algorithms.ppo import PPOConfig
from rl.config import AlgorithmConfig, ConfigError
from rl.envs import register_env

__version__ = "0.1.0"

__all__ = ["Algorithm", "AlgorithmConfig", "ConfigError", "IMPALAConfig", "PPOConfig", "register_env"]
