"""Where each part of a flattened ``Dict`` observation lies, and the action mask's columns.

Dict observations travel through rl as one flat float vector (``gymnasium.spaces.flatten``,
which concatenates the keys in the space's order). An env whose observation space is a
``Dict`` with the key ``action_mask`` (1 = allowed) is masked: ``ObsLayout`` says which
columns of the flat vector are the mask, which are the rest (what the built-in models
see), and how to give a user's model the whole dict back (``to_dict``). Masks are never
normalised (``RolloutWorker.normalize`` keeps their columns raw).

Mask shapes: ``[n]`` for ``Discrete(n)``, ``[sum(nvec)]`` for ``MultiDiscrete(nvec)``; the
sub-space is a ``MultiBinary(n)`` or a ``Box`` of shape ``(n,)`` (PettingZoo's classic
games use ``Box(0, 1, (n,), int8)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np
from gymnasium import spaces

if TYPE_CHECKING:
    import torch

__all__ = ["ACTION_MASK", "ObsLayout", "check_action_mask"]

ACTION_MASK = "action_mask"


@dataclass(frozen=True)
class ObsLayout:
    """Column ranges of a flattened Dict observation (picklable).

    Attributes:
        keys: ``(key, start, stop, shape)`` per key in flatten order; ``shape`` is the
            sub-space's own shape for a Box (the model gets it reshaped) and None for
            spaces that flatten to one-hot or binary vectors (the model gets those flat).
        mask: ``(start, stop)`` of the action mask's columns, or None.
        width: the flat vector's width.
    """

    keys: tuple[tuple[str, int, int, tuple[int, ...] | None], ...]
    mask: tuple[int, int] | None
    width: int

    @classmethod
    def of(cls, env_obs_space: gym.Space) -> ObsLayout | None:
        """The layout of a Dict space (None for every other space)."""
        if not isinstance(env_obs_space, spaces.Dict):
            return None
        keys, offset, mask = [], 0, None
        for key, sub in env_obs_space.spaces.items():
            width = int(spaces.flatdim(sub))
            shape = tuple(sub.shape) if isinstance(sub, spaces.Box) else None
            keys.append((key, offset, offset + width, shape))
            if key == ACTION_MASK:
                mask = (offset, offset + width)
            offset += width
        return cls(tuple(keys), mask, offset)

    @property
    def rest_width(self) -> int:
        """Columns that are not the mask."""
        return self.width - (0 if self.mask is None else self.mask[1] - self.mask[0])

    def split(self, flat):
        """``(rest, mask)`` of a flat batch ``[..., width]`` (numpy or torch)."""
        a, b = self.mask
        # torch only for a tensor (then already imported): numpy callers never load it.
        cat = np.concatenate if isinstance(flat, np.ndarray) else _torch_cat
        rest = flat[..., b:] if a == 0 else flat[..., :a] if b == self.width else \
            cat([flat[..., :a], flat[..., b:]], -1)
        return rest, flat[..., a:b]

    def to_dict(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """A flat batch ``[..., width]`` as the dict of tensors a user's model receives."""
        out = {}
        for key, start, stop, shape in self.keys:
            part = flat[..., start:stop]
            out[key] = part.reshape(*flat.shape[:-1], *shape) if shape is not None else part
        return out


def _torch_cat(tensors, dim):
    import torch

    return torch.cat(tensors, dim)


def check_action_mask(env_obs_space: gym.Space, action_space: gym.Space, algo: str) -> None:
    """Raise ``UnsupportedSpaceError`` if the env's ``action_mask`` cannot mask its actions."""
    from rl.envs.spaces import UnsupportedSpaceError

    if not (isinstance(env_obs_space, spaces.Dict) and ACTION_MASK in env_obs_space.spaces):
        return
    sub = env_obs_space[ACTION_MASK]
    if isinstance(action_space, spaces.Discrete):
        width, what = int(action_space.n), f"[{int(action_space.n)}] for {action_space}"
    elif isinstance(action_space, spaces.MultiDiscrete):
        width = int(np.sum(action_space.nvec))
        what = f"[sum(nvec)] = [{width}] for {action_space}"
    else:
        raise UnsupportedSpaceError(
            f"{algo}: the observation has an '{ACTION_MASK}' key, but action masks apply to "
            f"Discrete and MultiDiscrete actions only, not {action_space}")
    if not isinstance(sub, spaces.MultiBinary | spaces.Box) or tuple(sub.shape) != (width,):
        raise UnsupportedSpaceError(
            f"{algo}: observation key '{ACTION_MASK}' is {sub}; an action mask must be a "
            f"MultiBinary or Box of shape {what} (1 = allowed)")
