"""Environments: name resolution, space preparation, vectorisation, normalisation, and
multi-agent (PettingZoo Parallel) envs, and the example envs ``StatelessCartPole``
(``StatelessCartPole-v1``: a memory task) and ``MatchingGame`` (``MatchingGame-v0``: a
cooperative two-agent game)."""

from __future__ import annotations

import functools

import gymnasium as gym

from rl.envs.matching import MatchingGame
from rl.envs.matching import register as _register_matching
from rl.envs.multi_agent import MultiAgentVectorEnv, is_multi_agent_env
from rl.envs.registry import (
    EnvError,
    EnvNameError,
    EnvSpec,
    register_env,
    registered_env_names,
    resolve_env,
)
from rl.envs.spaces import (
    ProbedSpaces,
    UnsupportedSpaceError,
    check_action_space,
    flatten_observations,
    is_image_space,
    prepare_observation_space,
    probe_spaces,
    wrap_observations,
)
from rl.envs.stateless import StatelessCartPole
from rl.envs.stateless import register as _register_stateless
from rl.envs.vector import StepResult, VectorEnv

_register_stateless()
_register_matching()

__all__ = [
    "EnvError",
    "EnvNameError",
    "EnvSpec",
    "MatchingGame",
    "MultiAgentVectorEnv",
    "ProbedSpaces",
    "StatelessCartPole",
    "StepResult",
    "UnsupportedSpaceError",
    "VectorEnv",
    "check_action_space",
    "flatten_observations",
    "is_image_space",
    "is_multi_agent_env",
    "make_env",
    "prepare_observation_space",
    "probe_spaces",
    "register_env",
    "registered_env_names",
    "resolve_env",
    "wrap_observations",
]


def make_env(spec: EnvSpec, env_config: dict | None = None, check: bool = False) -> gym.Env:
    """One env instance as the policy sees it (observations flattened where needed; a
    multi-agent env as it is: ``MultiAgentVectorEnv`` flattens each agent's)."""
    env = spec.make(env_config, check=check)
    return env if is_multi_agent_env(env) else wrap_observations(env)


def env_factory(spec: EnvSpec, env_config: dict | None = None):
    """A picklable zero-argument creator for ``VectorEnv``."""
    return functools.partial(make_env, spec, dict(env_config or {}))
