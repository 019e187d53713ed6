"""Small custom envs for algorithm tests (importable by worker processes)."""

import gymnasium as gym
import numpy as np


class MultiDiscreteEnv(gym.Env):
    """Reward 1 when both action components match the observed target bits."""

    def __init__(self, horizon: int = 20):
        self.observation_space = gym.spaces.Dict({
            "target": gym.spaces.MultiBinary(2),
            "noise": gym.spaces.Box(-1, 1, (2,), np.float32),
        })
        self.action_space = gym.spaces.MultiDiscrete([2, 2])
        self.horizon = horizon

    def _obs(self):
        self.target = self.np_random.integers(0, 2, 2).astype(np.int8)
        return {"target": self.target, "noise": self.np_random.uniform(-1, 1, 2).astype(np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        reward = float(np.all(np.asarray(action) == self.target))
        self.t += 1
        return self._obs(), reward, False, self.t >= self.horizon, {}


class MultiBinaryActionEnv(gym.Env):
    """An action space no algorithm supports."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.MultiBinary(3)

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, True, False, {}


class ImageEnv(gym.Env):
    """84x84x4 uint8 frames; reward for action 1 when the frame is bright."""

    observation_space = gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._frame(), {}

    def _frame(self):
        self.bright = bool(self.np_random.integers(0, 2))
        return np.full((84, 84, 4), 200 if self.bright else 20, np.uint8)

    def step(self, action):
        reward = float(int(action) == int(self.bright))
        self.t += 1
        return self._frame(), reward, False, self.t >= 10, {}
