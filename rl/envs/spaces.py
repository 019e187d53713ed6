"""Space handling: which spaces rl supports and how observations are prepared.

Observations: ``Box`` of rank 1 (MLP), rank 3 (images, Nature CNN; channels-last
HWC is transposed to CHW by the encoder), rank 2 or >3 (flattened for the MLP);
``Discrete`` (one-hot), ``MultiDiscrete``/``MultiBinary``, ``Dict`` and ``Tuple``
(flattened to one float vector). Actions: ``Discrete``, ``Box``, ``MultiDiscrete``.

``probe_spaces`` creates one env in the driver before any process starts, resets it once
and reads its spaces; every failure is one ``EnvError`` naming the env and the call.
"""

from __future__ import annotations

import contextlib
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rl.envs.registry import EnvError, EnvSpec, env_call

__all__ = [
    "SUPPORTED_ACTION_SPACES",
    "UnsupportedSpaceError",
    "check_action_space",
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


def _needs_flatten(space: gym.Space) -> bool:
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
        _needs_flatten(space)
        return
    raise UnsupportedSpaceError(
        f"observation sub-space {space} is not supported inside Dict/Tuple; supported: "
        "Box, Discrete, MultiDiscrete, MultiBinary"
    )


def wrap_observations(env: gym.Env) -> gym.Env:
    """Flatten observation spaces the encoders cannot take directly."""
    if _needs_flatten(env.observation_space):
        env = gym.wrappers.FlattenObservation(env)
    return env


def prepare_observation_space(space: gym.Space) -> gym.Space:
    """The observation space the policy sees after ``wrap_observations``."""
    return spaces.flatten_space(space) if _needs_flatten(space) else space


def check_action_space(space: gym.Space, algo: str, allowed: tuple[str, ...]) -> None:
    """Raise ``UnsupportedSpaceError`` if ``algo`` cannot act in ``space``."""
    name = type(space).__name__
    if name not in allowed:
        hint = " Use PPO or IMPALA for continuous or multi-discrete actions." if algo == "DQN" else ""
        raise UnsupportedSpaceError(
            f"{algo} cannot handle action space {space} ({name}); {algo} supports: "
            f"{', '.join(allowed)}.{hint}"
        )
    if isinstance(space, spaces.Box) and not np.issubdtype(space.dtype, np.floating):
        raise UnsupportedSpaceError(f"Box action space {space} must have a float dtype")


def probe_spaces(spec: EnvSpec, env_config: dict | None = None) -> tuple[gym.Space, gym.Space]:
    """Create one env in the driver, reset it once, and return its (prepared)
    observation and action spaces.

    Raises:
        EnvError: creating or resetting the env raised, or it does not behave as a
            gymnasium env (``reset`` must return ``(obs, info)`` with ``obs`` of the
            observation space's shape).
        UnsupportedSpaceError: an observation space rl cannot encode.
    """
    env = wrap_observations(spec.make(env_config, check=True))
    try:
        with env_call(spec.env_id, "reset(seed=0)"):
            out = env.reset(seed=0)
        _check_reset(spec.env_id, out, env.observation_space)
        return env.observation_space, env.action_space
    finally:
        with contextlib.suppress(Exception):  # a failing close() must not hide the cause
            env.close()


def _check_reset(env_id: str, out: Any, space: gym.Space) -> None:
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
        got = f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
        raise EnvError(f"env {env_id!r}: reset(seed=0) returned {got}; a gymnasium env returns "
                       "(obs, info) with info a dict")
    if isinstance(space, spaces.Box) and np.shape(out[0]) != space.shape:
        raise EnvError(f"env {env_id!r}: reset(seed=0) returned an observation of shape "
                       f"{np.shape(out[0])}, but its observation_space is {space}")
