"""Stateless CartPole: CartPole-v1 without its two velocities, a task that needs memory.

The observation is the cart position and the pole angle only (``Box(2)``); the
dynamics, reward, termination and 500-step limit are CartPole-v1's. A feed-forward
policy cannot tell which way the pole is moving, so it cannot balance it for long; a
recurrent one (``use_lstm``) can. Registered with gymnasium as
``StatelessCartPole-v1`` (so ``--env StatelessCartPole`` works) when ``rl.envs`` is
imported.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

__all__ = ["ENV_ID", "StatelessCartPole"]

ENV_ID = "StatelessCartPole-v1"


class StatelessCartPole(CartPoleEnv):
    """CartPole whose observation is ``[x, theta]``: the velocities are left out."""

    def __init__(self, render_mode: str | None = None):
        super().__init__(render_mode=render_mode)
        high = self.observation_space.high[[0, 2]]
        self.observation_space = gym.spaces.Box(-high, high, dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        return obs[[0, 2]], info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs[[0, 2]], reward, terminated, truncated, info


def register() -> None:
    """Register ``StatelessCartPole-v1`` with gymnasium (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point=f"{__name__}:StatelessCartPole",
                     max_episode_steps=500, reward_threshold=475.0)
