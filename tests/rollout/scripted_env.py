"""A scripted env for exact rollout tests: obs = [episode id, t], reward = t + 1.

Episode e lasts ``lengths[e % len(lengths)]`` steps and then terminates, unless a
time limit (``max_steps``) truncates it first.
"""

import gymnasium as gym
import numpy as np


class ScriptedEnv(gym.Env):
    def __init__(self, lengths=(3, 5), max_steps=None):
        self.lengths = tuple(lengths)
        self.max_steps = max_steps
        self.observation_space = gym.spaces.Box(-1e6, 1e6, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.episode = -1
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.episode = seed * 100 - 1
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return np.array([self.episode, self.t], np.float32)

    def step(self, action):
        self.t += 1
        length = self.lengths[self.episode % len(self.lengths)]
        terminated = self.t >= length
        truncated = not terminated and self.max_steps is not None and self.t >= self.max_steps
        return self._obs(), float(self.t), terminated, truncated, {}
