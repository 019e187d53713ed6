"""VectorEnv: N sub-envs stepped in lock-step, with autoreset handled here and only here.

Autoreset semantics (gymnasium's SAME_STEP mode, implemented directly so the
per-step cost is a plain loop with no info merging): when sub-env ``i`` ends at a
step, the returned observation for ``i`` is already the first observation of its
next episode, and the true final observation is returned separately so the
caller can bootstrap a truncated episode from ``V(final_obs)``. No reset step is
ever a transition: the caller never sees one.

**Seeding.** With a seed, every reset of every sub-env is seeded: reset ``k`` of the
sub-env with global index ``g`` gets ``episode_seed(seed, g, k, stream)``, so each
episode is reproducible on its own, whatever happened before it. That is what makes a
vector env's state small: ``get_state()`` is, per sub-env, the index of the reset that
began its running game, the actions since then and the running return and length;
``set_state()`` repeats that reset and replays those actions. A game normally is one
episode; for envs that report real games (``reports_real_episodes``: Atari, where a
lost life ends the learner's episode but the next reset continues the game) it spans
the soft resets in between, which are recorded and replayed too. The replay is exact
for envs that are deterministic given their seed and actions (classic control, Box2D,
MuJoCo, ALE with its sticky actions drawn from the seeded RNG); for others, and for a
game longer than ``MAX_REPLAY_STEPS``, the restored sub-env differs from the saved one
(or starts afresh), which ``set_state`` reports. Without a seed nothing is recorded and
``set_state`` starts fresh episodes.

**Failing sub-envs.** With ``restart_failed=True`` a sub-env whose ``step`` or ``reset``
raises is closed, created anew and reset; the error goes to ``errors`` (the caller
drains it). A failed step ends the broken episode as a truncation at its last
good observation, with reward 0, and is listed in ``StepResult.failed``; the episode is
not reported in ``StepResult.episodes``. Without it the exception propagates.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["MAX_REPLAY_STEPS", "StepResult", "VectorEnv", "episode_seed"]

MAX_REPLAY_STEPS = 100_000
"""Longest game whose actions are kept for ``set_state`` (memory: one action per step)."""


def episode_seed(seed: int, env_index: int, episode: int, stream: int = 0) -> int:
    """The seed of episode ``episode`` of the sub-env with global index ``env_index``.

    ``stream`` separates the envs of a restarted worker from its predecessor's, so a
    replacement does not replay the episodes its predecessor already played.
    """
    entropy = (seed & 0xFFFFFFFFFFFFFFFF, env_index, stream, episode)
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


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
        real_episodes: true games that ended this step, for envs that report them
            (``info["rl_episode"]``, e.g. Atari with life-loss ends and clipped rewards).
        failed: sub-envs whose ``step`` raised (recreated; their episode was discarded).
    """

    obs: np.ndarray
    rewards: np.ndarray
    terminateds: np.ndarray
    truncateds: np.ndarray
    final_obs: dict[int, np.ndarray] = field(default_factory=dict)
    episodes: list[tuple[float, int]] = field(default_factory=list)
    real_episodes: list[tuple[float, int]] = field(default_factory=list)

    def reported_episodes(self, real: bool) -> list[tuple[float, int]]:
        """The episodes to report: real games where the envs record them."""
        return self.real_episodes if real else self.episodes
    failed: list[int] = field(default_factory=list)


class VectorEnv:
    """Steps ``num_envs`` envs created by ``make_env()`` in one process.

    Args:
        make_env: creates one (already observation-wrapped) env.
        num_envs: number of sub-envs.
        seed: base seed of every episode's seed (``episode_seed``); None: unseeded.
        first_index: global index of sub-env 0 across all workers.
        obs_dtype: dtype of the observation arrays.
        stream: seed stream (see ``episode_seed``).
        restart_failed: recreate a sub-env whose ``step``/``reset`` raises.

    Attributes:
        errors: ``(global sub-env index, "step" or "reset", "ExcType: message")`` of each
            sub-env error survived since the caller last cleared the list.
    """

    def __init__(
        self,
        make_env: Callable[[], gym.Env],
        num_envs: int,
        seed: int | None,
        first_index: int = 0,
        obs_dtype: np.dtype | type = np.float32,
        *,
        stream: int = 0,
        restart_failed: bool = False,
    ):
        self.make_env = make_env
        self.envs = [make_env() for _ in range(num_envs)]
        # Envs that report true episodes themselves (Atari: real games, unclipped
        # scores) are counted from info["rl_episode"], not from our own counters.
        self._real_stats = [env.has_wrapper_attr("reports_real_episodes") for env in self.envs]
        self.num_envs = num_envs
        self.seed = seed
        self.first_index = first_index
        self.stream = stream
        self.restart_failed = restart_failed
        self.errors: list[tuple[int, str, str]] = []
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        shape = self.observation_space.shape
        self.obs = np.zeros((num_envs, *shape), dtype=obs_dtype)
        self._rewards = np.zeros(num_envs, np.float32)
        self._terms = np.zeros(num_envs, np.bool_)
        self._truncs = np.zeros(num_envs, np.bool_)
        self._ep_return = np.zeros(num_envs, np.float64)
        self._ep_len = np.zeros(num_envs, np.int64)
        self._resets = np.zeros(num_envs, np.int64)
        # What set_state() replays, per sub-env: the reset that began its running game,
        # the actions since, and after how many of them a soft reset came.
        self._actions: list[list[Any]] | None = (
            None if seed is None else [[] for _ in range(num_envs)]
        )
        self._soft_resets: list[list[int]] = [[] for _ in range(num_envs)]
        self._game_start = np.zeros(num_envs, np.int64)
        self._game_over = np.ones(num_envs, np.bool_)  # the next reset starts a new game

    # ------------------------------------------------------------------ resets
    def reset(self) -> np.ndarray:
        """Reset every sub-env (each starts a new episode); returns ``[N, *obs_shape]``."""
        for i in range(self.num_envs):
            self.obs[i] = self._reset_or_recreate(i)
        return self.obs

    def _reset(self, i: int) -> Any:
        """Reset sub-env ``i`` with its next episode's seed; returns the observation."""
        seed = None
        if self.seed is not None:
            seed = episode_seed(self.seed, self.first_index + i, int(self._resets[i]),
                                self.stream)
        obs, _ = self.envs[i].reset(seed=seed)
        if seed is not None and self._resets[i] == 0:
            self.envs[i].action_space.seed(seed)
        self._resets[i] += 1
        self._ep_return[i] = 0.0
        self._ep_len[i] = 0
        if self._actions is not None:
            if self._game_over[i]:
                self._game_start[i] = self._resets[i] - 1
                self._actions[i].clear()
                self._soft_resets[i].clear()
            else:
                self._soft_resets[i].append(len(self._actions[i]))
        # A sub-env that reports real games continues its game after this reset until
        # it says the game ended; for any other env every reset starts a new game.
        self._game_over[i] = not self._real_stats[i]
        return obs

    def _reset_or_recreate(self, i: int) -> Any:
        try:
            return self._reset(i)
        except Exception as exc:
            if not self.restart_failed:
                raise
            self._recreate(i, exc, "reset")
            return self._reset(i)

    def _recreate(self, i: int, exc: Exception, method: str) -> None:
        """Replace broken sub-env ``i`` by a new instance (not yet reset)."""
        self.errors.append((self.first_index + i, method, f"{type(exc).__name__}: {exc}"))
        with contextlib.suppress(Exception):
            self.envs[i].close()
        self.envs[i] = self.make_env()
        self._game_over[i] = True

    # ------------------------------------------------------------------ stepping
    def step(self, actions: np.ndarray) -> StepResult:
        """Step every sub-env with ``actions[i]``; autoreset those that ended."""
        result = StepResult(self.obs, self._rewards, self._terms, self._truncs)
        # Python ints pass Discrete.contains() far faster than numpy scalars.
        if actions.ndim == 1 and actions.dtype.kind in "iu":
            actions = actions.tolist()
        record = self._actions
        for i, env in enumerate(self.envs):
            try:
                obs, reward, term, trunc, info = env.step(actions[i])
            except Exception as exc:
                if not self.restart_failed:
                    raise
                self._fail_step(i, exc, result)
                continue
            if record is not None and len(record[i]) < MAX_REPLAY_STEPS:
                # A row of an action array is a view into the caller's batch: copy it.
                a = actions[i]
                record[i].append(a.copy() if isinstance(a, np.ndarray) else a)
            self._rewards[i] = reward
            self._terms[i] = term
            self._truncs[i] = trunc
            self._ep_return[i] += reward
            self._ep_len[i] += 1
            if self._real_stats[i] and "rl_episode" in info:
                ret, length = info["rl_episode"]
                result.real_episodes.append((float(ret), int(length)))
                self._game_over[i] = True
            if term or trunc:
                result.final_obs[i] = np.asarray(obs, dtype=self.obs.dtype)
                result.episodes.append((float(self._ep_return[i]), int(self._ep_len[i])))
                obs = self._reset_or_recreate(i)
            self.obs[i] = obs
        return result

    def _fail_step(self, i: int, exc: Exception, result: StepResult) -> None:
        """Sub-env ``i`` raised in ``step``: truncate at its last good obs, start anew."""
        result.final_obs[i] = self.obs[i].copy()
        result.failed.append(i)
        self._rewards[i] = 0.0
        self._terms[i] = False
        self._truncs[i] = True
        self._recreate(i, exc, "step")
        self.obs[i] = self._reset(i)

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, np.ndarray]:
        """Running returns, lengths and observations, and (with a seed) what replays each
        sub-env's game: ``game_start``, ``actions_<i>``, ``soft_resets_<i>``. Arrays only."""
        state = {
            "seed_stream": np.array(self.stream, np.int64),
            "resets": self._resets.copy(),
            "game_start": self._game_start.copy(),
            "episode_returns": self._ep_return.copy(),
            "episode_lens": self._ep_len.copy(),
            "obs": self.obs.copy(),
        }
        for i, actions in enumerate(self._actions or ()):
            if len(actions) < MAX_REPLAY_STEPS:
                state[f"actions_{i}"] = np.asarray(actions)
                state[f"soft_resets_{i}"] = np.asarray(self._soft_resets[i], np.int64)
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> list[int]:
        """Repeat each sub-env's game-starting reset and replay its actions and resets.

        Returns:
            The sub-envs whose replayed observation differs from the saved one (the
            env is not deterministic given its seed), or that had to start a fresh
            episode (no seed, or no recorded game).
        """
        resets = np.asarray(state["resets"], np.int64)
        if resets.shape != (self.num_envs,):
            raise ValueError(f"state of {len(resets)} sub-envs given to a VectorEnv of "
                             f"{self.num_envs}")
        self.stream = int(state["seed_stream"])
        differ = []
        for i in range(self.num_envs):
            actions = state.get(f"actions_{i}")
            self._game_over[i] = True
            if self._actions is None or actions is None:
                self._resets[i] = resets[i]
                self.obs[i] = self._reset(i)
                differ.append(i)
                continue
            # A fresh instance: a reset of a used one need not start a new game (Atari's
            # EpisodicLife continues the game it is in).
            self.envs[i].close()
            self.envs[i] = self.make_env()
            self._resets[i] = state["game_start"][i]
            if not self._replay(i, actions, state[f"soft_resets_{i}"]) \
                    or self._resets[i] != resets[i] \
                    or not np.array_equal(self.obs[i], state["obs"][i]):
                differ.append(i)
            self._ep_return[i] = state["episode_returns"][i]
            self._ep_len[i] = state["episode_lens"][i]
        return differ

    def _replay(self, i: int, actions: np.ndarray, soft_resets: np.ndarray) -> bool:
        """Reset sub-env ``i`` and replay ``actions`` with resets after the counts in
        ``soft_resets``; False if an episode ended where none was recorded."""
        steps = actions.tolist() if actions.ndim == 1 and actions.dtype.kind in "iu" \
            else list(actions)
        soft = soft_resets.tolist()
        obs = self._reset(i)
        consistent = True
        for n, a in enumerate(steps):
            while soft and soft[0] == n:
                soft.pop(0)
                obs = self._reset(i)
            obs, _, term, trunc, info = self.envs[i].step(a)
            self._actions[i].append(a)
            if self._real_stats[i] and "rl_episode" in info:
                consistent = False  # the game ended: its history would have been dropped
            if (term or trunc) and not (soft and soft[0] == n + 1):
                consistent = False
        while soft:
            soft.pop(0)
            obs = self._reset(i)
        self.obs[i] = obs
        return consistent

    @property
    def reports_real_episodes(self) -> bool:
        return all(self._real_stats)

    def close(self) -> None:
        for env in self.envs:
            env.close()
