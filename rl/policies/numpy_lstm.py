"""A numpy mirror of the built-in LSTM policy (``LSTMActorCritic``) for one worker step.

A rollout worker advances its recurrent policy one step at a time for a handful of
sub-envs; at that size torch's per-op dispatch (encoder, ``nn.LSTM``, two heads, the
state's tensor conversions) costs several times the arithmetic. The worker therefore
runs the step ``encoder -> LSTM cell -> (pi_head, vf_head)`` on float32 arrays copied
out of the module after each weight load, and hands the outputs back to the torch
distributions for sampling and log-probabilities, as ``rl.policies.numpy_mlp`` does for
the feed-forward models. ``benchmarks/recurrent.py`` measures the effect (StatelessCartPole,
8 envs, 64-cell LSTM on a [64] encoder, 2 loaded cores, medians of 3 rounds of 8,192
steps): ``use_lstm`` sampled 6.1k env steps/s in torch (0.29x the feed-forward 20.9k) and
9.1k with the mirror (0.65x the feed-forward 13.9k of that run).

The LSTM cell follows torch's gate order (input, forget, cell, output) with both bias
vectors; the previous action enters one-hot per sub-action (Discrete, MultiDiscrete) or
as the vector (Box), the previous reward as one more input, both after the encoder's
features. Only the built-in class itself is mirrored (not a subclass, not one wrapped
for Dict observations or action masks), and only with an MLP encoder; anything else
returns None and the worker runs torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # numpy_mlp reads torch modules: imported where a module is compiled
    from rl.policies.numpy_mlp import NumpyMLP

__all__ = ["NumpyLSTMActorCritic", "compile_lstm_actor_critic"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + exp(-x)), without overflow


class NumpyLSTMActorCritic:
    """One step of ``LSTMActorCritic`` from plain arrays.

    ``params`` maps the module's parameter names (``lstm.weight_ih_l0``, ``pi_head.bias``,
    ...) to arrays; ``encoder`` is the encoder's numpy MLP; ``action_sizes`` the one-hot
    widths of a discrete previous action (None: a vector, Box).
    """

    def __init__(self, encoder: NumpyMLP, params: dict[str, np.ndarray], *,
                 continuous: bool, action_sizes: tuple[int, ...] | None,
                 use_prev_action: bool, use_prev_reward: bool):
        self.encoder = encoder
        self.w_ih = params["lstm.weight_ih_l0"].T.copy()
        self.w_hh = params["lstm.weight_hh_l0"].T.copy()
        self.bias = params["lstm.bias_ih_l0"] + params["lstm.bias_hh_l0"]
        self.pi = (params["pi_head.weight"].T.copy(), params["pi_head.bias"].copy())
        self.vf = (params["vf_head.weight"].T.copy(), params["vf_head.bias"].copy())
        self.log_std = params.get("log_std") if continuous else None
        self.action_sizes = action_sizes
        self.use_prev_action, self.use_prev_reward = use_prev_action, use_prev_reward

    def __call__(self, obs: np.ndarray, h: np.ndarray, c: np.ndarray,
                 prev_actions: np.ndarray | None = None,
                 prev_rewards: np.ndarray | None = None):
        """``(dist_inputs [B, num_outputs], values [B], h', c')`` for one step of ``B``
        sequences."""
        x = self.encoder(obs)
        parts = [x]
        if self.use_prev_action:
            prev = prev_actions.reshape(len(x), -1)
            if self.action_sizes is None:
                parts.append(prev.astype(np.float32))
            else:
                for j, n in enumerate(self.action_sizes):
                    parts.append(np.eye(n, dtype=np.float32)[prev[:, j].astype(np.int64)])
        if self.use_prev_reward:
            parts.append(prev_rewards.reshape(len(x), 1).astype(np.float32))
        if len(parts) > 1:
            x = np.concatenate(parts, axis=1)
        gates = x @ self.w_ih + h @ self.w_hh + self.bias
        i, f, g, o = np.split(gates, 4, axis=1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        dist_inputs = h @ self.pi[0] + self.pi[1]
        if self.log_std is not None:
            dist_inputs = np.concatenate(
                [dist_inputs, np.broadcast_to(self.log_std, dist_inputs.shape)], axis=1)
        values = (h @ self.vf[0] + self.vf[1])[:, 0]
        return dist_inputs.astype(np.float32), values.astype(np.float32), h, c


def compile_lstm_actor_critic(module) -> Callable | None:
    """The numpy step of a built-in ``LSTMActorCritic`` with an MLP encoder, else None."""
    from rl.policies.numpy_mlp import NumpyMLP, _flat_layers
    from rl.policies.recurrent import LSTMActorCritic

    if type(module) is not LSTMActorCritic or module.image:
        return None
    layers = _flat_layers(module.encoder)
    encoder = None if layers is None else NumpyMLP.from_modules(layers)
    if encoder is None:
        return None
    params = {name: p.detach().numpy().astype(np.float32, copy=True)
              for name, p in module.named_parameters()}
    return NumpyLSTMActorCritic(
        encoder, params, continuous=module.continuous,
        action_sizes=None if module.action_sizes is None else tuple(module.action_sizes),
        use_prev_action=module.use_prev_action, use_prev_reward=module.use_prev_reward)
