"""Envs that fail on purpose, for the fault-tolerance tests (importable by workers)."""

from __future__ import annotations

import os
import time

import gymnasium as gym
from gymnasium.envs.classic_control import CartPoleEnv


class FlakyCartPole(CartPoleEnv):
    """CartPole whose ``step`` raises every ``fail_every`` steps of an instance."""

    def __init__(self, fail_every: int = 20, message: str = "simulator lost its connection"):
        super().__init__()
        self.fail_every = fail_every
        self.message = message
        self.steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps % self.fail_every == 0:
            raise ConnectionError(self.message)
        return super().step(action)


class HangingCartPole(CartPoleEnv):
    """CartPole whose ``step`` hangs forever once, in whichever instance first claims
    ``token`` (a file created with O_EXCL: exactly one process across workers wins)."""

    def __init__(self, token: str, hang_after: int = 5):
        super().__init__()
        self.token = token
        self.hang_after = hang_after
        self.steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps == self.hang_after and self._claim():
            while True:
                time.sleep(3600)
        return super().step(action)

    def _claim(self) -> bool:
        try:
            os.close(os.open(self.token, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True


class NoisyResetEnv(gym.Env):
    """An env that ignores its seed: a restored episode cannot be replayed exactly."""

    observation_space = gym.spaces.Box(-1e9, 1e9, (1,))
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset()  # drops the seed on purpose
        return self.np_random.normal(size=1).astype("float32"), {}

    def step(self, action):
        return self.np_random.normal(size=1).astype("float32"), 1.0, False, False, {}


class FlakyResetCartPole(CartPoleEnv):
    """CartPole whose second ``reset`` of an instance raises (the first one works)."""

    def __init__(self):
        super().__init__()
        self.resets = 0

    def reset(self, *, seed=None, options=None):
        self.resets += 1
        if self.resets == 2:
            raise RuntimeError("reset failed")
        return super().reset(seed=seed, options=options)
