"""``ObsAdapter``: a model behind the flat observation vector of a ``Dict`` space, which
masks its outputs with the observation's ``action_mask`` (see ``rl.policies.model_spec``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rl.envs.obs_layout import ObsLayout
from rl.policies.distributions import masked_logits
from rl.policies.model_spec import Q

__all__ = ["ObsAdapter"]


class ObsAdapter(nn.Module):
    """A model behind the flat observation vector of a ``Dict`` space: hands it the
    dict (a user's model) or the vector without the mask (the built-in ones), and masks
    its outputs with the observation's ``action_mask``.

    Attributes:
        model: the wrapped model (its state dict keys get the prefix ``model.``).
    """

    def __init__(self, model: nn.Module, layout: ObsLayout, as_dict: bool, kind: str,
                 action_space: spaces.Space):
        super().__init__()
        self.model = model
        self.layout = layout
        self.as_dict = as_dict
        self.q = kind == Q
        nvec = getattr(action_space, "nvec", None)
        self.sizes = None if nvec is None else tuple(int(n) for n in np.ravel(nvec))

    def forward(self, obs: torch.Tensor, *args: Any, **kwargs: Any):
        """``obs [..., width]``; a recurrent model's state and previous action / reward
        (``args``, ``kwargs``) go to the wrapped model as they are."""
        layout = self.layout
        if self.as_dict:
            out = self.model(layout.to_dict(obs), *args, **kwargs)
        else:
            out = self.model(obs if layout.mask is None else layout.split(obs)[0], *args,
                             **kwargs)
        if layout.mask is None:
            return out
        return self.apply_mask(out, layout.split(obs)[1])

    def initial_state(self, batch_size: int):
        """The wrapped recurrent model's initial state."""
        return self.model.initial_state(batch_size)

    def apply_mask(self, out, mask: torch.Tensor):
        """Mask a model's output (Q-values, or the first of ``(dist_inputs, values)`` and
        of a recurrent model's ``(dist_inputs, values, state)``)."""
        if self.q:
            return masked_logits(out, mask)
        if not isinstance(out, tuple | list) or len(out) not in (2, 3):
            return out  # the contract check reports what came back
        return (masked_logits(out[0], mask, self.sizes), *out[1:])
