"""Space handling: which spaces rl supports and how observations are prepared.

Observations: ``Box`` of rank 1 (MLP), rank 3 (images, Nature CNN; channels-last
HWC is transposed to CHW by the encoder), rank 2 or >3 (flattened for the MLP);
``Discrete`` (one-hot), ``MultiDiscrete``/``MultiBinary``, ``Dict`` and ``Tuple``
(flattened to one float vector). Actions: ``Discrete``, ``Box``, ``MultiDiscrete``.

``flatten_observations`` turns observations in the env's own format (one or a batch)
into the policy's flat batch with the same ``gymnasium.spaces.flatten`` that the
wrapper (``FlattenObservation``) applies during training, so inference sees what
training saw.

``probe_spaces`` creates one env in the driver before any process starts, resets it once
and reads its spaces; every failure is one ``EnvError`` naming the env and the call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rl.envs.registry import EnvError, EnvSpec, env_call

__all__ = [
    "needs_flatten",
    "SUPPORTED_ACTION_SPACES",
    "UnsupportedSpaceError",
    "ProbedSpaces",
    "check_action_space",
    "flatten_observations",
    "is_image_space",
    "prepare_observation_space",
    "probe_spaces",
    "wrap_observations",
]

SUPPORTED_ACTION_SPACES = ("Discrete", "Box", "MultiDiscrete")


class UnsupportedSpaceError(ValueError):
    """An observation or action space rl cannot handle."""


def is_image_space(space: gym.Space) -> bool:
    """Rank-3 Box observations (H, W, C) or (C, H, W) go to the CNN."""
    return isinstance(space, spaces.Box) and len(space.shape) == 3


def needs_flatten(space: gym.Space) -> bool:
    """Whether ``wrap_observations`` flattens observations of ``space``."""
    if isinstance(space, spaces.Box):
        return len(space.shape) not in (1, 3)
    if isinstance(space, spaces.Discrete | spaces.MultiDiscrete | spaces.MultiBinary):
        return True
    if isinstance(space, spaces.Dict | spaces.Tuple):
        for sub in space.spaces.values() if isinstance(space, spaces.Dict) else space.spaces:
            _check_flattenable(sub)
        return True
    raise UnsupportedSpaceError(
        f"observation space {space} is not supported; supported: Box, Discrete, "
        "MultiDiscrete, MultiBinary, and Dict/Tuple of those"
    )


def _check_flattenable(space: gym.Space) -> None:
    if isinstance(space, spaces.Box | spaces.Discrete | spaces.MultiDiscrete | spaces.MultiBinary):
        return
    if isinstance(space, spaces.Dict | spaces.Tuple):
        needs_flatten(space)
        return
    raise UnsupportedSpaceError(
        f"observation sub-space {space} is not supported inside Dict/Tuple; supported: "
        "Box, Discrete, MultiDiscrete, MultiBinary"
    )


def wrap_observations(env: gym.Env) -> gym.Env:
    """Flatten observation spaces the encoders cannot take directly."""
    if needs_flatten(env.observation_space):
        env = gym.wrappers.FlattenObservation(env)
    return env


def prepare_observation_space(space: gym.Space) -> gym.Space:
    """The observation space the policy sees after ``wrap_observations``."""
    return spaces.flatten_space(space) if needs_flatten(space) else space


_SCALAR_LEAVES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


def flatten_observations(space: gym.Space, obs: Any) -> tuple[np.ndarray, bool]:
    """Observations in the env's own format -> the policy's batch ``[B, *prepared]``.

    ``space`` is the env's observation space (before ``wrap_observations``). Accepted:

    * ``Box``, ``Discrete``, ``MultiDiscrete``, ``MultiBinary``: one observation of
      the space's shape (a scalar for ``Discrete``) or a batch ``[B, *shape]``
      (array-likes are fine).
    * ``Dict``: one observation (a mapping with the space's keys), a batch as a
      mapping of arrays with a leading batch dim, or a ``list`` of single mappings.
    * ``Tuple``: one observation (a ``tuple`` with one entry per sub-space), a batch
      as a tuple of arrays with a leading batch dim, or a ``list`` of single tuples.
      (At the top level a ``list`` is always a batch.)

    Spaces the wrapper flattens are flattened with ``gymnasium.spaces.flatten``,
    exactly as ``FlattenObservation`` does during training; the others pass through.

    Returns:
        ``(batch, single)``: the prepared batch and whether ``obs`` was one observation.

    Raises:
        ValueError: ``obs`` does not fit ``space`` (the message names the space).
    """
    if isinstance(space, spaces.Dict | spaces.Tuple) and isinstance(obs, list):
        if not obs:
            raise ValueError(f"an empty list is no batch of observations of {space}")
        for item in obs:
            if _batch_size(space, item) is not None:
                raise ValueError(f"a list of observations of {space} holds single "
                                 "observations, not batches")
        items, single = obs, False
    else:
        size = _batch_size(space, obs)
        single = size is None
        if not needs_flatten(space):
            arr = np.asarray(obs)
            return (arr[None] if single else arr), single
        items = [obs] if single else [_item(space, obs, i) for i in range(size)]
    flat = np.stack([spaces.flatten(space, x) for x in items])
    return flat, single


def _batch_size(space: gym.Space, obs: Any) -> int | None:
    """None for one observation of ``space``, B for a batch of B; ValueError otherwise."""
    if isinstance(space, spaces.Dict | spaces.Tuple):
        keys = list(space.spaces) if isinstance(space, spaces.Dict) else None
        if keys is not None:
            if not isinstance(obs, Mapping) or set(obs) != set(keys):
                got = sorted(obs) if isinstance(obs, Mapping) else type(obs).__name__
                raise ValueError(f"observation {got} does not fit {space}: expected a "
                                 f"mapping with keys {keys}")
            parts = [(space[k], obs[k]) for k in keys]
        else:
            if not isinstance(obs, tuple | list) or len(obs) != len(space.spaces):
                got = f"of {len(obs)}" if isinstance(obs, tuple | list) else type(obs).__name__
                raise ValueError(f"observation {got} does not fit {space}: expected a tuple "
                                 f"of {len(space.spaces)} entries")
            parts = list(zip(space.spaces, obs, strict=True))
        sizes = {_batch_size(sub, part) for sub, part in parts}
        if len(sizes) > 1:
            raise ValueError(f"the entries of an observation of {space} disagree on the "
                             f"batch size: {sorted(sizes, key=str)}")
        return sizes.pop()
    arr = np.asarray(obs)
    if arr.shape == space.shape:
        size = None
    elif arr.ndim == len(space.shape) + 1 and arr.shape[1:] == space.shape:
        size = arr.shape[0]
    else:
        batch = "(B, " + "".join(f"{n}, " for n in space.shape).rstrip(", ") + ")"
        raise ValueError(f"observation of shape {arr.shape} does not fit {space}: expected "
                         f"one observation of shape {space.shape} or a batch {batch}"
                         .replace("(B, )", "(B,)"))
    if isinstance(space, spaces.Discrete | spaces.MultiDiscrete):
        high = space.n if isinstance(space, spaces.Discrete) else space.nvec
        rel = arr - space.start
        if not np.issubdtype(arr.dtype, np.integer) or (rel < 0).any() or (rel >= high).any():
            raise ValueError(f"observation {arr.tolist()} is not in {space}: expected "
                             "integers in its range")
    return size


def _item(space: gym.Space, obs: Any, i: int) -> Any:
    """Observation ``i`` of a columnar batch."""
    if isinstance(space, spaces.Dict):
        return {k: _item(sub, obs[k], i) for k, sub in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(_item(sub, part, i) for sub, part in zip(space.spaces, obs, strict=True))
    return np.asarray(obs)[i]


def check_action_space(space: gym.Space, algo: str, allowed: tuple[str, ...],
                       hint: str = "") -> None:
    """Raise ``UnsupportedSpaceError`` if ``algo`` cannot act in ``space``; ``hint`` (the
    algorithm's ``action_space_hint``) ends the message, naming the alternatives."""
    name = type(space).__name__
    if name not in allowed:
        raise UnsupportedSpaceError(
            f"{algo} cannot handle action space {space} ({name}); {algo} supports: "
            f"{', '.join(allowed)}.{' ' + hint if hint else ''}"
        )
    if isinstance(space, spaces.Box) and not np.issubdtype(space.dtype, np.floating):
        raise UnsupportedSpaceError(f"Box action space {space} must have a float dtype")


class ProbedSpaces(NamedTuple):
    """What ``probe_spaces`` read from an env."""

    obs: gym.Space
    """The observation space the policy sees (after ``wrap_observations``)."""
    action: gym.Space
    env_obs: gym.Space
    """The env's own observation space (what ``flatten_observations`` takes)."""
    agents: tuple[str, ...] | None = None
    """A multi-agent env's ``possible_agents`` (every agent has these spaces); None for a
    single-agent env."""
    turn_based: bool = False
    """A turn-based PettingZoo AEC env (``rl.envs.turn_based``)."""
    agent_spaces: Any = None
    """Multi-agent envs whose agents have different spaces: their ``AgentSpaces`` (then
    ``obs`` is the zero-padded vector every slot holds, ``action`` and ``env_obs`` are
    the first agent's)."""


def probe_spaces(spec: EnvSpec, env_config: dict | None = None) -> ProbedSpaces:
    """Create one env in the driver, reset it once, and return its spaces: the
    prepared observation space, the action space and the env's own observation space.

    Raises:
        EnvError: creating or resetting the env raised, or it does not behave as a
            gymnasium env (``reset`` must return ``(obs, info)`` with ``obs`` of the
            observation space's shape).
        UnsupportedSpaceError: an observation space rl cannot encode.
    """
    from rl.envs.multi_agent import is_multi_agent_env

    env = spec.make(env_config, check=True)
    if is_multi_agent_env(env):
        return _probe_multi_agent(spec, env)
    env_obs = env.observation_space
    env = wrap_observations(env)
    try:
        with env_call(spec.env_id, "reset(seed=0)"):
            out = env.reset(seed=0)
        _check_reset(spec.env_id, out, env.observation_space)
        return ProbedSpaces(env.observation_space, env.action_space, env_obs)
    finally:
        with contextlib.suppress(Exception):  # a failing close() must not hide the cause
            env.close()


def _probe_multi_agent(spec: EnvSpec, env: Any) -> ProbedSpaces:
    """A Parallel-API env's common agent spaces, checked by one ``reset(seed=0)``."""
    from rl.envs.multi_agent import agent_spaces, padded_observation_space
    from rl.envs.turn_based import is_turn_based

    try:
        per_agent = agent_spaces(env, spec.env_id)
        agents, env_obs, action = per_agent.agents, per_agent.env_obs[0], per_agent.action[0]
        prepared = prepare_observation_space(env_obs)
        differ = None
        if not per_agent.uniform:
            prepared, differ = padded_observation_space(per_agent), per_agent
        if is_turn_based(env):
            with env_call(spec.env_id, "reset(seed=0)"):
                env.reset(seed=0)
            with env_call(spec.env_id, "last()"):
                env.last()
            return ProbedSpaces(prepared, action, env_obs, agents, turn_based=True,
                                agent_spaces=differ)
        with env_call(spec.env_id, "reset(seed=0)"):
            out = env.reset(seed=0)
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], dict)):
            raise EnvError(f"env {spec.env_id!r}: reset(seed=0) returned {type(out).__name__}; "
                           "a PettingZoo Parallel env returns (observations, infos), dicts "
                           "keyed by agent")
        for attr in ("agents", "step"):
            if not hasattr(env, attr):
                raise EnvError(f"env {spec.env_id!r}: {type(env).__name__} is not a PettingZoo "
                               f"Parallel env: it has no {attr!r} attribute after reset() "
                               "(the Parallel API: possible_agents, agents, "
                               "observation_space(agent), action_space(agent), reset, step)")
        unknown = sorted(set(out[0]) - set(agents))
        if unknown:
            raise EnvError(f"env {spec.env_id!r}: reset(seed=0) returned observations of "
                           f"{unknown}, which are not in possible_agents {list(agents)}")
        return ProbedSpaces(prepared, action, env_obs, agents, agent_spaces=differ)
    finally:
        with contextlib.suppress(Exception):
            env.close()


def _check_reset(env_id: str, out: Any, space: gym.Space) -> None:
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
        got = f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
        raise EnvError(f"env {env_id!r}: reset(seed=0) returned {got}; a gymnasium env returns "
                       "(obs, info) with info a dict")
    if isinstance(space, spaces.Box) and np.shape(out[0]) != space.shape:
        raise EnvError(f"env {env_id!r}: reset(seed=0) returned an observation of shape "
                       f"{np.shape(out[0])}, but its observation_space is {space}")
