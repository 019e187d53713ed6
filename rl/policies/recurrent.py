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

Previous action and reward (``lstm_use_prev_action`` / ``lstm_use_prev_reward``, the
built-in LSTM only): the model is built with ``use_prev_action`` / ``use_prev_reward``
and called as ``forward(obs, state, prev_actions=..., prev_rewards=...)`` with, per
row, the action taken at the step before (float32 ``[B, T, *action_shape]``, the
policy's actions: indices for Discrete) and the reward it got (``[B, T]``), zeros at an
episode's first step. The LSTM's input is the encoder's output concatenated with the
action (one-hot per sub-action for Discrete and MultiDiscrete, the vector for Box) and
the reward. Workers record both as the ``prev_actions`` / ``prev_rewards`` columns, so
learners feed the same values (``prev_inputs``).
"""

from __future__ import annotations

import torch
from gymnasium import spaces
from torch import nn

from rl.envs.spaces import is_image_space
from rl.policies.distributions import DistributionSpec
from rl.policies.model_spec import PREV_INPUTS, is_recurrent
from rl.policies.models import build_encoder

__all__ = ["PREV_INPUTS", "LSTMActorCritic", "is_recurrent", "prev_inputs", "states_after",
           "unroll"]



def prev_inputs(columns, index=None) -> dict:
    """The ``prev_actions`` / ``prev_rewards`` entries of a mapping of columns (the
    keyword arguments of a recurrent model's ``forward``), each indexed by ``index``
    when given."""
    return {k: columns[k] if index is None else columns[k][index]
            for k in PREV_INPUTS if k in columns}


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
        use_prev_action: the LSTM also reads the previous action (``prev_actions``).
        use_prev_reward: the LSTM also reads the previous reward (``prev_rewards``).
    """

    def __init__(self, obs_space: spaces.Space, action_space: spaces.Space, num_outputs: int, *,
                 hiddens: list[int] = (64,), activation: str = "tanh",
                 lstm_cell_size: int = 256, cnn_hidden: int = 512,
                 use_prev_action: bool = False, use_prev_reward: bool = False):
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
        self.use_prev_action, self.use_prev_reward = bool(use_prev_action), bool(use_prev_reward)
        # One-hot widths of the action's parts (Discrete, MultiDiscrete); None: a vector.
        self.action_sizes = None if self.continuous else \
            (getattr(dist_spec, "nvec", None) or (dist_spec.input_dim,))
        if self.use_prev_action:
            width += dist_spec.input_dim if not self.continuous else dist_spec.action_dim
        width += int(self.use_prev_reward)
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

    def forward(self, obs: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
                prev_actions: torch.Tensor | None = None,
                prev_rewards: torch.Tensor | None = None):
        B, T = obs.shape[:2]
        features = self.encoder(obs.reshape(B * T, *obs.shape[2:])).reshape(B, T, -1)
        parts = [features]
        if self.use_prev_action:
            if prev_actions is None:
                raise ValueError("LSTMActorCritic(use_prev_action=True).forward needs "
                                 "prev_actions [B, T, *action_shape]")
            if self.action_sizes is None:
                parts.append(prev_actions.reshape(B, T, -1).to(features.dtype))
            else:
                index = prev_actions.reshape(B, T, -1).long()
                parts += [nn.functional.one_hot(index[..., j], n).to(features.dtype)
                          for j, n in enumerate(self.action_sizes)]
        if self.use_prev_reward:
            if prev_rewards is None:
                raise ValueError("LSTMActorCritic(use_prev_reward=True).forward needs "
                                 "prev_rewards [B, T]")
            parts.append(prev_rewards.reshape(B, T, 1).to(features.dtype))
        if len(parts) > 1:
            features = torch.cat(parts, dim=-1)
        h, c = state
        out, (h, c) = self.lstm(features, (h.unsqueeze(0).contiguous(),
                                           c.unsqueeze(0).contiguous()))
        dist_inputs = self.pi_head(out)
        if self.continuous:
            dist_inputs = torch.cat([dist_inputs, self.log_std.expand_as(dist_inputs)], dim=-1)
        return dist_inputs, self.vf_head(out).squeeze(-1), (h.squeeze(0), c.squeeze(0))


def unroll(module: nn.Module, obs: torch.Tensor, start_state: tuple[torch.Tensor, ...],
           initial_state: tuple[torch.Tensor, ...], starts: torch.Tensor,
           prev: dict[str, torch.Tensor] | None = None):
    """A recurrent model over time-major unrolls ``obs [T, N, ...]`` in one forward: each
    env column from ``start_state`` (its state at row 0), from ``initial_state`` again at
    every episode start (``starts [T, N]`` bool, row 0 excluded). ``prev``: the
    ``prev_actions`` / ``prev_rewards`` columns ``[T, N, ...]`` the model takes, if any.

    The columns are cut at the episode starts into padded sequences (so no reset happens
    inside one), run as a batch, and the outputs put back in place.

    Returns:
        ``(dist_inputs [T * N, D], values [T * N])`` in row order ``t * N + n``.
    """
    T, N = starts.shape
    cut = starts.clone()
    cut[0] = True
    env_idx, start_idx = torch.nonzero(cut.T, as_tuple=True)  # sub-env-major
    ends = torch.empty_like(start_idx)
    ends[:-1] = start_idx[1:]
    last = torch.ones_like(start_idx, dtype=torch.bool)
    last[:-1] = env_idx[1:] != env_idx[:-1]
    ends[last] = T
    length = ends - start_idx
    L = int(length.max())
    offsets = torch.arange(L, device=obs.device)
    valid = offsets[None, :] < length[:, None]
    rows = torch.clamp(start_idx[:, None] + offsets[None, :], max=T - 1)
    envs = env_idx[:, None].expand_as(rows)
    seq_obs = obs[rows, envs]
    from_start = start_idx == 0
    state = tuple(torch.where(from_start.reshape(-1, *([1] * (s.dim() - 1))), s[env_idx],
                              init.expand(len(env_idx), *init.shape[1:]))
                  for s, init in zip(start_state, initial_state))
    dist_inputs, values, _ = module(seq_obs, state, **prev_inputs(prev or {}, (rows, envs)))
    flat = (rows * N + envs)[valid]
    out_d = dist_inputs.new_zeros(T * N, dist_inputs.shape[-1])
    out_v = values.new_zeros(T * N)
    out_d = out_d.index_put((flat,), dist_inputs[valid])
    out_v = out_v.index_put((flat,), values[valid])
    return out_d, out_v


@torch.no_grad()
def states_after(module: nn.Module, obs: torch.Tensor, start_state: tuple[torch.Tensor, ...],
                 initial_state: tuple[torch.Tensor, ...], starts: torch.Tensor,
                 prev: dict[str, torch.Tensor] | None = None
                 ) -> list[tuple[torch.Tensor, ...]]:
    """The model state after each row of time-major unrolls (for bootstrap values),
    stepping one row at a time: ``out[t][k][n]`` is tensor ``k`` after row ``t`` of
    column ``n`` (``prev`` as in ``unroll``). Targets only (no gradient)."""
    T = obs.shape[0]
    state = tuple(s.clone() for s in start_state)
    out = []
    for t in range(T):
        if t > 0:
            reset = starts[t].reshape(-1, *([1] * (state[0].dim() - 1)))
            state = tuple(torch.where(reset, init.expand_as(s), s)
                          for s, init in zip(state, initial_state))
        step_prev = {k: v[:, None] for k, v in prev_inputs(prev or {}, t).items()}
        _, _, state = module(obs[t][:, None], state, **step_prev)
        out.append(state)
    return out
