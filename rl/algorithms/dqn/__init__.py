"""Deep Q-learning (double, dueling, prioritised, n-step): config, loss, learner, algorithm."""

from rl.algorithms.dqn.config import DQNConfig
from rl.algorithms.dqn.dqn import DQN

__all__ = ["DQN", "DQNConfig"]
