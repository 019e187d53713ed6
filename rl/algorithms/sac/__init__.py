"""Soft Actor-Critic (twin Q, automatic entropy tuning): config, losses, learner, algorithm."""

from rl.algorithms.sac.config import SACConfig
from rl.algorithms.sac.sac import SAC

__all__ = ["SAC", "SACConfig"]
