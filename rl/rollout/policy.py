"""Inference policies: how a worker turns observations into actions and extra columns.

* ``ActorCriticPolicy`` (PPO, IMPALA): samples from the action distribution and
  records ``logp``, ``vf_preds`` and the ``behaviour_logits`` (distribution inputs).
* ``QPolicy`` (DQN): epsilon-greedy over Q-values, epsilon sent with each request.
* ``RecurrentActorCriticPolicy`` (PPO with a recurrent model): as ``ActorCriticPolicy``,
  carrying one model state per sub-env across steps (and fragments); the worker resets
  a sub-env's state where its episode starts and records the states the learner's
  sequences start from.
* ``SquashedGaussianPolicy`` (SAC): samples ``tanh`` of the actor's Gaussian, or
  uniform actions in (-1, 1) when the request says ``random`` (SAC's warm-up); the
  worker rescales them to the Box's bounds.

Both build their network from the algorithm's ``ModelSpec`` (the learner builds the
same one, so the flat weights fit) and do one forward per vector step. The built-in
MLP models run through their numpy mirror (``rl.policies.numpy_mlp``: several times
cheaper than torch at worker batch sizes), refreshed on every ``load_weights``; every
other model, a user's included, runs in torch under ``inference_mode`` (one thread per
worker process). Sampling and log-probabilities always use the torch distributions.

Action masks (``action_mask`` in a Dict observation) are applied by the model's
``ObsAdapter`` (``rl.policies.obs_adapter``), so every path here acts on masked logits
or Q-values; the numpy mirror of a masked built-in model masks its outputs with the
same function. DQN's epsilon-random actions are drawn among the allowed ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rl.data import columns as C
from rl.policies import DistributionSpec, ModelSpec, load_flat_params
from rl.policies.model_spec import SQUASHED_GAUSSIAN, Q
from rl.policies.numpy_mlp import compile_actor_critic, compile_q_network, compile_squashed_actor
from rl.policies.obs_adapter import ObsAdapter

__all__ = ["ActorCriticPolicy", "QPolicy", "RecurrentActorCriticPolicy", "SquashedGaussianPolicy",
           "build_inference_policy"]


class ActorCriticPolicy:
    """Stochastic actor-critic inference."""

    def __init__(self, model: ModelSpec):
        self.module = model.build()
        self.module.eval()
        self.dist_spec = DistributionSpec(model.action_space)
        self._fast = _mirror(self.module, compile_actor_critic)

    def load_weights(self, vector: np.ndarray) -> None:
        """Copy a flat weight vector into the module (and its numpy mirror)."""
        load_flat_params(self.module, vector)
        if self._fast is not None:
            self._fast = _mirror(self.module, compile_actor_critic)

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
        self.layout = model.layout if model.masked else None
        self._fast = _mirror(self.module, compile_q_network)

    def load_weights(self, vector: np.ndarray) -> None:
        load_flat_params(self.module, vector)
        if self._fast is not None:
            self._fast = _mirror(self.module, compile_q_network)

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
        if self.layout is None:
            random = torch.randint(self.n_actions, (n,), generator=generator)
        else:  # uniform among the allowed actions (all of them where none is allowed)
            allowed = self.layout.split(obs)[1] > 0.5
            allowed = allowed | ~allowed.any(-1, keepdim=True)
            random = torch.multinomial(allowed.float(), 1, generator=generator).squeeze(-1)
        return {C.ACTIONS: torch.where(explore, random, greedy).numpy()}

    @torch.inference_mode()
    def greedy(self, obs: torch.Tensor) -> np.ndarray:
        return self.q_values(obs).argmax(dim=-1).numpy()


class RecurrentActorCriticPolicy:
    """Stochastic actor-critic inference with a recurrent model: ``state`` holds what each
    sub-env carries from step to step, a list of float32 arrays ``[N, ...]``: the model's
    state (the ``initial_state`` layout, ``num_model_states`` arrays), then, for a model
    that takes them (``ModelSpec.prev_inputs``), the previous action ``[N,
    *action_shape]`` and the previous reward ``[N]`` (zeros at an episode's start).
    ``act``/``greedy``/``value`` read it; ``act``/``greedy`` advance the model state and
    record the action taken, ``observe`` the rewards the env returned for it."""

    def __init__(self, model: ModelSpec, num_envs: int):
        self.module = model.build()
        self.module.eval()
        self.dist_spec = DistributionSpec(model.action_space)
        self.prev_inputs = model.prev_inputs
        with torch.no_grad():
            initial = [t.numpy().astype(np.float32)[0] for t in self.module.initial_state(1)]
        self.num_model_states = len(initial)
        shapes = {C.PREV_ACTIONS: self.dist_spec.action_shape, C.PREV_REWARDS: ()}
        self.initial = initial + [np.zeros(shapes[k], np.float32) for k in self.prev_inputs]
        self.state = [np.repeat(s[None], num_envs, axis=0) for s in self.initial]

    def load_weights(self, vector: np.ndarray) -> None:
        load_flat_params(self.module, vector)

    def columns(self) -> dict[str, tuple[tuple[int, ...], type]]:
        return {
            C.LOGP: ((), np.float32),
            C.VF_PREDS: ((), np.float32),
            C.BEHAVIOUR_LOGITS: ((self.dist_spec.input_dim,), np.float32),
            **{k: (s.shape, np.float32) for k, s in
               zip(self.prev_inputs, self.initial[self.num_model_states:])},
        }

    def state_shapes(self) -> list[tuple[int, ...]]:
        """The shapes of the model's state tensors (what the learner's sequences start
        from; the previous action and reward are per-step columns instead)."""
        return [s.shape for s in self.initial[: self.num_model_states]]

    def reset_state(self, i: int) -> None:
        """Sub-env ``i`` starts an episode: its state is the initial one again."""
        for s, init in zip(self.state, self.initial):
            s[i] = init

    def reset_states(self, where: np.ndarray) -> None:
        """The sub-envs (slots) flagged in ``where`` hold the initial state."""
        for s, init in zip(self.state, self.initial):
            s[where] = init

    def env_state(self, i: int) -> list[np.ndarray]:
        """A copy of sub-env ``i``'s state."""
        return [s[i].copy() for s in self.state]

    def observe(self, rewards: np.ndarray) -> None:
        """The env's rewards ``[N]`` for the actions just taken: the next step's previous
        rewards (a no-op for a model that does not read them)."""
        if C.PREV_REWARDS in self.prev_inputs:
            self.state[-1] = np.asarray(rewards, np.float32).copy()

    def _step(self, obs: torch.Tensor, state: list[np.ndarray]):
        k = self.num_model_states
        prev = {name: torch.from_numpy(s)[:, None]
                for name, s in zip(self.prev_inputs, state[k:])}
        with torch.inference_mode():
            dist_inputs, values, new = self.module(
                obs[:, None], tuple(torch.from_numpy(s) for s in state[:k]), **prev)
        return dist_inputs[:, 0], values[:, 0], [t.numpy() for t in new]

    def _advance(self, new: list[np.ndarray], actions: torch.Tensor) -> None:
        rest = self.state[self.num_model_states:]
        if C.PREV_ACTIONS in self.prev_inputs:
            rest[0] = actions.numpy().astype(np.float32).reshape(rest[0].shape)
        self.state = new + rest

    def act(self, obs: torch.Tensor, generator: torch.Generator, request: dict) -> dict[str, Any]:
        inputs = dict(zip(self.prev_inputs, self.state[self.num_model_states:]))
        dist_inputs, values, new = self._step(obs, self.state)
        with torch.inference_mode():
            dist = self.dist_spec(dist_inputs)
            actions = dist.sample(generator)
            logp = dist.log_prob(actions)
        self._advance(new, actions)
        return {C.ACTIONS: actions.numpy(), C.LOGP: logp.numpy(), C.VF_PREDS: values.numpy(),
                C.BEHAVIOUR_LOGITS: dist_inputs.numpy(), **inputs}

    def value(self, obs: torch.Tensor, state: list[np.ndarray] | None = None) -> np.ndarray:
        """V(obs) from ``state`` (default: the carried one); the state does not advance."""
        return self._step(obs, self.state if state is None else state)[1].numpy()

    def greedy(self, obs: torch.Tensor) -> np.ndarray:
        dist_inputs, _, new = self._step(obs, self.state)
        actions = self.dist_spec(dist_inputs).deterministic()
        self._advance(new, actions)
        return actions.numpy()


def _mirror(module, compile_fn):
    """The numpy mirror of a built-in model, also behind a masking ``ObsAdapter`` (the
    mirror runs on the columns without the mask; the adapter's mask follows in torch)."""
    if not isinstance(module, ObsAdapter):
        return compile_fn(module)
    if module.as_dict:
        return None
    inner = compile_fn(module.model)
    if inner is None:
        return None
    layout = module.layout

    def forward(obs: np.ndarray):
        rest, mask = layout.split(obs)
        out = inner(np.ascontiguousarray(rest))
        mask = torch.from_numpy(np.ascontiguousarray(mask))
        if isinstance(out, tuple):
            return module.apply_mask((torch.from_numpy(out[0]), out[1]), mask)[0].numpy(), out[1]
        return module.apply_mask(torch.from_numpy(out), mask).numpy()

    return forward


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


def build_inference_policy(model: ModelSpec, num_envs: int = 1
                           ) -> ActorCriticPolicy | QPolicy | RecurrentActorCriticPolicy \
        | SquashedGaussianPolicy:
    """The worker-side policy for the model's kind (``actor_critic``, ``q``,
    ``squashed_gaussian`` or ``recurrent_actor_critic``, which keeps a state for each of
    ``num_envs`` sub-envs)."""
    if model.recurrent:
        return RecurrentActorCriticPolicy(model, num_envs)
    if model.kind == Q:
        return QPolicy(model)
    if model.kind == SQUASHED_GAUSSIAN:
        return SquashedGaussianPolicy(model)
    return ActorCriticPolicy(model)
