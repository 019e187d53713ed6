"""Proximal policy optimisation: config, loss, learner, algorithm."""

from rl.algorithms.ppo.config import PPOConfig
from rl.algorithms.ppo.ppo import PPO

__all__ = ["PPO", "PPOConfig"]
