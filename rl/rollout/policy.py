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

All build their network from the algorithm's ``ModelSpec`` (the learner builds the
same one, so the flat weights fit) and do one forward per vector step on numpy
observations. The built-in MLP models run in numpy straight from the flat weights
(``rl.policies.numpy_params``: several times cheaper than torch at worker batch sizes,
and no torch import); until the first ``load_weights`` their weights are zeros (a
uniform policy). Every other model, a user's included, runs in torch under
``inference_mode`` (one thread per worker process). Sampling follows the generator the
worker hands in: a ``numpy.random.Generator`` (every policy of the worker runs in
numpy) samples with ``rl.policies.numpy_dists``, a ``torch.Generator`` with the torch
distributions; both give the same log-probabilities. ``module`` builds the torch
module of a numpy policy on demand (export, serving), with the weights last loaded.

Action masks (``action_mask`` in a Dict observation) are applied by the model's
``ObsAdapter`` (``rl.policies.obs_adapter``) or the numpy model, so every path here
acts on masked logits or Q-values. DQN's epsilon-random actions are drawn among the
allowed ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rl.data import columns as C
from rl.lazy_torch import torch
from rl.policies import numpy_dists
from rl.policies.dist_spec import DistributionSpec
from rl.policies.model_spec import SQUASHED_GAUSSIAN, ModelSpec, Q
from rl.policies.numpy_params import numpy_model, param_layout

__all__ = ["ActorCriticPolicy", "QPolicy", "RecurrentActorCriticPolicy", "SquashedGaussianPolicy",
           "build_inference_policy"]


def load_flat_params(module, vector: np.ndarray) -> None:
    """``rl.policies.models.load_flat_params``, imported where a torch module is loaded."""
    from rl.policies.models import load_flat_params as load

    load(module, vector)


def _as_numpy(obs: Any) -> np.ndarray:
    """Observations as a numpy array (callers may hand in a torch tensor)."""
    return obs if isinstance(obs, np.ndarray) else obs.numpy()


class _Network:
    """What a policy evaluates: the numpy model of a built-in MLP (from the flat weights,
    no torch), else the torch module. Outputs are numpy arrays either way."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        layout = param_layout(spec)
        self.numpy = layout is not None
        self._module = None
        self.vector = None
        if self.numpy:
            self.vector = np.zeros(sum(int(np.prod(s)) for _, s in layout), np.float32)
            self.forward = numpy_model(spec, self.vector)
        else:
            self._module = spec.build()
            self._module.eval()

    @property
    def module(self):
        """The torch module (built on first use for a numpy model, with its weights)."""
        if self._module is None:
            self._module = self.spec.build()
            self._module.eval()
            load_flat_params(self._module, self.vector)
        return self._module

    def load(self, vector: np.ndarray) -> None:
        if self.numpy:
            self.vector = np.array(vector, np.float32)
            self.forward = numpy_model(self.spec, self.vector)
            if self._module is None:
                return
        load_flat_params(self._module, vector)

    def __call__(self, obs: Any):
        obs = _as_numpy(obs)
        if self.numpy:
            return self.forward(obs)
        with torch.inference_mode():
            out = self._module(torch.from_numpy(np.ascontiguousarray(obs)))
        return tuple(o.numpy() for o in out) if isinstance(out, tuple) else out.numpy()


def _sample(dist_spec: DistributionSpec, inputs: np.ndarray, generator
            ) -> tuple[np.ndarray, np.ndarray]:
    """``(actions, logp)`` drawn with ``generator`` (numpy or torch)."""
    if isinstance(generator, np.random.Generator):
        return numpy_dists.sample_with_log_prob(dist_spec, inputs, generator)
    with torch.inference_mode():
        dist = dist_spec(torch.from_numpy(inputs))
        actions = dist.sample(generator)
        return actions.numpy(), dist.log_prob(actions).numpy()


class _Policy:
    """The network, its weights and the generator kind it samples with."""

    def __init__(self, model: ModelSpec):
        self.net = _Network(model)
        self.dist_spec = model.dist_spec

    @property
    def numpy_sampling(self) -> bool:
        """Whether the policy runs without torch (the worker then hands it a numpy
        ``Generator``)."""
        return self.net.numpy

    @property
    def _fast(self):
        """The numpy forward pass (None: the model runs in torch)."""
        return self.net.forward if self.net.numpy else None

    @property
    def module(self):
        return self.net.module

    def load_weights(self, vector: np.ndarray) -> None:
        """Load a flat weight vector (``rl.policies.models.flat_params``)."""
        self.net.load(vector)

    def columns(self) -> dict[str, tuple[tuple[int, ...], type]]:
        """Extra per-step columns this policy writes."""
        return {}


class ActorCriticPolicy(_Policy):
    """Stochastic actor-critic inference."""

    def columns(self) -> dict[str, tuple[tuple[int, ...], type]]:
        return {
            C.LOGP: ((), np.float32),
            C.VF_PREDS: ((), np.float32),
            C.BEHAVIOUR_LOGITS: ((self.dist_spec.input_dim,), np.float32),
        }

    def act(self, obs: Any, generator, request: dict) -> dict[str, Any]:
        dist_inputs, values = self.net(obs)
        actions, logp = _sample(self.dist_spec, dist_inputs, generator)
        return {C.ACTIONS: actions, C.LOGP: logp, C.VF_PREDS: values,
                C.BEHAVIOUR_LOGITS: dist_inputs}

    def value(self, obs: Any) -> np.ndarray:
        return self.net(obs)[1]

    def greedy(self, obs: Any) -> np.ndarray:
        return numpy_dists.deterministic(self.dist_spec, self.net(obs)[0])


class QPolicy(_Policy):
    """Epsilon-greedy over a Q-network; ``request["epsilon"]`` sets the exploration rate."""

    def __init__(self, model: ModelSpec):
        super().__init__(model)
        self.n_actions = int(model.action_space.n)
        self.layout = model.layout if model.masked else None

    def q_values(self, obs: Any) -> np.ndarray:
        return self.net(obs)

    def act(self, obs: Any, generator, request: dict) -> dict[str, Any]:
        epsilon = float(request.get("epsilon", 0.0))
        obs = _as_numpy(obs)
        q = self.net(obs)
        allowed = None if self.layout is None else self.layout.split(obs)[1]
        if isinstance(generator, np.random.Generator):
            return {C.ACTIONS: numpy_dists.epsilon_greedy(q, epsilon, generator, allowed)}
        greedy = torch.from_numpy(q.argmax(axis=-1))
        n = obs.shape[0]
        explore = torch.rand(n, generator=generator) < epsilon
        if allowed is None:
            random = torch.randint(self.n_actions, (n,), generator=generator)
        else:  # uniform among the allowed actions (all of them where none is allowed)
            mask = torch.from_numpy(np.ascontiguousarray(allowed)) > 0.5
            mask = mask | ~mask.any(-1, keepdim=True)
            random = torch.multinomial(mask.float(), 1, generator=generator).squeeze(-1)
        return {C.ACTIONS: torch.where(explore, random, greedy).numpy()}

    def greedy(self, obs: Any) -> np.ndarray:
        return self.net(obs).argmax(axis=-1)


class SquashedGaussianPolicy(_Policy):
    """SAC's actor; ``request["random"]`` samples uniform actions instead (warm-up)."""

    def act(self, obs: Any, generator, request: dict) -> dict[str, Any]:
        n, dim = len(obs), self.dist_spec.action_dim
        if not request.get("random"):
            return {C.ACTIONS: _sample(self.dist_spec, self.net(obs), generator)[0]}
        if isinstance(generator, np.random.Generator):
            return {C.ACTIONS: generator.random((n, dim), np.float32) * 2.0 - 1.0}
        return {C.ACTIONS: (torch.rand((n, dim), generator=generator) * 2.0 - 1.0).numpy()}

    def greedy(self, obs: Any) -> np.ndarray:
        return numpy_dists.deterministic(self.dist_spec, self.net(obs))


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
