"""Multi-agent envs: PettingZoo's Parallel API as the contract, and their vectorisation.

A multi-agent env is anything with PettingZoo's Parallel API (``possible_agents``,
``agents``, ``observation_space(agent)``, ``action_space(agent)``, ``reset(seed=...)``
-> ``(obs, infos)`` and ``step(actions)`` -> ``(obs, rewards, terminations,
truncations, infos)``, each a dict keyed by agent id). An AEC env is converted with
PettingZoo's own ``aec_to_parallel`` where it is parallelisable
(``metadata["is_parallelizable"]``). Detection is by those attributes, so rl's core does
not import PettingZoo.

**Agent slots.** ``MultiAgentVectorEnv`` steps ``num_games`` env instances and shows the
worker one *slot* per (game, possible agent): slot ``g * A + k`` is agent
``possible_agents[k]`` of game ``g``. The worker batches every slot through the policy,
so fragments stay fixed ``[T, num_slots]`` arrays and GAE runs along each slot, which is
one agent's own trajectory. A slot is *active* while its agent is alive (in
``env.agents``); ``active`` says so for the current observations. Agents may finish at
different times and appear later: the rows of an inactive slot are padding (observation
0, reward 0, flagged terminated so that no return flows across them), and the worker
flags them in its fragment's ``discarded`` mask, which the algorithms already leave out
of training and of every statistic. An agent's own termination and truncation are kept
apart, each with its final observation, as a single-agent episode end is.

A game ends when no agent is left in ``env.agents``; it is reset at once (seeded like a
``VectorEnv`` sub-env, ``episode_seed``), and its episode is reported with the return
summed over its agents and its length in env steps.

**Resume.** ``get_state``/``set_state`` keep the reset counters: a restored worker
starts fresh episodes (each with the seed the next episode would have had); running
multi-agent episodes are not replayed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from rl.callbacks import EpisodeHooks
from rl.envs.spaces import needs_flatten, prepare_observation_space
from rl.envs.vector import StepResult, episode_seed

__all__ = ["AgentSpaces", "MultiAgentVectorEnv", "agent_spaces", "is_aec_env",
           "is_multi_agent_env", "padded_observation_space", "to_parallel"]


def is_multi_agent_env(env: Any) -> bool:
    """Whether ``env`` has PettingZoo's Parallel or AEC API (duck-typed)."""
    return hasattr(env, "possible_agents") and callable(getattr(env, "observation_space", None))


def is_aec_env(env: Any) -> bool:
    return is_multi_agent_env(env) and callable(getattr(env, "agent_iter", None)) \
        and callable(getattr(env, "last", None))


def to_parallel(env: Any, env_id: str) -> Any:
    """A Parallel-API view of ``env``: itself, or an AEC env through PettingZoo's
    ``aec_to_parallel``; a turn-based AEC env that is not parallelisable stays as it is
    (``rl.envs.turn_based`` drives it turn by turn)."""
    del env_id
    if not is_aec_env(env) or not getattr(env, "metadata", {}).get("is_parallelizable", False):
        return env
    from pettingzoo.utils.conversions import aec_to_parallel

    return aec_to_parallel(env)


class AgentSpaces(NamedTuple):
    """A multi-agent env's agents and each one's spaces (``agent_spaces``)."""

    agents: tuple[str, ...]
    env_obs: tuple[gym.Space, ...]
    """Each agent's own observation space, in ``agents`` order."""
    action: tuple[gym.Space, ...]

    @property
    def uniform(self) -> bool:
        """Whether every agent has the first agent's spaces."""
        return all(o == self.env_obs[0] and a == self.action[0]
                   for o, a in zip(self.env_obs, self.action))

    def same(self, i: int, j: int) -> bool:
        return self.env_obs[i] == self.env_obs[j] and self.action[i] == self.action[j]


def agent_spaces(env: Any, env_id: str) -> AgentSpaces:
    """The agents and their spaces.

    Agents with different spaces need a policy each (or one per group of agents with
    equal spaces); their observations travel zero-padded to the longest one, so each
    must flatten to a vector, and their actions must be of one kind (all ``Discrete``,
    or all 1-D ``Box``). ``ConfigError`` otherwise, naming the two agents."""
    from rl.config import ConfigError

    agents = tuple(env.possible_agents)
    if not agents:
        raise ConfigError(f"env {env_id!r} has no possible_agents")
    out = AgentSpaces(agents, tuple(env.observation_space(a) for a in agents),
                      tuple(env.action_space(a) for a in agents))
    if out.uniform:
        return out
    for k, agent in enumerate(agents):
        prepared = prepare_observation_space(out.env_obs[k])
        if not (isinstance(prepared, gym.spaces.Box) and len(prepared.shape) == 1):
            raise ConfigError(
                f"env {env_id!r}: agents have different spaces, and {agent!r}'s observation "
                f"space {out.env_obs[k]} is not a vector (after flattening); agents with "
                "different spaces need vector observations")
        act, first = out.action[k], out.action[0]
        kinds = (gym.spaces.Discrete, gym.spaces.Box)
        same_kind = any(isinstance(act, c) and isinstance(first, c) for c in kinds)
        if act != first and not (same_kind and len(act.shape) <= 1):
            raise ConfigError(
                f"env {env_id!r}: agents {agents[0]!r} and {agent!r} have actions of "
                f"different kinds ({first} vs {act}); agents with different spaces need "
                "actions of one kind: all Discrete, or all 1-D Box")
    return out


def padded_observation_space(spaces: AgentSpaces) -> gym.spaces.Box:
    """The observation every slot holds when agents differ: each agent's flattened
    observation, zero-padded to the longest."""
    dim = max(int(prepare_observation_space(s).shape[0]) for s in spaces.env_obs)
    return gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)


class MultiAgentVectorEnv:
    """Steps ``num_games`` multi-agent envs as ``num_games * len(possible_agents)`` slots.

    The interface is ``VectorEnv``'s (``reset``, ``step`` -> ``StepResult`` indexed by
    slot, ``get_state``/``set_state``, ``errors``, ``close``) plus ``active`` and the
    game counts. ``StepResult.episodes`` lists whole games (return summed over agents);
    ``StepResult.failed`` lists every slot of a game whose ``step`` raised (with
    ``restart_failed``).

    Args:
        make_env: creates one Parallel-API env.
        num_games: env instances.
        seed: base seed of every game's episode seeds (``episode_seed``); None: unseeded.
        first_index: global index of game 0 across all workers.
        obs_dtype: dtype of the observation arrays.
        stream: seed stream (see ``episode_seed``).
        restart_failed: recreate a game whose ``step``/``reset`` raises.
        hooks: the user's worker-side episode callbacks, their episodes counted in games.
        record_actions: accepted for ``VectorEnv``'s signature; running multi-agent
            episodes are not replayed on resume.
    """

    def __init__(self, make_env: Callable[[], Any], num_games: int, seed: int | None,
                 first_index: int = 0, obs_dtype: np.dtype | type = np.float32, *,
                 stream: int = 0, restart_failed: bool = False, record_actions: bool = True,
                 hooks: EpisodeHooks | None = None):
        del record_actions
        self.make_env = make_env
        self.hooks = hooks
        self.envs = [make_env() for _ in range(num_games)]
        self.agents: tuple[str, ...] = tuple(self.envs[0].possible_agents)
        self.slot_of = {agent: k for k, agent in enumerate(self.agents)}
        self.num_games = num_games
        self.num_agents = len(self.agents)
        self.num_envs = num_games * self.num_agents
        self.seed = seed
        self.first_index = first_index
        self.stream = stream
        self.restart_failed = restart_failed
        self.errors: list[tuple[int, str, str]] = []
        self.env_observation_space = self.envs[0].observation_space(self.agents[0])
        self.action_space = self.envs[0].action_space(self.agents[0])
        self.agent_obs_spaces = [self.envs[0].observation_space(a) for a in self.agents]
        self._flatten = [needs_flatten(s) for s in self.agent_obs_spaces]
        if all(s == self.env_observation_space for s in self.agent_obs_spaces):
            self.observation_space = prepare_observation_space(self.env_observation_space)
        else:  # agents of different spaces: zero-padded vectors
            self.observation_space = padded_observation_space(
                AgentSpaces(self.agents, tuple(self.agent_obs_spaces), ()))
        self.obs = np.zeros((self.num_envs, *self.observation_space.shape), obs_dtype)
        self.active = np.zeros(self.num_envs, np.bool_)
        self._rewards = np.zeros(self.num_envs, np.float32)
        self._terms = np.zeros(self.num_envs, np.bool_)
        self._truncs = np.zeros(self.num_envs, np.bool_)
        self._ep_return = np.zeros(num_games, np.float64)
        self._ep_len = np.zeros(num_games, np.int64)
        self._resets = np.zeros(num_games, np.int64)

    def _flat(self, obs: Any, k: int = 0) -> np.ndarray:
        """Agent ``k``'s observation as a slot holds it (flattened, zero-padded)."""
        if self._flatten[k]:
            obs = gym.spaces.flatten(self.agent_obs_spaces[k], obs)
        obs = np.asarray(obs)
        width = self.observation_space.shape[0] if self.observation_space.shape else 0
        if obs.ndim == 1 and obs.shape[0] < width:
            obs = np.concatenate([obs, np.zeros(width - obs.shape[0], obs.dtype)])
        return obs

    def _set_obs(self, g: int, obs: dict[str, Any], alive: Any) -> None:
        """Game ``g``'s slots after a reset or step: the live agents' observations."""
        base = g * self.num_agents
        self.active[base : base + self.num_agents] = False
        self.obs[base : base + self.num_agents] = 0
        for agent in alive:
            if agent in obs:
                k = self.slot_of[agent]
                self.obs[base + k] = self._flat(obs[agent], k)
                self.active[base + k] = True

    # ------------------------------------------------------------------ resets
    def reset(self) -> np.ndarray:
        """Reset every game; returns the slots' observations ``[num_slots, *obs_shape]``."""
        for g in range(self.num_games):
            self._reset_or_recreate(g)
        return self.obs

    def _reset(self, g: int) -> None:
        obs, _ = self._reset_game(g)
        self._set_obs(g, obs, self.envs[g].agents)
        if self.hooks is not None:
            self.hooks.start(g)

    def _reset_game(self, g: int) -> Any:
        """Reset game ``g`` with its next episode's seed (its agents' action spaces
        seeded on the first); returns what ``reset`` returned."""
        seed = None
        if self.seed is not None:
            seed = episode_seed(self.seed, self.first_index + g, int(self._resets[g]),
                                self.stream)
        env = self.envs[g]
        out = env.reset(seed=seed)
        if seed is not None and self._resets[g] == 0:
            for k, agent in enumerate(self.agents):
                env.action_space(agent).seed(seed + k)
        self._resets[g] += 1
        self._ep_return[g] = 0.0
        self._ep_len[g] = 0
        return out

    def _reset_or_recreate(self, g: int) -> None:
        try:
            self._reset(g)
        except Exception as exc:
            if not self.restart_failed:
                raise
            self._recreate(g, exc, "reset")
            self._reset(g)

    def _recreate(self, g: int, exc: Exception, method: str) -> None:
        self.errors.append((self.first_index + g, method, f"{type(exc).__name__}: {exc}"))
        with contextlib.suppress(Exception):
            self.envs[g].close()
        self.envs[g] = self.make_env()

    # ------------------------------------------------------------------ stepping
    def step(self, actions: np.ndarray) -> StepResult:
        """Step every game with its live agents' slots of ``actions``; reset finished games."""
        result = StepResult(self.obs, self._rewards, self._terms, self._truncs)
        A = self.num_agents
        if isinstance(actions, np.ndarray) and actions.ndim == 1 and actions.dtype.kind in "iu":
            actions = actions.tolist()
        # Padding rows: no reward, and "terminated" so that no return crosses them.
        self._rewards[:] = 0.0
        self._terms[:] = ~self.active
        self._truncs[:] = False
        for g, env in enumerate(self.envs):
            base = g * A
            acting = [k for k in range(A) if self.active[base + k]]
            joint = {self.agents[k]: actions[base + k] for k in acting}
            try:
                obs, rewards, terms, truncs, infos = env.step(joint)
            except Exception as exc:
                if not self.restart_failed:
                    raise
                self._fail_step(g, acting, exc, result)
                continue
            alive = env.agents
            for k in acting:
                agent, s = self.agents[k], base + k
                reward = float(rewards.get(agent, 0.0))
                term, trunc = bool(terms.get(agent, False)), bool(truncs.get(agent, False))
                if not (term or trunc) and agent not in alive:
                    trunc = True  # removed without a flag: cut, bootstrapped from its obs
                self._rewards[s] = reward
                self._terms[s] = term
                self._truncs[s] = trunc
                self._ep_return[g] += reward
                if term or trunc:
                    final = obs.get(agent, self.obs[s])
                    result.final_obs[s] = np.asarray(
                        self._flat(final, k) if agent in obs else final, dtype=self.obs.dtype)
            self._ep_len[g] += 1
            if self.hooks is not None and self.hooks.on_step is not None:
                self.hooks.on_step(g, self._ep_return[g], self._ep_len[g], infos)
            if alive:
                self._set_obs(g, obs, [a for a in alive if not (terms.get(a) or truncs.get(a))])
                continue
            result.episodes.append((float(self._ep_return[g]), int(self._ep_len[g])))
            result.ended.append(g)
            if self.hooks is not None:
                self.hooks.end(g, self._ep_return[g], self._ep_len[g], infos)
            self._reset_or_recreate(g)
        return result

    def _fail_step(self, g: int, acting: list[int], exc: Exception, result: StepResult) -> None:
        """Game ``g`` raised in ``step``: its live agents' episodes end as truncations at
        their last good observations; the game is recreated and reset."""
        for k in acting:
            s = g * self.num_agents + k
            result.final_obs[s] = self.obs[s].copy()
            result.failed.append(s)
            self._truncs[s] = True
            self._terms[s] = False
        self._recreate(g, exc, "step")
        self._reset(g)

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, np.ndarray]:
        """Reset counters, running returns and lengths (games), and the slots' obs."""
        return {
            "seed_stream": np.array(self.stream, np.int64),
            "resets": self._resets.copy(),
            "episode_returns": self._ep_return.copy(),
            "episode_lens": self._ep_len.copy(),
            "obs": self.obs.copy(),
        }

    def set_state(self, state: dict[str, np.ndarray]) -> list[int]:
        """Start every game's next episode with the seed it would have had; returns the
        games (all: no running episode is replayed)."""
        resets = np.asarray(state["resets"], np.int64)
        if resets.shape != (self.num_games,):
            raise ValueError(f"state of {len(resets)} games given to a MultiAgentVectorEnv "
                             f"of {self.num_games}")
        self.stream = int(state["seed_stream"])
        self._resets[:] = resets
        for g in range(self.num_games):
            self._reset(g)
        return list(range(self.num_games))

    @property
    def reports_real_episodes(self) -> bool:
        return False

    def close(self) -> None:
        for env in self.envs:
            with contextlib.suppress(Exception):
                env.close()
