"""The built-in MLP models in numpy, from the spec and a flat weight vector alone.

``param_layout(spec)`` derives the names and shapes of a built-in model's parameters in
the order ``rl.policies.models.flat_params`` packs them (the module's ``state_dict``
order: a module's own parameters, then its children's), without building the torch
module; ``numpy_model(spec, vector)`` is the forward pass on that vector. A rollout
worker whose every policy is mirrorable thus never imports torch.

Mirrorable: the built-in ``ActorCritic``, ``QNetwork`` and ``SquashedGaussianActor`` on
a vector (not image) observation space with a tanh/relu/elu/silu activation; an action
mask is applied here, as ``ObsAdapter`` does in torch. Anything else (the CNN, gelu, a
user's model, the LSTM) gets None and runs in torch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rl.policies.model_spec import ACTOR_CRITIC, SQUASHED_GAUSSIAN, ModelSpec, Q

__all__ = ["NP_ACTIVATIONS", "masked_logits_np", "numpy_model", "param_layout"]


def _elu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def _silu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def _relu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return np.maximum(x, 0, out=out)


NP_ACTIVATIONS: dict[str, Callable[..., np.ndarray]] = {
    "tanh": np.tanh, "relu": _relu, "elu": _elu, "silu": _silu}
"""The activations (by ``model_activation`` name) the numpy models support: ``f(x,
out=None)``, in place into ``out`` where the function can."""

# The built-in classes' keyword defaults (tests/policies/test_numpy_params.py checks
# them against the classes' signatures).
_DEFAULTS = {ACTOR_CRITIC: {"hiddens": (64, 64), "activation": "tanh",
                            "vf_share_layers": False},
             Q: {"hiddens": (256, 256), "activation": "relu", "dueling": True},
             SQUASHED_GAUSSIAN: {"hiddens": (256, 256), "activation": "relu"}}

Layout = list[tuple[str, tuple[int, ...]]]


def _options(spec: ModelSpec) -> dict | None:
    """The built-in model's keyword arguments, or None when it has no numpy mirror."""
    from rl.envs.spaces import is_image_space

    if not spec.is_builtin or spec.kind not in _DEFAULTS or spec.recurrent:
        return None
    options = {**_DEFAULTS[spec.kind], **spec.model_kwargs}
    if is_image_space(spec.model_obs_space) or options.keys() != _DEFAULTS[spec.kind].keys():
        return None
    hiddens, flags = options["hiddens"], [v for k, v in options.items()
                                          if k not in ("hiddens", "activation")]
    # Anything the torch class would reject (or read differently) goes to torch, which
    # raises its own error in the driver's model check.
    if (not isinstance(hiddens, list | tuple) or not all(
            isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hiddens)
            or not all(isinstance(f, bool) for f in flags)
            or not isinstance(options["activation"], str)
            or options["activation"] not in NP_ACTIVATIONS):
        return None
    return options


def _mlp(prefix: str, in_dim: int, hiddens) -> tuple[Layout, int]:
    out: Layout = []
    for k, h in enumerate(hiddens):
        out += [(f"{prefix}.1.{2 * k}.weight", (int(h), in_dim)),
                (f"{prefix}.1.{2 * k}.bias", (int(h),))]
        in_dim = int(h)
    return out, in_dim


def _linear(name: str, out: int, width: int) -> Layout:
    return [(f"{name}.weight", (out, width)), (f"{name}.bias", (out,))]


def param_layout(spec: ModelSpec) -> Layout | None:
    """``(name, shape)`` of each state entry of ``spec.build()``, in ``flat_params``
    order; None when the model has no numpy mirror."""
    options = _options(spec)
    if options is None:
        return None
    in_dim = int(np.prod(spec.model_obs_space.shape))
    hiddens = list(options["hiddens"])
    trunk, width = _mlp("trunk", in_dim, hiddens)
    if spec.kind == Q:
        n = spec.num_outputs
        layout = trunk + _linear("adv_head", n, width)
        if options["dueling"]:
            layout += _linear("val_head", 1, width)
    elif spec.kind == SQUASHED_GAUSSIAN:
        layout = trunk + _linear("head", spec.num_outputs, width)
    else:
        dist = spec.dist_spec
        layout = [("log_std", (dist.action_dim,))] if dist.is_continuous else []
        layout += _mlp("pi_trunk", in_dim, hiddens)[0]
        if not options["vf_share_layers"]:
            layout += _mlp("vf_trunk", in_dim, hiddens)[0]
        out = dist.action_dim if dist.is_continuous else spec.num_outputs
        layout += _linear("pi_head", out, width) + _linear("vf_head", 1, width)
    if spec.masked:  # behind the ObsAdapter
        layout = [(f"model.{name}", shape) for name, shape in layout]
    return layout


def masked_logits_np(logits: np.ndarray, mask: np.ndarray,
                     sizes: tuple[int, ...] | None = None) -> np.ndarray:
    """numpy ``rl.policies.distributions.masked_logits``: ``-inf`` where ``mask`` is 0,
    except in a group (sub-action) where nothing is allowed."""
    allowed = mask > 0.5
    bounds = np.cumsum((0,) + (sizes or (logits.shape[-1],)))
    some = np.concatenate([np.repeat(allowed[:, a:b].any(-1, keepdims=True), b - a, axis=-1)
                           for a, b in zip(bounds[:-1], bounds[1:])], axis=-1)
    return np.where(some & ~allowed, np.float32(-np.inf), logits).astype(logits.dtype)


def numpy_model(spec: ModelSpec, vector: np.ndarray) -> Callable | None:
    """The model's forward pass in numpy on the weights ``vector`` (``flat_params``):
    ``obs -> (dist_inputs, values)`` (actor-critic), ``q_values`` (Q) or ``dist_inputs``
    (SAC's actor), masked; None when the model has no numpy mirror.

    Raises:
        ValueError: ``vector`` is not as long as the model's parameters.
    """
    layout = param_layout(spec)
    if layout is None:
        return None
    vector = np.asarray(vector, np.float32).reshape(-1)
    expected = sum(int(np.prod(s)) for _, s in layout)
    if vector.size != expected:
        raise ValueError(f"weight vector has {vector.size} values, {spec.name} needs {expected}")
    params, offset = {}, 0
    for name, shape in layout:
        n = int(np.prod(shape))
        params[name.removeprefix("model.")] = vector[offset: offset + n].reshape(shape)
        offset += n
    options = _options(spec)
    act = NP_ACTIVATIONS[options["activation"]]
    depth = len(options["hiddens"])

    def linear(name: str):
        return params[f"{name}.weight"].T.copy(), params[f"{name}.bias"].copy()

    def trunk(prefix: str):
        layers = [linear(f"{prefix}.1.{2 * k}") for k in range(depth)]

        def run(x: np.ndarray) -> np.ndarray:
            h = x.reshape(len(x), -1).astype(np.float32, copy=False)
            for w, b in layers:  # in place: the per-step path of the rollout workers
                h = h @ w
                h += b
                h = act(h, out=h)
            return h
        return run

    forward = _forward(spec, options, trunk, linear, params)
    if not spec.masked:
        return forward
    obs_layout = spec.layout
    nvec = getattr(spec.action_space, "nvec", None)
    sizes = None if nvec is None else tuple(int(n) for n in np.ravel(nvec))

    def masked(obs: np.ndarray):
        rest, mask = obs_layout.split(obs)
        out = forward(np.ascontiguousarray(rest))
        if spec.kind == Q:
            return masked_logits_np(out, mask, sizes)
        return masked_logits_np(out[0], mask, sizes), out[1]
    return masked


def _forward(spec: ModelSpec, options: dict, trunk, linear, params) -> Callable:
    if spec.kind == Q:
        body, (wa, ba) = trunk("trunk"), linear("adv_head")
        val = linear("val_head") if options["dueling"] else None

        def q_values(obs: np.ndarray) -> np.ndarray:
            h = body(obs)
            a = h @ wa + ba
            if val is None:
                return a
            return (h @ val[0] + val[1]) + a - a.mean(axis=-1, keepdims=True)
        return q_values
    if spec.kind == SQUASHED_GAUSSIAN:
        body, (w, b) = trunk("trunk"), linear("head")
        return lambda obs: body(obs) @ w + b
    (wp, bp), (wv, bv) = linear("pi_head"), linear("vf_head")
    if options["vf_share_layers"]:
        pi = trunk("pi_trunk")

        def trunks(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            h = pi(obs)
            return h, h
    else:
        trunks = _twin_trunks(params, options, linear)
    log_std = params["log_std"].copy() if "log_std" in params else None

    def actor_critic(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, hv = trunks(obs)
        out = h @ wp + bp
        if log_std is not None:
            out = np.concatenate([out, np.broadcast_to(log_std, out.shape)], axis=-1)
        return out, (hv @ wv + bv)[:, 0]
    return actor_critic


def _twin_trunks(params: dict, options: dict, linear) -> Callable:
    """The policy and value trunks (same widths) as one pass over ``[2, ...]`` stacks:
    a third of the numpy calls per step, each slice the same matmul, add and
    activation as the separate trunks (so the same numbers)."""
    act = NP_ACTIVATIONS[options["activation"]]
    layers = []
    for k in range(len(options["hiddens"])):
        (w_pi, b_pi), (w_vf, b_vf) = linear(f"pi_trunk.1.{2 * k}"), linear(f"vf_trunk.1.{2 * k}")
        layers.append((np.stack([w_pi, w_vf]), np.stack([b_pi, b_vf])[:, None, :]))

    def run(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = obs.reshape(len(obs), -1).astype(np.float32, copy=False)
        if not layers:
            return h, h
        for w, b in layers:
            h = np.matmul(h, w)  # [B, in] @ [2, in, out] -> [2, B, out], then per slice
            h += b
            h = act(h, out=h)
        return h[0], h[1]
    return run
