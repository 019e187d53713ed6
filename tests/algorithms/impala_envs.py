"""Tiny envs for the IMPALA smoke tests (importable by worker processes).

* ``MatchBitsEnv``: MultiDiscrete([2, 3]) actions; reward 1 when they match the two
  observed targets; truncated after ``horizon`` steps.
* ``FlashEnv``: 36x36x3 uint8 frames (the smallest the Nature CNN takes); reward
  for action 1 on a bright frame; terminates with probability 0.1, else truncates
  after ``horizon`` steps.
"""

import gymnasium as gym
import numpy as np


class MatchBitsEnv(gym.Env):
    def __init__(self, horizon: int = 8):
        self.observation_space = gym.spaces.Box(0.0, 2.0, (2,), np.float32)
        self.action_space = gym.spaces.MultiDiscrete([2, 3])
        self.horizon = horizon

    def _obs(self):
        self.target = np.array([self.np_random.integers(2), self.np_random.integers(3)])
        return self.target.astype(np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        reward = float(np.all(np.asarray(action) == self.target))
        self.t += 1
        return self._obs(), reward, False, self.t >= self.horizon, {}


class FlashEnv(gym.Env):
    observation_space = gym.spaces.Box(0, 255, (36, 36, 3), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, horizon: int = 6):
        self.horizon = horizon

    def _frame(self):
        self.bright = bool(self.np_random.integers(2))
        return np.full((36, 36, 3), 220 if self.bright else 30, np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._frame(), {}

    def step(self, action):
        reward = float(int(action) == int(self.bright))
        self.t += 1
        terminated = bool(self.np_random.random() < 0.1)
        return self._frame(), reward, terminated, not terminated and self.t >= self.horizon, {}
