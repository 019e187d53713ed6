"""A numpy mirror of MLP policies for worker-side inference.

At the batch sizes a rollout worker runs (one row per sub-env, typically 4-32), a
small MLP's forward pass costs far more in torch's per-op dispatch than in
arithmetic: about 140 us in torch against 25 us in numpy for CartPole's two 64x64
trunks (measured; ``benchmarks/sampling.py`` shows the end-to-end effect). Workers
therefore evaluate MLP networks with the arrays copied out of the torch module after
each weight load, and hand the outputs back to the torch distributions, so the
sampling and log-probability math keeps its one home in ``distributions.py``.

Only the built-in ``ActorCritic``, ``QNetwork`` and ``SquashedGaussianActor`` are
mirrored, and only when their encoders are made of Linear layers and tanh/relu/elu/silu
activations; anything else
(the CNN, gelu) returns None and the worker runs torch. A user's model (even a
subclass of a built-in one, whose forward may differ) always runs in torch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch import nn

from rl.policies.models import ActorCritic, FlattenFloat, QNetwork, SquashedGaussianActor
from rl.policies.numpy_params import NP_ACTIVATIONS

__all__ = ["NumpyMLP", "compile_actor_critic", "compile_q_network"]


_ACTIVATIONS: dict[type[nn.Module], Callable[[np.ndarray], np.ndarray]] = {
    nn.Tanh: NP_ACTIVATIONS["tanh"],
    nn.ReLU: NP_ACTIVATIONS["relu"],
    nn.ELU: NP_ACTIVATIONS["elu"],
    nn.SiLU: NP_ACTIVATIONS["silu"],
}


class NumpyMLP:
    """``x -> act(x W1 + b1) -> ... `` with the weights of a torch MLP, float32."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray, Callable | None]]):
        self.layers = layers

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = x.reshape(len(x), -1)
        if h.dtype != np.float32:
            h = h.astype(np.float32)
        for weight, bias, act in self.layers:
            h = h @ weight + bias
            if act is not None:
                h = act(h)
        return h

    @staticmethod
    def from_modules(modules: list[nn.Module]) -> NumpyMLP | None:
        """Mirror a flat list of Linear/activation modules; None if unsupported."""
        layers: list[tuple[np.ndarray, np.ndarray, Callable | None]] = []
        for m in modules:
            if isinstance(m, nn.Linear):
                layers.append((m.weight.detach().numpy().T.copy(),
                               m.bias.detach().numpy().copy(), None))
            elif type(m) in _ACTIVATIONS and layers and layers[-1][2] is None:
                w, b, _ = layers[-1]
                layers[-1] = (w, b, _ACTIVATIONS[type(m)])
            else:
                return None
        return NumpyMLP(layers)


def _flat_layers(encoder: nn.Module) -> list[nn.Module] | None:
    """The Linear/activation modules of ``build_encoder``'s MLP (Flatten + Sequential)."""
    out: list[nn.Module] = []
    for m in encoder.modules():
        if isinstance(m, nn.Sequential | FlattenFloat):
            continue
        if isinstance(m, nn.Linear) or type(m) in _ACTIVATIONS:
            out.append(m)
        else:
            return None
    return out


def compile_actor_critic(module: ActorCritic
                         ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
    """``obs -> (dist_inputs, values)`` in numpy, or None when not mirrorable."""
    if type(module) is not ActorCritic:
        return None
    pi = _flat_layers(module.pi_trunk)
    vf = pi if module.vf_trunk is None else _flat_layers(module.vf_trunk)
    if pi is None or vf is None:
        return None
    pi_net = NumpyMLP.from_modules(pi + [module.pi_head])
    vf_net = NumpyMLP.from_modules(vf + [module.vf_head])
    if pi_net is None or vf_net is None:
        return None
    log_std = None
    if module.continuous:
        log_std = module.log_std.detach().numpy().copy()

    if module.vf_trunk is None:
        trunk = NumpyMLP(pi_net.layers[:-1])
        pi_head, vf_head = pi_net.layers[-1], vf_net.layers[-1]

        def forward(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            h = trunk(obs)
            out = h @ pi_head[0] + pi_head[1]
            return _with_log_std(out, log_std), (h @ vf_head[0] + vf_head[1])[:, 0]
    else:
        def forward(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return _with_log_std(pi_net(obs), log_std), vf_net(obs)[:, 0]

    return forward


def _with_log_std(mean: np.ndarray, log_std: np.ndarray | None) -> np.ndarray:
    if log_std is None:
        return mean
    return np.concatenate([mean, np.broadcast_to(log_std, mean.shape)], axis=-1)


def compile_squashed_actor(module: SquashedGaussianActor
                           ) -> Callable[[np.ndarray], np.ndarray] | None:
    """``obs -> dist_inputs`` of SAC's built-in actor in numpy, or None when not mirrorable."""
    if type(module) is not SquashedGaussianActor:
        return None
    layers = _flat_layers(module.trunk)
    return None if layers is None else NumpyMLP.from_modules(layers + [module.head])


def compile_q_network(module: QNetwork) -> Callable[[np.ndarray], np.ndarray] | None:
    """``obs -> Q-values`` in numpy (dueling combined), or None when not mirrorable."""
    if type(module) is not QNetwork:
        return None
    layers = _flat_layers(module.trunk)
    trunk = None if layers is None else NumpyMLP.from_modules(layers)
    if trunk is None:
        return None
    adv = NumpyMLP.from_modules([module.adv_head])
    val = None if module.val_head is None else NumpyMLP.from_modules([module.val_head])

    def forward(obs: np.ndarray) -> np.ndarray:
        h = trunk(obs)
        a = adv(h)
        if val is None:
            return a
        return val(h) + a - a.mean(axis=-1, keepdims=True)

    return forward
