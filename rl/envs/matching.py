"""MatchingGame: a small cooperative PettingZoo Parallel env whose optimum is known.

Each step every live agent picks one of ``num_actions`` actions; when all live agents
picked the same one, each of them gets reward 1, else 0. An agent sees the previous
actions of all agents (one-hot, zeros for an agent that is not there) and the fraction
of the episode gone, so agents can settle on a convention. Episodes are
``episode_length`` steps (a truncation); the best return is ``episode_length`` per
agent, ``num_agents * episode_length`` summed.

``lifetimes`` makes agents come and go: ``{agent: [first, last]}`` keeps the agent out
of ``agents`` before step ``first`` and terminates it after its action at step ``last``
(a true termination, unlike the episode's end). It is the test bed for per-agent
termination, late arrivals and padding.

Registered as ``MatchingGame-v0`` (``rl.register_env``), so ``rl train --algo ppo --env
MatchingGame-v0`` works without PettingZoo installed. The class follows the Parallel API
without inheriting PettingZoo's base class.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

__all__ = ["ENV_ID", "MatchingGame"]

ENV_ID = "MatchingGame-v0"


class MatchingGame:
    """``num_agents`` agents rewarded for choosing the same action (Parallel API)."""

    metadata = {"name": "matching_game_v0", "render_modes": []}

    def __init__(self, num_agents: int = 2, num_actions: int = 3, episode_length: int = 8,
                 lifetimes: dict[str, list[int]] | None = None):
        if num_agents < 1 or num_actions < 1 or episode_length < 1:
            raise ValueError("MatchingGame needs num_agents, num_actions and episode_length "
                             f">= 1, got {num_agents}, {num_actions}, {episode_length}")
        self.possible_agents = [f"agent_{i}" for i in range(num_agents)]
        self.num_actions = num_actions
        self.episode_length = episode_length
        self.lifetimes = {a: (0, episode_length - 1) for a in self.possible_agents}
        for agent, (first, last) in (lifetimes or {}).items():
            if agent not in self.lifetimes or not 0 <= first <= last < episode_length:
                raise ValueError(f"lifetimes[{agent!r}] = {[first, last]}: agents are "
                                 f"{self.possible_agents}, steps 0..{episode_length - 1}")
            self.lifetimes[agent] = (int(first), int(last))
        size = num_agents * num_actions + 1
        self._obs_space = spaces.Box(0.0, 1.0, (size,), np.float32)
        self._action_space = spaces.Discrete(num_actions)
        self.agents: list[str] = []
        self._t = 0
        self._last = np.zeros(size, np.float32)

    @property
    def unwrapped(self) -> MatchingGame:
        return self

    @property
    def num_agents(self) -> int:
        return len(self.agents)

    @property
    def max_num_agents(self) -> int:
        return len(self.possible_agents)

    def observation_space(self, agent: str) -> spaces.Box:
        return self._obs_space

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._action_space

    def _live(self, t: int) -> list[str]:
        return [a for a in self.possible_agents
                if self.lifetimes[a][0] <= t <= self.lifetimes[a][1]]

    def _observations(self) -> dict[str, np.ndarray]:
        self._last[-1] = self._t / self.episode_length
        return {a: self._last.copy() for a in self.agents}

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._action_space.seed(seed)
        self._t = 0
        self._last[:] = 0.0
        self.agents = self._live(0)
        return self._observations(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]):
        missing = sorted(set(self.agents) - set(actions))
        if missing:
            raise ValueError(f"MatchingGame.step: no action for live agents {missing}")
        chosen = [int(actions[a]) for a in self.agents]
        reward = 1.0 if len(set(chosen)) == 1 else 0.0
        self._last[:-1] = 0.0
        for agent in self.agents:
            k = self.possible_agents.index(agent)
            self._last[k * self.num_actions + int(actions[agent])] = 1.0
        t = self._t
        self._t += 1
        ended = self._t >= self.episode_length
        acted = self.agents
        self.agents = [] if ended else self._live(self._t)
        # Every dict covers the agents that acted and those that just arrived (reward 0).
        keys = acted + [a for a in self.agents if a not in acted]
        rewards = {a: reward if a in acted else 0.0 for a in keys}
        terms = {a: a in acted and not ended and self.lifetimes[a][1] == t for a in keys}
        truncs = {a: a in acted and ended for a in keys}
        obs = self._observations()
        for agent in acted:  # an agent that just ended still gets its final observation
            obs.setdefault(agent, self._last.copy())
        infos = {a: {} for a in keys}
        return obs, rewards, terms, truncs, infos

    def close(self) -> None:
        pass


def _create(config: dict) -> MatchingGame:
    return MatchingGame(**config)


def register() -> None:
    """Register ``MatchingGame-v0`` with ``rl.register_env`` (idempotent)."""
    from rl.envs.registry import register_env, registered_env_names

    if ENV_ID not in registered_env_names():
        register_env(ENV_ID, _create)
