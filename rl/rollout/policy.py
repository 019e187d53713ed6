"""Inference policies: how a worker turns observations into actions and extra columns.

* ``ActorCriticPolicy`` (PPO, IMPALA): samples from the action distribution and
  records ``logp``, ``vf_preds`` and the ``behaviour_logits`` (distribution inputs).
* ``QPolicy`` (DQN): epsilon-greedy over Q-values, epsilon sent with each request.

Both do one forward per vector step. MLP networks run through their numpy mirror
(``rl.policies.numpy_mlp``: several times cheaper than torch at worker batch sizes),
refreshed on every ``load_weights``; other networks run in torch under
``inference_mode``. Sampling and log-probabilities always use the torch
distributions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from rl.data import columns as C
from rl.policies import ActorCritic, ModelConfig, QNetwork, load_flat_params
from rl.policies.numpy_mlp import compile_actor_critic, compile_q_network

__all__ = ["ActorCriticPolicy", "QPolicy", "build_inference_policy"]


class ActorCriticPolicy:
    """Stochastic actor-critic inference."""

    def __init__(self, obs_space: spaces.Space, action_space: spaces.Space, model: ModelConfig):
        self.module = ActorCritic(obs_space, action_space, model)
        self.module.eval()
        self.dist_spec = self.module.dist_spec
        self._fast = compile_actor_critic(self.module)

    def load_weights(self, vector: np.ndarray) -> None:
        """Copy a flat weight vector into the module (and its numpy mirror)."""
        load_flat_params(self.module, vector)
        if self._fast is not None:
            self._fast = compile_actor_critic(self.module)

    def columns(self) -> dict[str, tuple[tuple[int, ...], type]]:
        """Extra per-step columns this policy writes."""
        return {
            C.LOGP: ((), np.float32),
            C.VF_PREDS: ((), np.float32),
            C.BEHAVIOUR_LOGITS: ((self.dist_spec.input_dim,), np.float32),
        }

    def _forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._fast is not None:
            dist_inputs, values = self._fast(obs.numpy())
            return torch.from_numpy(dist_inputs), torch.from_numpy(values)
        return self.module(obs)

    @torch.inference_mode()
    def act(self, obs: torch.Tensor, generator: torch.Generator, request: dict) -> dict[str, Any]:
        dist_inputs, values = self._forward(obs)
        dist = self.dist_spec(dist_inputs)
        actions = dist.sample(generator)
        return {
            C.ACTIONS: actions.numpy(),
            C.LOGP: dist.log_prob(actions).numpy(),
            C.VF_PREDS: values.numpy(),
            C.BEHAVIOUR_LOGITS: dist_inputs.numpy(),
        }

    @torch.inference_mode()
    def value(self, obs: torch.Tensor) -> np.ndarray:
        if self._fast is not None:
            return self._fast(obs.numpy())[1]
        return self.module.value(obs).numpy()

    @torch.inference_mode()
    def greedy(self, obs: torch.Tensor) -> np.ndarray:
        dist_inputs, _ = self._forward(obs)
        return self.dist_spec(dist_inputs).deterministic().numpy()


class QPolicy:
    """Epsilon-greedy over a Q-network; ``request["epsilon"]`` sets the exploration rate."""

    def __init__(self, obs_space: spaces.Space, action_space: spaces.Discrete, model: ModelConfig,
                 dueling: bool = True):
        self.module = QNetwork(obs_space, action_space, model, dueling=dueling)
        self.module.eval()
        self.n_actions = int(action_space.n)
        self._fast = compile_q_network(self.module)

    def load_weights(self, vector: np.ndarray) -> None:
        load_flat_params(self.module, vector)
        if self._fast is not None:
            self._fast = compile_q_network(self.module)

    def columns(self) -> dict[str, tuple[tuple[int, ...], type]]:
        return {}

    def q_values(self, obs: torch.Tensor) -> torch.Tensor:
        if self._fast is not None:
            return torch.from_numpy(self._fast(obs.numpy()))
        return self.module(obs)

    @torch.inference_mode()
    def act(self, obs: torch.Tensor, generator: torch.Generator, request: dict) -> dict[str, Any]:
        epsilon = float(request.get("epsilon", 0.0))
        greedy = self.q_values(obs).argmax(dim=-1)
        n = obs.shape[0]
        explore = torch.rand(n, generator=generator) < epsilon
        random = torch.randint(self.n_actions, (n,), generator=generator)
        return {C.ACTIONS: torch.where(explore, random, greedy).numpy()}

    @torch.inference_mode()
    def greedy(self, obs: torch.Tensor) -> np.ndarray:
        return self.q_values(obs).argmax(dim=-1).numpy()


def build_inference_policy(kind: str, obs_space, action_space, model: ModelConfig,
                           module_options: dict) -> ActorCriticPolicy | QPolicy:
    """The worker-side policy for ``kind`` (``actor_critic`` or ``q``)."""
    if kind == "actor_critic":
        return ActorCriticPolicy(obs_space, action_space, model)
    if kind == "q":
        return QPolicy(obs_space, action_space, model, **module_options)
    raise ValueError(f"unknown policy kind {kind!r}; valid: actor_critic, q")
