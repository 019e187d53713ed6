"""Inference policies: how a worker turns observations into actions and extra columns.

* ``ActorCriticPolicy`` (PPO, IMPALA): samples from the action distribution and
  records ``logp``, ``vf_preds`` and the ``behaviour_logits`` (distribution inputs).
* ``QPolicy`` (DQN): epsilon-greedy over Q-values, epsilon sent with each request.
* ``SquashedGaussianPolicy`` (SAC): samples ``tanh`` of the actor's Gaussian, or
  uniform actions in (-1, 1) when the request says ``random`` (SAC's warm-up); the
  worker rescales them to the Box's bounds.

Both build their network from the algorithm's ``ModelSpec`` (the learner builds the
same one, so the flat weights fit) and do one forward per vector step. The built-in
MLP models run through their numpy mirror (``rl.policies.numpy_mlp``: several times
cheaper than torch at worker batch sizes), refreshed on every ``load_weights``; every
other model, a user's included, runs in torch under ``inference_mode`` (one thread per
worker process). Sampling and log-probabilities always use the torch distributions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rl.data import columns as C
from rl.policies import DistributionSpec, ModelSpec, load_flat_params
from rl.policies.model_spec import SQUASHED_GAUSSIAN, Q
from rl.policies.numpy_mlp import compile_actor_critic, compile_q_network, compile_squashed_actor

__all__ = ["ActorCriticPolicy", "QPolicy", "SquashedGaussianPolicy", "build_inference_policy"]


class ActorCriticPolicy:
    """Stochastic actor-critic inference."""

    def __init__(self, model: ModelSpec):
        self.module = model.build()
        self.module.eval()
        self.dist_spec = DistributionSpec(model.action_space)
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
        return self._forward(obs)[1].numpy()

    @torch.inference_mode()
    def greedy(self, obs: torch.Tensor) -> np.ndarray:
        dist_inputs, _ = self._forward(obs)
        return self.dist_spec(dist_inputs).deterministic().numpy()


class QPolicy:
    """Epsilon-greedy over a Q-network; ``request["epsilon"]`` sets the exploration rate."""

    def __init__(self, model: ModelSpec):
        self.module = model.build()
        self.module.eval()
        self.n_actions = int(model.action_space.n)
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


class SquashedGaussianPolicy:
    """SAC's actor; ``request["random"]`` samples uniform actions instead (warm-up)."""

    def __init__(self, model: ModelSpec):
        self.module = model.build()
        self.module.eval()
        self.dist_spec = model.dist_spec
        self._fast = compile_squashed_actor(self.module)

    def load_weights(self, vector: np.ndarray) -> None:
        load_flat_params(self.module, vector)
        if self._fast is not None:
            self._fast = compile_squashed_actor(self.module)

    def columns(self) -> dict[str, tuple[tuple[int, ...], type]]:
        return {}

    def _dist_inputs(self, obs: torch.Tensor) -> torch.Tensor:
        if self._fast is not None:
            return torch.from_numpy(self._fast(obs.numpy()))
        return self.module(obs)

    @torch.inference_mode()
    def act(self, obs: torch.Tensor, generator: torch.Generator, request: dict) -> dict[str, Any]:
        if request.get("random"):
            shape = (obs.shape[0], self.dist_spec.action_dim)
            actions = torch.rand(shape, generator=generator) * 2.0 - 1.0
        else:
            actions = self.dist_spec(self._dist_inputs(obs)).sample(generator)
        return {C.ACTIONS: actions.numpy()}

    @torch.inference_mode()
    def greedy(self, obs: torch.Tensor) -> np.ndarray:
        return self.dist_spec(self._dist_inputs(obs)).deterministic().numpy()


def build_inference_policy(model: ModelSpec
                           ) -> ActorCriticPolicy | QPolicy | SquashedGaussianPolicy:
    """The worker-side policy for the model's kind (``actor_critic``, ``q`` or
    ``squashed_gaussian``)."""
    if model.kind == Q:
        return QPolicy(model)
    if model.kind == SQUASHED_GAUSSIAN:
        return SquashedGaussianPolicy(model)
    return ActorCriticPolicy(model)
