"""VectorEnv: N sub-envs stepped in lock-step, with autoreset handled here and only here.

Autoreset semantics (gymnasium's SAME_STEP mode, implemented directly so the
per-step cost is a plain loop with no info merging): when sub-env ``i`` ends at a
step, the returned observation for ``i`` is already the first observation of its
next episode, and the true final observation is returned separately so the
caller can bootstrap a truncated episode from ``V(final_obs)``. No reset step is
ever a transition: the caller never sees one.

Each sub-env is seeded ``seed + global_index`` on its first reset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

__all__ = ["StepResult", "VectorEnv"]


@dataclass(slots=True)
class StepResult:
    """One vector step. Arrays are owned by the VectorEnv and overwritten next step.

    Attributes:
        obs: ``[N, *obs_shape]``, observations to act on next (reset obs where done).
        rewards: float32 ``[N]``.
        terminateds, truncateds: bool ``[N]``.
        final_obs: sub-env index -> true final observation, for every sub-env that
            ended this step (terminated or truncated).
        episodes: ``(return, length)`` of each episode that ended this step.
    """

    obs: np.ndarray
    rewards: np.ndarray
    terminateds: np.ndarray
    truncateds: np.ndarray
    final_obs: dict[int, np.ndarray] = field(default_factory=dict)
    episodes: list[tuple[float, int]] = field(default_factory=list)


class VectorEnv:
    """Steps ``num_envs`` envs created by ``make_env()`` in one process.

    Args:
        make_env: creates one (already observation-wrapped) env.
        num_envs: number of sub-envs.
        seed: base seed; sub-env ``i`` gets ``seed + first_index + i``.
        first_index: global index of sub-env 0 across all workers.
        obs_dtype: dtype of the observation arrays.
    """

    def __init__(
        self,
        make_env: Callable[[], gym.Env],
        num_envs: int,
        seed: int | None,
        first_index: int = 0,
        obs_dtype: np.dtype | type = np.float32,
    ):
        self.envs = [make_env() for _ in range(num_envs)]
        self.num_envs = num_envs
        self.seed = seed
        self.first_index = first_index
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        shape = self.observation_space.shape
        self.obs = np.zeros((num_envs, *shape), dtype=obs_dtype)
        self._rewards = np.zeros(num_envs, np.float32)
        self._terms = np.zeros(num_envs, np.bool_)
        self._truncs = np.zeros(num_envs, np.bool_)
        self._ep_return = np.zeros(num_envs, np.float64)
        self._ep_len = np.zeros(num_envs, np.int64)
        self._needs_reset = True

    def reset(self) -> np.ndarray:
        """Reset every sub-env (seeded on the first call); returns ``[N, *obs_shape]``."""
        for i, env in enumerate(self.envs):
            seed = None
            if self._needs_reset and self.seed is not None:
                seed = self.seed + self.first_index + i
            self.obs[i], _ = env.reset(seed=seed)
            if self._needs_reset and self.seed is not None:
                env.action_space.seed(seed)
        self._needs_reset = False
        self._ep_return[:] = 0.0
        self._ep_len[:] = 0
        return self.obs

    def reset_one(self, i: int, env: gym.Env | None = None) -> None:
        """Replace (optionally) and reset sub-env ``i``, dropping its running episode."""
        if env is not None:
            self.envs[i] = env
        self.obs[i], _ = self.envs[i].reset()
        self._ep_return[i] = 0.0
        self._ep_len[i] = 0

    def step(self, actions: np.ndarray) -> StepResult:
        """Step every sub-env with ``actions[i]``; autoreset those that ended."""
        result = StepResult(self.obs, self._rewards, self._terms, self._truncs)
        # Python ints pass Discrete.contains() far faster than numpy scalars.
        if actions.ndim == 1 and actions.dtype.kind in "iu":
            actions = actions.tolist()
        for i, env in enumerate(self.envs):
            obs, reward, term, trunc, _ = env.step(actions[i])
            self._rewards[i] = reward
            self._terms[i] = term
            self._truncs[i] = trunc
            self._ep_return[i] += reward
            self._ep_len[i] += 1
            if term or trunc:
                result.final_obs[i] = np.asarray(obs, dtype=self.obs.dtype)
                result.episodes.append((float(self._ep_return[i]), int(self._ep_len[i])))
                self._ep_return[i] = 0.0
                self._ep_len[i] = 0
                obs, _ = env.reset()
            self.obs[i] = obs
        return result

    def close(self) -> None:
        for env in self.envs:
            env.close()
