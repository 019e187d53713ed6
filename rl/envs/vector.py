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
vector env's state small: ``get_state()`` is the reset counters, running returns and
lengths, and (with ``record_actions``) the actions of each running game, which
``set_state()`` replays after repeating the reset that began the game. Recording and
replay are ``rl.resume``'s (``ActionLog``, ``replay_game``); without a seed or with
``record_actions=False`` nothing is recorded and ``set_state`` starts fresh episodes.

**Failing sub-envs.** With ``restart_failed=True`` a sub-env whose ``step`` or ``reset``
raises is closed, created anew and reset; the error goes to ``errors`` (the caller
drains it). A failed step ends the broken episode as a truncation at its last
good observation, with reward 0, and is listed in ``StepResult.failed``; the episode is
not reported in ``StepResult.episodes``. Without it the exception propagates.

**Callbacks.** With ``hooks`` (``rl.callbacks.EpisodeHooks``) every reset starts an
episode for the user's ``on_episode_start``, every step goes to ``on_episode_step``
(only when it is overridden: otherwise the loop tests one local for None) and every
end to ``on_episode_end`` with the step's ``info``, before the autoreset.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from rl.callbacks import EpisodeHooks
from rl.resume import ActionLog, replay_game

__all__ = ["StepResult", "VectorEnv", "episode_seed"]


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
        ended: the sub-env (multi-agent: game) of each entry of ``episodes``.
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
    ended: list[int] = field(default_factory=list)
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
        record_actions: with a seed, record each running game's actions so that
            ``set_state`` replays it (``rl.resume.ActionLog``); False: ``set_state``
            starts fresh episodes, and stepping records nothing.
        hooks: the user's worker-side episode callbacks, if any.

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
        record_actions: bool = True,
        hooks: EpisodeHooks | None = None,
    ):
        self.make_env = make_env
        self.hooks = hooks
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
        # Running return and length of each sub-env's episode, as Python numbers: the
        # per-step updates are list operations (get_state returns them as arrays).
        self._ep_return: list[float] = [0.0] * num_envs
        self._ep_len: list[int] = [0] * num_envs
        self._resets = np.zeros(num_envs, np.int64)
        self._log = ActionLog(num_envs, self._real_stats) \
            if seed is not None and record_actions else None

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
        if self.hooks is not None:
            self.hooks.start(i)
        return obs

    def _reset_or_recreate(self, i: int) -> Any:
        try:
            obs = self._reset(i)
        except Exception as exc:
            if not self.restart_failed:
                raise
            self._recreate(i, exc, "reset")
            obs = self._reset(i)
        if self._log is not None:
            self._log.reset(i, int(self._resets[i]) - 1)
        return obs

    def _recreate(self, i: int, exc: Exception, method: str) -> None:
        """Replace broken sub-env ``i`` by a new instance (not yet reset)."""
        self.errors.append((self.first_index + i, method, f"{type(exc).__name__}: {exc}"))
        with contextlib.suppress(Exception):
            self.envs[i].close()
        self.envs[i] = self.make_env()
        if self._log is not None:
            self._log.end_game(i)

    # ------------------------------------------------------------------ stepping
    def step(self, actions: np.ndarray) -> StepResult:
        """Step every sub-env with ``actions[i]``; autoreset those that ended."""
        result = StepResult(self.obs, self._rewards, self._terms, self._truncs)
        log = self._log
        hooks = self.hooks
        on_step = None if hooks is None else hooks.on_step
        if log is not None:
            log.record(actions)
        # The loop gathers Python lists and writes each array once at the end: one
        # numpy assignment per array instead of one per sub-env and array. The actions
        # stay numpy scalars (gymnasium's Discrete.contains takes them about twice as
        # fast as Python ints under numpy 2).
        n = self.num_envs
        rewards, terms, truncs, rows = [0.0] * n, [False] * n, [False] * n, [None] * n
        ep_return, ep_len, real_stats = self._ep_return, self._ep_len, self._real_stats
        for i, env in enumerate(self.envs):
            try:
                obs, reward, term, trunc, info = env.step(actions[i])
            except Exception as exc:
                if not self.restart_failed:
                    raise
                self._fail_step(i, exc, result)
                truncs[i], rows[i] = True, self.obs[i]
                continue
            rewards[i], terms[i], truncs[i] = reward, term, trunc
            ep_return[i] += float(reward)
            ep_len[i] += 1
            if on_step is not None:
                on_step(i, ep_return[i], ep_len[i], info)
            if real_stats[i] and "rl_episode" in info:
                ret, length = info["rl_episode"]
                result.real_episodes.append((float(ret), int(length)))
                if log is not None:
                    log.end_game(i)
            if term or trunc:
                result.final_obs[i] = np.asarray(obs, dtype=self.obs.dtype)
                result.episodes.append((ep_return[i], ep_len[i]))
                result.ended.append(i)
                if hooks is not None:
                    hooks.end(i, ep_return[i], ep_len[i], info)
                obs = self._reset_or_recreate(i)
            rows[i] = obs
        self._rewards[:] = rewards
        self._terms[:] = terms
        self._truncs[:] = truncs
        self.obs[:] = rows
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
        if self._log is not None:
            self._log.reset(i, int(self._resets[i]) - 1)

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, np.ndarray]:
        """Reset counters, running returns, lengths and observations, and (when recording)
        what replays each running game (``rl.resume.ActionLog.state``). Arrays only."""
        state = {
            "seed_stream": np.array(self.stream, np.int64),
            "resets": self._resets.copy(),
            "episode_returns": np.array(self._ep_return, np.float64),
            "episode_lens": np.array(self._ep_len, np.int64),
            "obs": self.obs.copy(),
        }
        if self._log is not None:
            state.update(self._log.state())
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> list[int]:
        """Replay each sub-env's saved game on a fresh instance (``rl.resume.replay_game``).

        Returns:
            The sub-envs whose replayed observation differs from the saved one (the
            env is not deterministic given its seed), or that had to start a fresh
            episode (no seed, no recording, or no recorded game).
        """
        resets = np.asarray(state["resets"], np.int64)
        if resets.shape != (self.num_envs,):
            raise ValueError(f"state of {len(resets)} sub-envs given to a VectorEnv of "
                             f"{self.num_envs}")
        self.stream = int(state["seed_stream"])
        games = {} if self._log is None else ActionLog.saved_games(state, self.num_envs)
        differ = []
        for i in range(self.num_envs):
            game = games.get(i)
            if game is None:
                self._resets[i] = resets[i]
                self.obs[i] = self._reset(i)
                differ.append(i)
                continue
            # A fresh instance: a reset of a used one need not start a new game (Atari's
            # EpisodicLife continues the game it is in).
            self.envs[i].close()
            self.envs[i] = self.make_env()
            self._resets[i] = game.start
            self.obs[i], consistent = replay_game(game, lambda i=i: self._reset(i),
                                                  self.envs[i].step, self._real_stats[i])
            if not consistent or self._resets[i] != resets[i] \
                    or not np.array_equal(self.obs[i], state["obs"][i]):
                differ.append(i)
            self._ep_return[i] = float(state["episode_returns"][i])
            self._ep_len[i] = int(state["episode_lens"][i])
        if self._log is not None:
            self._log.restore(games, self._resets - 1)
        return differ

    @property
    def reports_real_episodes(self) -> bool:
        return all(self._real_stats)

    def close(self) -> None:
        for env in self.envs:
            env.close()
