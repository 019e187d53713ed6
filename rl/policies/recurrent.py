"""The built-in recurrent model: encoder (MLP or Nature CNN) -> LSTM -> policy and value heads.

Recurrent models follow the model contract of ``rl.policies.model_spec`` with a state::

    class MyRNN(torch.nn.Module):
        def __init__(self, obs_space, action_space, num_outputs, **model_kwargs): ...
        def initial_state(self, batch_size):       # a tuple of tensors [batch_size, ...]
            ...
        def forward(self, obs, state):             # obs [B, T, *obs_shape]
            return dist_inputs, values, state      # [B, T, num_outputs], [B, T], new state

``forward`` runs ``T`` steps of ``B`` independent sequences, each from its own state;
rollout workers call it with ``T = 1`` once per step, learners with whole sequences
(at most ``max_seq_len`` steps, never crossing an episode boundary, so no reset happens
inside one). ``initial_state`` is the state at every episode start.
"""

from __future__ import annotations

import torch
from gymnasium import spaces
from torch import nn

from rl.envs.spaces import is_image_space
from rl.policies.distributions import DistributionSpec
from rl.policies.models import build_encoder

__all__ = ["LSTMActorCritic", "is_recurrent"]


def is_recurrent(cls: type) -> bool:
    """Whether a model class follows the recurrent contract (it has ``initial_state``)."""
    return callable(getattr(cls, "initial_state", None))


class LSTMActorCritic(nn.Module):
    """``encoder -> LSTM(lstm_cell_size) -> (pi_head, vf_head)``; both heads read the LSTM.

    Args:
        obs_space: the prepared observation space.
        action_space: the env's action space.
        num_outputs: the width of ``dist_inputs``.
        hiddens: MLP encoder widths (``model_hiddens``).
        activation: the MLP's activation (``model_activation``).
        lstm_cell_size: the LSTM's hidden size.
        cnn_hidden: width of the CNN's last layer (image observations).
    """

    def __init__(self, obs_space: spaces.Space, action_space: spaces.Space, num_outputs: int, *,
                 hiddens: list[int] = (64,), activation: str = "tanh",
                 lstm_cell_size: int = 256, cnn_hidden: int = 512):
        super().__init__()
        dist_spec = DistributionSpec(action_space)
        if num_outputs != dist_spec.input_dim:
            raise ValueError(f"LSTMActorCritic for {action_space} needs num_outputs="
                             f"{dist_spec.input_dim}, got {num_outputs}")
        self.continuous = dist_spec.is_continuous
        self.obs_shape = tuple(obs_space.shape)
        self.image = is_image_space(obs_space)
        self.encoder, width = build_encoder(obs_space, list(hiddens), activation, cnn_hidden)
        self.cell_size = int(lstm_cell_size)
        self.lstm = nn.LSTM(width, self.cell_size, batch_first=True)
        for name, p in self.lstm.named_parameters():
            if "weight" in name:
                nn.init.orthogonal_(p, 1.0)
            else:
                nn.init.zeros_(p)
        out = dist_spec.action_dim if self.continuous else num_outputs
        self.pi_head = nn.Linear(self.cell_size, out)
        nn.init.orthogonal_(self.pi_head.weight, 0.01)
        nn.init.zeros_(self.pi_head.bias)
        self.vf_head = nn.Linear(self.cell_size, 1)
        nn.init.orthogonal_(self.vf_head.weight, 1.0)
        nn.init.zeros_(self.vf_head.bias)
        if self.continuous:
            self.log_std = nn.Parameter(torch.zeros(out))

    def initial_state(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h, c)``, zeros ``[batch_size, lstm_cell_size]`` each."""
        zeros = torch.zeros(batch_size, self.cell_size)
        return zeros, zeros.clone()

    def forward(self, obs: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        B, T = obs.shape[:2]
        features = self.encoder(obs.reshape(B * T, *obs.shape[2:])).reshape(B, T, -1)
        h, c = state
        out, (h, c) = self.lstm(features, (h.unsqueeze(0).contiguous(),
                                           c.unsqueeze(0).contiguous()))
        dist_inputs = self.pi_head(out)
        if self.continuous:
            dist_inputs = torch.cat([dist_inputs, self.log_std.expand_as(dist_inputs)], dim=-1)
        return dist_inputs, self.vf_head(out).squeeze(-1), (h.squeeze(0), c.squeeze(0))
