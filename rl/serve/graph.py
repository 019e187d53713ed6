"""The inference graph: one ``nn.Module`` from a prepared observation batch to actions.

``InferenceGraph`` folds in everything ``Algorithm.compute_actions`` does after the
observations are flattened (``rl.envs.flatten_observations``), so an exported file
needs nothing else:

1. the observation filter (``normalize_obs``): ``clip((x - mean) / sqrt(var + eps))``
   with the checkpoint's statistics as buffers, computed in float64 like
   ``RunningMeanStd.normalize``; an action mask's columns pass through raw;
2. the model (behind its ``ObsAdapter`` for Dict observations, which applies the
   action mask: ``rl.policies.model_spec``);
3. the action: greedy (Categorical argmax, per sub-action for MultiDiscrete, the
   Gaussian's mean, ``tanh`` of it for SAC's squashed Gaussian; for a Q-model the
   argmax of the masked Q-values) or, with ``stochastic``, sampled: Gumbel-max on the
   log-probabilities for (Multi)Categorical, ``mean + std * noise`` for the Gaussian
   (squashed by ``tanh`` for SAC, its log-std clamped as in training). The noise comes from ``torch.rand_like`` /
   ``torch.randn_like`` of the graph's own tensors, which export as ONNX
   ``RandomUniformLike`` / ``RandomNormalLike``: a fresh draw on every call, no extra
   input, and no fixed seed baked into the file;
4. what ``DistributionSpec.env_actions`` does: Box actions clipped to the bounds (SAC's
   ``(-1, 1)`` actions first rescaled to them) and reshaped to the action space's shape, Discrete/MultiDiscrete ``start`` offsets added.

Outputs: ``actions`` first; then, for actor-critic models, ``values`` ``[B]`` and
``logits`` (the masked distribution inputs ``[B, D]``); for Q-models ``q_values``
``[B, n]``; for SAC's actor (no value head) ``logits``, its ``[B, 2d]`` mean and log-std. Only tensor operations are used on the batch dimension, so the batch size
stays dynamic.

``RecurrentInferenceGraph`` is one step of a recurrent policy (``use_lstm`` or a model
with ``initial_state``): inputs ``obs`` then ``state_in_0 .. state_in_{n-1}`` (the model's
state tensors ``[B, ...]`` in ``initial_state``'s order, then, with
``lstm_use_prev_action``, the policy action of the previous step ``[B, *action_shape]``
float32, indices without the ``start`` offset, unclipped, as the workers record it), then
``prev_rewards`` ``[B]`` with ``lstm_use_prev_reward``; outputs ``actions``, ``values``,
``logits``, then ``state_out_0 ..`` in the order of the ``state_in`` inputs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from rl.policies.dist_spec import LOG_STD_MAX, LOG_STD_MIN
from rl.policies.distributions import DistributionSpec
from rl.policies.model_spec import PREV_INPUTS, SQUASHED_GAUSSIAN, Q

__all__ = ["InferenceGraph", "RecurrentInferenceGraph", "STATE_IN", "STATE_OUT",
           "PREV_REWARDS_INPUT"]

STATE_IN, STATE_OUT = "state_in_{}", "state_out_{}"
PREV_REWARDS_INPUT = "prev_rewards"


class InferenceGraph(nn.Module):
    """Prepared observations ``[B, *obs_shape]`` -> ``(actions, ...)``; see the module doc.

    Args:
        model: the trained model (its ``ObsAdapter`` included), in eval mode.
        kind: ``actor_critic``, ``q`` or ``squashed_gaussian`` (SAC's actor).
        action_space: the env's action space.
        obs_filter: ``(mean, var, clip, eps)`` of the observation filter, or None.
        mask_columns: ``(start, stop)`` of the action mask in the flat observation.
        stochastic: sample actions instead of taking the greedy one.
    """

    def __init__(self, model: nn.Module, kind: str, action_space: spaces.Space,
                 obs_filter: tuple[np.ndarray, np.ndarray, float, float] | None = None,
                 mask_columns: tuple[int, int] | None = None, stochastic: bool = False):
        super().__init__()
        if stochastic and kind == Q:
            raise ValueError("a Q-model's policy is the greedy argmax of its Q-values; "
                             "stochastic export needs an actor-critic model")
        self.model = model
        self.q = kind == Q
        self.actor_only = kind == SQUASHED_GAUSSIAN  # SAC: dist inputs, no value head
        self.stochastic = stochastic
        self.action_shape = tuple(action_space.shape)
        self.dist = DistributionSpec(action_space, squashed=self.actor_only)
        self.normalize = obs_filter is not None
        if obs_filter is not None:
            mean, var, clip, eps = obs_filter
            self.register_buffer("mean", torch.as_tensor(np.asarray(mean, np.float64)))
            self.register_buffer("std", torch.sqrt(torch.as_tensor(np.asarray(var, np.float64))
                                                   + eps))
            self.clip = float(clip)
            keep = np.zeros(np.shape(mean), bool)
            if mask_columns is not None:
                keep[..., mask_columns[0]:mask_columns[1]] = True
            self.register_buffer("keep_raw", torch.as_tensor(keep))
        start = _start(action_space)
        self.register_buffer("start", torch.as_tensor(start, dtype=torch.int64))
        if self.dist.is_continuous:
            self.register_buffer("low", torch.as_tensor(self.dist.low))
            self.register_buffer("high", torch.as_tensor(self.dist.high))

    @property
    def output_names(self) -> list[str]:
        if self.q:
            return ["actions", "q_values"]
        return ["actions", "logits"] if self.actor_only else ["actions", "values", "logits"]

    def prepare(self, obs: torch.Tensor) -> torch.Tensor:
        """The observations as the model sees them (``RolloutWorker.normalize``)."""
        if not self.normalize:
            return obs
        z = ((obs.to(torch.float64) - self.mean) / self.std).clamp(-self.clip, self.clip)
        z = z.to(torch.float32)
        return torch.where(self.keep_raw, obs.to(torch.float32), z).to(obs.dtype)

    def forward(self, obs: torch.Tensor):
        out = self.model(self.prepare(obs))
        if self.q:
            return torch.argmax(out, dim=-1) + self.start, out
        if self.actor_only:
            return self.dist_action(out), out
        logits, values = out
        return self.dist_action(logits), values, logits

    def dist_action(self, logits: torch.Tensor) -> torch.Tensor:
        """The env action for distribution inputs ``[B, D]``."""
        return self.env_action(self.policy_action(logits))

    def policy_action(self, logits: torch.Tensor) -> torch.Tensor:
        """The distribution's action (greedy or sampled) for ``[B, D]``: indices from 0
        (``[B]``, ``[B, n]`` for MultiDiscrete), the Gaussian's unclipped ``[B, d]``."""
        kind = self.dist.kind
        if kind == "squashed_gaussian":
            mean, log_std = torch.chunk(logits, 2, dim=-1)
            if not self.stochastic:
                return torch.tanh(mean)
            std = torch.exp(log_std.clamp(LOG_STD_MIN, LOG_STD_MAX))
            return torch.tanh(mean + std * torch.randn_like(mean))
        if kind == "diag_gaussian":
            mean, log_std = torch.chunk(logits, 2, dim=-1)
            return mean + torch.exp(log_std) * torch.randn_like(mean) if self.stochastic \
                else mean
        groups = [logits] if kind == "categorical" else \
            list(torch.split(logits, list(self.dist.nvec), dim=-1))
        picks = [self._pick(F.log_softmax(g, dim=-1)) for g in groups]
        return picks[0] if kind == "categorical" else torch.stack(picks, dim=-1)

    def env_action(self, action: torch.Tensor) -> torch.Tensor:
        """``policy_action``'s action as the env takes it (clipped, offset, reshaped)."""
        if self.dist.kind == "squashed_gaussian":  # (-1, 1) -> [low, high]
            action = self.low + 0.5 * (action + 1.0) * (self.high - self.low)
        if self.dist.is_continuous:
            action = torch.maximum(torch.minimum(action, self.high), self.low)
            return action.reshape((-1,) + self.action_shape)
        if self.dist.kind == "categorical":
            return action + self.start
        return (action + self.start).reshape((-1,) + self.action_shape)

    def _pick(self, logp: torch.Tensor) -> torch.Tensor:
        if not self.stochastic:
            return torch.argmax(logp, dim=-1)
        # Gumbel-max, as Categorical.sample: argmax(logp - log(-log(u))), u ~ U(0, 1).
        u = torch.rand_like(logp).clamp_min(1e-20)
        return torch.argmax(logp - torch.log(-torch.log(u)), dim=-1)


class RecurrentInferenceGraph(InferenceGraph):
    """One step of a recurrent policy: ``(obs, *state_in[, prev_rewards]) -> (actions,
    values, logits, *state_out)``; see the module docstring.

    Args:
        model, action_space, obs_filter, mask_columns, stochastic: as for
            ``InferenceGraph``.
        num_model_states: how many tensors ``initial_state`` returns.
        prev_inputs: the model's ``ModelSpec.prev_inputs`` (``prev_actions`` /
            ``prev_rewards``, the built-in LSTM's previous action and reward).
    """

    def __init__(self, model: nn.Module, action_space: spaces.Space,
                 obs_filter: tuple[np.ndarray, np.ndarray, float, float] | None = None,
                 mask_columns: tuple[int, int] | None = None, stochastic: bool = False, *,
                 num_model_states: int, prev_inputs: tuple[str, ...] = ()):
        super().__init__(model, "recurrent_actor_critic", action_space, obs_filter,
                         mask_columns, stochastic)
        self.num_model_states = int(num_model_states)
        self.prev_action = PREV_INPUTS[0] in prev_inputs
        self.prev_reward = PREV_INPUTS[1] in prev_inputs
        self.num_states = self.num_model_states + int(self.prev_action)
        self.dist_action_shape = tuple(self.dist.action_shape)

    @property
    def input_names(self) -> list[str]:
        return ["obs", *(STATE_IN.format(i) for i in range(self.num_states)),
                *([PREV_REWARDS_INPUT] if self.prev_reward else [])]

    @property
    def output_names(self) -> list[str]:
        return ["actions", "values", "logits",
                *(STATE_OUT.format(i) for i in range(self.num_states))]

    def forward(self, obs: torch.Tensor, *inputs: torch.Tensor):
        k, n = self.num_model_states, self.num_states
        kwargs = {}
        if self.prev_action:
            kwargs[PREV_INPUTS[0]] = inputs[k][:, None]
        if self.prev_reward:
            kwargs[PREV_INPUTS[1]] = inputs[n][:, None]
        logits, values, new = self.model(self.prepare(obs)[:, None], tuple(inputs[:k]),
                                         **kwargs)
        logits, values = logits[:, 0], values[:, 0]
        action = self.policy_action(logits)
        states = list(new)
        if self.prev_action:
            states.append(action.to(torch.float32).reshape((-1,) + self.dist_action_shape))
        return (self.env_action(action), values, logits, *states)


def _start(action_space: spaces.Space) -> np.ndarray:
    start = getattr(action_space, "start", 0)
    return np.asarray(start, np.int64).reshape(-1) if isinstance(
        action_space, spaces.MultiDiscrete) else np.asarray(int(start) if isinstance(
            action_space, spaces.Discrete) else 0, np.int64)
