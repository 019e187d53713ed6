"""The model contract: which torch module an algorithm trains and its workers run.

A model is a plain ``torch.nn.Module`` built as::

    Cls(obs_space, action_space, num_outputs, **model_kwargs)

* actor-critic models (PPO, IMPALA): ``forward(obs) -> (dist_inputs [B, num_outputs],
  values [B])``; ``num_outputs`` is the width of the action distribution's inputs:
  ``n`` for ``Discrete(n)`` (logits), ``sum(nvec)`` for ``MultiDiscrete`` (the logits
  of each sub-action, concatenated), ``2 * dim(A)`` for ``Box`` (means, then log-stds);
* Q-models (DQN): ``forward(obs) -> q_values [B, n]``, with ``num_outputs = n``;
* recurrent actor-critic models (PPO with ``use_lstm`` or a model with
  ``initial_state``): ``initial_state(batch_size) -> state`` (a tuple of tensors
  ``[batch_size, ...]``) and ``forward(obs [B, T, ...], state) -> (dist_inputs [B, T,
  num_outputs], values [B, T], state)``; see ``rl.policies.recurrent``.
* squashed-Gaussian actors (SAC): ``forward(obs) -> dist_inputs [B, 2 * dim(A)]``, the
  mean and log-std of a Gaussian whose ``tanh`` is the action in (-1, 1), rescaled to
  the Box's bounds for the env (``rl.policies.distributions.SquashedGaussian``);
* critics (SAC): ``forward(obs, actions) -> q [B]``, ``actions`` float ``[B, dim(A)]``
  in the actor's (-1, 1) scale, with ``num_outputs = 1``. Only the learner builds
  critics (SAC builds two, and their targets); workers run the actor alone. SAC's
  ``critic_model_class``/``critic_model_kwargs`` select the critic, ``model_class``/
  ``model_kwargs`` the actor.

``obs`` is a float32 tensor ``[B, *obs_space.shape]`` of the (prepared, possibly
normalised) observation space the model was built on; images stay in their dtype
(uint8 pixels). For a ``Dict`` observation space a user's model is built on the env's
own ``Dict`` and receives a dict of tensors, one per key (``rl.envs.obs_layout``); the
built-in models get the keys flattened into one vector, without the action mask.

**Action masks.** When the env's observations have an ``action_mask`` key, the model
is wrapped in an ``ObsAdapter`` that masks its outputs (``-inf`` for disallowed
actions, ``rl.policies.distributions.masked_logits``): the distribution inputs of an
actor-critic model, the Q-values of a Q-model. The user's model need not mask. The built-in ``ActorCritic`` and ``QNetwork`` are models of this same
contract: ``model_class=None`` selects them, with ``model_hiddens``,
``model_activation`` and ``vf_share_layers`` as their keyword arguments.

``ModelSpec`` is the one description both sides build from: the learner trains
``spec.build()`` and every rollout worker runs its own ``spec.build()`` with the
learner's flat weights, so the two layouts cannot drift. It travels to worker and
learner processes by cloudpickle: a class from an importable module is pickled by
reference (on Ray it must be importable on every node), a class registered from a
script by value. ``spec.check()`` builds the model in the driver and runs one forward
pass on sample observations before any process starts; any failure is a
``ModelError`` (a ``ConfigError``: exit 2 on the CLI) naming the class, what was
expected and what came back.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from gymnasium import spaces

from rl.config import ConfigError, error_line
from rl.data import columns as C
from rl.envs.obs_layout import ObsLayout
from rl.imports import import_attr
from rl.policies.dist_spec import DistributionSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["BUILTIN_MODELS", "PREV_INPUTS", "ModelError", "ModelSpec", "is_recurrent", "register_model",
           "registered_models"]

ACTOR_CRITIC = "actor_critic"
Q = "q"
RECURRENT = "recurrent_actor_critic"
SQUASHED_GAUSSIAN = "squashed_gaussian"
CRITIC = "critic"
BUILTIN_MODELS = {ACTOR_CRITIC: "rl.policies.models:ActorCritic",
                  Q: "rl.policies.models:QNetwork",
                  RECURRENT: "rl.policies.recurrent:LSTMActorCritic",
                  SQUASHED_GAUSSIAN: "rl.policies.models:SquashedGaussianActor",
                  CRITIC: "rl.policies.models:ContinuousQCritic"}
"""The default ``model_class`` of each model kind."""

_REGISTRY: dict[str, type[nn.Module]] = {}


class ModelError(ConfigError):
    """A model class that cannot be imported, built or run as the contract asks."""


def register_model(name: str, cls: type[nn.Module]) -> None:
    """Make ``cls`` available as ``model_class=name`` (in this process; the class itself
    travels to the workers and learners with the config, so they need not register it).

    Raises:
        ModelError: ``name`` is empty or has a ``:`` (reserved for import paths), or
            ``cls`` is not a ``torch.nn.Module`` subclass.
    """
    from torch import nn

    if not isinstance(name, str) or not name or ":" in name:
        raise ModelError(f"register_model: the name must be a non-empty string without ':' "
                         f"(that marks 'module:Class' paths), got {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ModelError(f"register_model({name!r}, ...): expected a torch.nn.Module subclass, "
                         f"got {cls!r}")
    _REGISTRY[name] = cls


def registered_models() -> list[str]:
    """Names given to ``register_model`` in this process."""
    return sorted(_REGISTRY)


def resolve_model_class(name: str, setting: str = "model_class") -> type[nn.Module]:
    """The class a ``model_class`` string names: a registered name or ``module:Class``
    (``setting``: the config field messages name, e.g. ``critic_model_class``)."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" not in name:
        known = ", ".join(registered_models()) or "none"
        raise ModelError(f"{setting} {name!r} is neither 'package.module:Class' nor a name "
                         f"given to rl.register_model() (registered: {known})")
    from torch import nn

    module_name, _, attr = name.partition(":")
    obj = import_attr(name, setting, ModelError, hint="; the module must be importable (on "
                      "the Ray backend: on every node)")
    if obj is None:
        raise ModelError(f"{setting} {name!r}: module {module_name!r} has no {attr!r}")
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ModelError(f"{setting} {name!r} is {obj!r}, not a torch.nn.Module subclass")
    return obj


def num_outputs(kind: str, action_space: spaces.Space) -> int:
    """What the model's first output must be wide: see the module docstring."""
    if kind == Q:
        return int(action_space.n)
    if kind == CRITIC:
        return 1
    return DistributionSpec(action_space).input_dim


def policy_input_dtype(obs_space: spaces.Space) -> np.dtype:
    """The dtype of observations the model receives: images keep theirs, all else float32."""
    from rl.envs.spaces import is_image_space

    return np.dtype(obs_space.dtype) if is_image_space(obs_space) else np.dtype(np.float32)


def _describe(out: Any) -> str:
    import torch

    if isinstance(out, torch.Tensor):
        return f"Tensor{list(out.shape)} {str(out.dtype).removeprefix('torch.')}"
    if isinstance(out, tuple | list):
        return "(" + ", ".join(_describe(o) for o in out) + ")"
    if isinstance(out, dict):
        return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in out.items()) + "}"
    return type(out).__name__


PREV_INPUTS = (C.PREV_ACTIONS, C.PREV_REWARDS)
"""The per-step columns a recurrent model may take beside ``obs``, by keyword."""


def is_recurrent(cls: type) -> bool:
    """Whether a model class follows the recurrent contract (it has ``initial_state``)."""
    return callable(getattr(cls, "initial_state", None))


@dataclass(frozen=True)
class ModelSpec:
    """Class + keyword arguments + spaces: everything needed to build the model.

    Attributes:
        kind: ``actor_critic``, ``q``, ``squashed_gaussian`` or ``critic`` (what
            ``forward`` returns).
        obs_space: the prepared observation space the model sees.
        action_space: the env's action space.
        model_class: the config's string (None: the built-in model of ``kind``).
        model_kwargs: the constructor's keyword arguments.
        cls: the resolved class (None for a built-in model until ``model_cls``
            imports it on first use, and again in an unpickled spec).
        env_obs_space: the env's own observation space, where it differs from
            ``obs_space`` (a Dict: the layout of its keys and action mask).
    """

    kind: str
    obs_space: spaces.Space
    action_space: spaces.Space
    model_class: str | None
    model_kwargs: dict = field(default_factory=dict)
    cls: type[nn.Module] | None = field(default=None, compare=False)
    env_obs_space: spaces.Space | None = None

    def __getstate__(self) -> dict:
        # A built-in class travels as its kind alone: unpickling the spec (in a worker)
        # then imports no torch; ``model_cls`` resolves it where a module is built.
        state = dict(self.__dict__)
        if self.is_builtin:
            state["cls"] = None
        return state

    @property
    def model_cls(self) -> type[nn.Module]:
        """The model class (a built-in one resolved on first use after unpickling)."""
        if self.cls is None:
            object.__setattr__(self, "cls", resolve_model_class(BUILTIN_MODELS[self.kind]))
        return self.cls

    @classmethod
    def create(cls, kind: str, obs_space: spaces.Space, action_space: spaces.Space,
               model_class: str | None, model_kwargs: dict,
               env_obs_space: spaces.Space | None = None) -> ModelSpec:
        """Resolve ``model_class`` (None: the built-in) into a spec; raises ``ModelError``.

        ``obs_space`` is the prepared (flat) space the workers produce; ``env_obs_space``
        the env's own, if it is a Dict (its keys and action mask)."""
        if kind not in BUILTIN_MODELS:
            raise ValueError(f"unknown model kind {kind!r}; valid: {', '.join(BUILTIN_MODELS)}")
        # A built-in class is imported where a module is first built (``model_cls``):
        # the driver draws a built-in MLP's first weights and checks it without torch.
        resolved = None if model_class is None else resolve_model_class(model_class,
                                                                        _setting(kind))
        return cls(kind, obs_space, action_space, model_class, dict(model_kwargs), resolved,
                   env_obs_space)

    @property
    def layout(self) -> ObsLayout | None:
        """Where the keys and the action mask lie in the flat observation (Dict spaces)."""
        return None if self.env_obs_space is None else ObsLayout.of(self.env_obs_space)

    @property
    def masked(self) -> bool:
        """Whether the observations carry an action mask."""
        layout = self.layout
        return layout is not None and layout.mask is not None

    @property
    def model_obs_space(self) -> spaces.Space:
        """The observation space the model class is built on: the env's Dict for a
        user's model, the flat space without the mask for the built-in ones."""
        layout = self.layout
        if layout is None:
            return self.obs_space
        if not self.is_builtin:
            return self.env_obs_space
        if layout.mask is None:
            return self.obs_space
        rest = [i for i in range(layout.width) if not layout.mask[0] <= i < layout.mask[1]]
        low, high = self.obs_space.low[rest], self.obs_space.high[rest]
        return spaces.Box(low, high, (len(rest),), self.obs_space.dtype)

    @property
    def name(self) -> str:
        """How messages name the model: the config's string or the built-in's path."""
        return self.model_class or BUILTIN_MODELS[self.kind]

    @property
    def is_builtin(self) -> bool:
        """The built-in model of its kind (workers may run its numpy mirror)."""
        return self.model_class is None

    @property
    def num_outputs(self) -> int:
        return num_outputs(self.kind, self.action_space)

    @property
    def recurrent(self) -> bool:
        """Whether the model carries a state (``initial_state``, ``forward(obs, state)``)."""
        return self.kind == RECURRENT

    @property
    def prev_inputs(self) -> tuple[str, ...]:
        """The per-step columns the model's ``forward`` takes by keyword beside ``obs``
        and the state: ``prev_actions`` / ``prev_rewards`` for the built-in LSTM with
        ``use_prev_action`` / ``use_prev_reward`` (``rl.policies.recurrent``)."""
        if not (self.recurrent and self.is_builtin):
            return ()
        flags = (self.model_kwargs.get("use_prev_action"),
                 self.model_kwargs.get("use_prev_reward"))
        return tuple(name for name, on in zip(PREV_INPUTS, flags) if on)

    @property
    def dist_spec(self) -> DistributionSpec:
        """The action distribution over this model's outputs (squashed for SAC's actor)."""
        return DistributionSpec(self.action_space, squashed=self.kind == SQUASHED_GAUSSIAN)

    def build(self) -> nn.Module:
        """A new model with fresh parameters (behind an ``ObsAdapter`` for Dict spaces
        whose model needs the dict or whose observations carry an action mask)."""
        from rl.policies.obs_adapter import ObsAdapter

        model = self.model_cls(self.model_obs_space, self.action_space, self.num_outputs,
                         **self.model_kwargs)
        layout = self.layout
        if layout is None or (self.is_builtin and layout.mask is None):
            return model
        return ObsAdapter(model, layout, not self.is_builtin, self.kind, self.action_space)

    def check(self) -> nn.Module | None:
        """Build the model and run one forward pass on two sample observations; returns
        the model (None for a built-in MLP, which is checked in numpy without importing
        torch: ``rl.policies.numpy_params``).

        Raises:
            ModelError: the constructor or forward raised, the model has no trainable
                parameters, or an output has the wrong type, shape or dtype.
        """
        from rl.policies.numpy_params import param_layout

        if param_layout(self) is not None:
            self._check_numpy()
            return None
        import torch

        # The check must not move the seeded streams the run draws its initial weights
        # and sample observations from.
        with torch.random.fork_rng(devices=[]):
            return self._check()

    def _sample_observations(self) -> np.ndarray:
        """Two observations of the space (flattened where the env's is a Dict), seeded."""
        space = copy.deepcopy(self.env_obs_space or self.obs_space)
        space.seed(0)
        samples = [space.sample() for _ in range(2)]
        if self.env_obs_space is not None:
            samples = [spaces.flatten(space, x) for x in samples]
        return np.stack(samples).astype(policy_input_dtype(self.obs_space))

    def _check_numpy(self) -> None:
        """The built-in MLP's numpy forward pass on two sample observations."""
        from rl.policies.numpy_init import initial_weights
        from rl.policies.numpy_params import numpy_model

        prefix = f"{_setting(self.kind)} {self.name!r}"
        forward = numpy_model(self, initial_weights(self, 0))
        out = forward(self._sample_observations())
        width = self.dist_spec.input_dim if self.kind == ACTOR_CRITIC else self.num_outputs
        main, values = out if self.kind == ACTOR_CRITIC else (out, None)
        if main.shape != (2, width) or (values is not None and values.shape != (2,)):
            raise ModelError(f"{prefix}: the built-in model's numpy forward gave shapes "
                             f"{main.shape} and {None if values is None else values.shape}; "
                             f"expected (2, {width}) and (2,)")

    def _check(self) -> nn.Module:
        import torch

        from rl.policies.obs_adapter import ObsAdapter

        prefix = f"{_setting(self.kind)} {self.name!r}"
        kwargs = ", ".join(f"{k}={v!r}" for k, v in self.model_kwargs.items())
        try:
            module = self.build()
        except Exception as e:
            raise ModelError(f"{prefix}: {self.model_cls.__name__}(obs_space, action_space, "
                             f"num_outputs={self.num_outputs}{', ' if kwargs else ''}{kwargs}) "
                             f"raised {error_line(e)}") from e
        if not any(p.requires_grad for p in module.parameters()):
            raise ModelError(f"{prefix} has no trainable parameters")
        flat = torch.from_numpy(self._sample_observations())
        # The user's model on what it receives (the adapter's masking comes after).
        inner, obs = module, flat
        if isinstance(module, ObsAdapter):
            inner = module.model
            obs = module.layout.to_dict(flat) if module.as_dict else module.layout.split(flat)[0]
        if self.recurrent:
            self._check_recurrent(prefix, inner, obs)
            if isinstance(module, ObsAdapter):
                with torch.no_grad():
                    module(flat[:, None], tuple(module.initial_state(2)),
                           **self._sample_prev_inputs(2))
            return module
        shown = _describe(obs).rsplit(" ", 1)[0] if isinstance(obs, torch.Tensor) else \
            _describe(obs)
        args = [obs]
        call, returned = f"forward(obs {_describe(obs)})", f"forward(obs {shown})"
        if self.kind == CRITIC:
            dim = int(np.prod(self.action_space.shape))
            args.append(torch.zeros(2, dim))
            call = f"forward(obs {_describe(obs)}, actions Tensor[2, {dim}])"
            returned = f"forward(obs {shown}, actions Tensor[2, {dim}])"
        try:
            with torch.no_grad():
                out = inner(*args)
        except Exception as e:
            raise ModelError(f"{prefix}: {call} raised {error_line(e)}") from e
        if self.kind == Q:
            expected = f"q_values Tensor[2, {self.num_outputs}] float"
            ok = _is(out, (2, self.num_outputs))
        elif self.kind == SQUASHED_GAUSSIAN:
            expected = f"dist_inputs Tensor[2, {self.num_outputs}] float"
            ok = _is(out, (2, self.num_outputs))
        elif self.kind == CRITIC:
            expected = "q Tensor[2] float"
            ok = _is(out, (2,))
        else:
            expected = (f"(dist_inputs Tensor[2, {self.num_outputs}] float, values Tensor[2] "
                        "float)")
            ok = (isinstance(out, tuple | list) and len(out) == 2
                  and _is(out[0], (2, self.num_outputs)) and _is(out[1], (2,)))
        if not ok:
            what = _KIND_NAMES[self.kind]
            raise ModelError(f"{prefix}: {returned} of {what} for "
                             f"{self.action_space} must return {expected}; got {_describe(out)}")
        if isinstance(module, ObsAdapter):
            with torch.no_grad():
                module(flat)
        return module


    def _check_recurrent(self, prefix: str, module: nn.Module, obs: torch.Tensor) -> nn.Module:
        """The recurrent contract on one step of two sequences."""
        import torch

        try:
            with torch.no_grad():
                state = module.initial_state(2)
        except Exception as e:
            raise ModelError(f"{prefix}: initial_state(2) raised {error_line(e)}") from e
        if not (isinstance(state, tuple | list) and state
                and all(isinstance(s, torch.Tensor) and s.shape[:1] == (2,) for s in state)):
            raise ModelError(f"{prefix}: initial_state(2) must return a tuple of tensors "
                             f"[2, ...]; got {_describe(state)}")
        seq = obs[:, None] if isinstance(obs, torch.Tensor) else \
            {k: v[:, None] for k, v in obs.items()}
        try:
            with torch.no_grad():
                out = module(seq, tuple(state), **self._sample_prev_inputs(2))
        except Exception as e:
            raise ModelError(f"{prefix}: forward(obs {_describe(seq)}, state) raised "
                             f"{error_line(e)}") from e
        D = self.num_outputs
        ok = (isinstance(out, tuple | list) and len(out) == 3 and _is(out[0], (2, 1, D))
              and _is(out[1], (2, 1)) and isinstance(out[2], tuple | list)
              and len(out[2]) == len(state)
              and all(isinstance(a, torch.Tensor) and a.shape == b.shape
                      for a, b in zip(out[2], state)))
        if not ok:
            raise ModelError(
                f"{prefix}: forward(obs {_describe(seq).rsplit(' ', 1)[0]}, state) of a "
                f"recurrent model for {self.action_space} must return (dist_inputs "
                f"Tensor[2, 1, {D}] float, values Tensor[2, 1] float, state shaped as "
                f"initial_state: {_describe(tuple(state))}); got {_describe(out)}")
        return module


    def _sample_prev_inputs(self, batch_size: int) -> dict[str, torch.Tensor]:
        """Zero previous actions / rewards for one step of ``batch_size`` sequences."""
        import torch

        shapes = {PREV_INPUTS[0]: self.dist_spec.action_shape, PREV_INPUTS[1]: ()}
        return {k: torch.zeros(batch_size, 1, *shapes[k]) for k in self.prev_inputs}


_KIND_NAMES = {ACTOR_CRITIC: "an actor-critic model", Q: "a Q-model",
               SQUASHED_GAUSSIAN: "a squashed-Gaussian actor", CRITIC: "a critic"}


def _setting(kind: str) -> str:
    """The config field that names a model of ``kind`` (SAC's critics have their own)."""
    return "critic_model_class" if kind == CRITIC else "model_class"


def _is(t: Any, shape: tuple[int, ...]) -> bool:
    import torch

    return isinstance(t, torch.Tensor) and tuple(t.shape) == shape and t.is_floating_point()
