"""The built-in models: encoders (MLP, Nature CNN) and the actor-critic / Q-network heads.

``ActorCritic``, ``QNetwork``, ``SquashedGaussianActor`` and ``ContinuousQCritic``
follow the model contract of ``rl.policies.model_spec`` (``Cls(obs_space, action_space,
num_outputs, **model_kwargs)``); they are the default models of PPO/IMPALA, DQN and
SAC (actor, critics), and the template for a user's own model.

Initialisation follows the PPO implementation details (Huang et al. 2022):
orthogonal weights with gain sqrt(2) in hidden layers, 0.01 for the policy head,
1.0 for the value head, zero biases. Image observations (rank-3 Box) go through the
Nature CNN (Mnih et al. 2015); uint8 pixels are scaled to [0, 1] inside the module.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rl.envs.spaces import is_image_space
from rl.policies.distributions import DistributionSpec

__all__ = [
    "ACTIVATIONS",
    "ActorCritic",
    "ContinuousQCritic",
    "FlattenFloat",
    "NatureCNN",
    "QNetwork",
    "SquashedGaussianActor",
    "build_encoder",
    "flat_params",
    "load_flat_params",
]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
}


def _init(layer: nn.Module, gain: float) -> nn.Module:
    if isinstance(layer, nn.Linear | nn.Conv2d):
        nn.init.orthogonal_(layer.weight, gain)
        nn.init.zeros_(layer.bias)
    return layer


def _mlp(in_dim: int, hiddens: list[int], activation: str) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = []
    for h in hiddens:
        layers += [_init(nn.Linear(in_dim, h), math.sqrt(2)), ACTIVATIONS[activation]()]
        in_dim = h
    return nn.Sequential(*layers), in_dim


class NatureCNN(nn.Module):
    """Conv 32x8x8/4 - 64x4x4/2 - 64x3x3/1 - Linear(hidden), ReLU; input HWC or CHW.

    uint8 inputs are scaled by 1/255. Channels-last images (the last dim is the
    smallest) are transposed to CHW.
    """

    def __init__(self, obs_shape: tuple[int, ...], hidden: int = 512):
        super().__init__()
        self.channels_last = obs_shape[-1] < obs_shape[0]
        c, h, w = (obs_shape[2], obs_shape[0], obs_shape[1]) if self.channels_last else obs_shape
        g = math.sqrt(2)
        self.convs = nn.Sequential(
            _init(nn.Conv2d(c, 32, 8, stride=4), g), nn.ReLU(),
            _init(nn.Conv2d(32, 64, 4, stride=2), g), nn.ReLU(),
            _init(nn.Conv2d(64, 64, 3, stride=1), g), nn.ReLU(),
            nn.Flatten(),
        )  # fmt: skip
        with torch.no_grad():
            n = self.convs(torch.zeros(1, c, h, w)).shape[-1]
        self.fc = nn.Sequential(_init(nn.Linear(n, hidden), g), nn.ReLU())
        self.out_dim = hidden

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float() / 255.0 if obs.dtype == torch.uint8 else obs.float()
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        return self.fc(self.convs(x))


class FlattenFloat(nn.Module):
    """``[B, ...] -> [B, prod(...)]`` float32: the MLP encoder's input layer."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.reshape(obs.shape[0], -1).float()


def build_encoder(obs_space: spaces.Space, hiddens: list[int], activation: str,
                  cnn_hidden: int = 512) -> tuple[nn.Module, int]:
    """Encoder for an (already prepared) observation space and its output width:
    the Nature CNN (then ``cnn_hidden`` features) for images, else an MLP of ``hiddens``."""
    if is_image_space(obs_space):
        cnn = NatureCNN(obs_space.shape, cnn_hidden)
        return cnn, cnn.out_dim
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation {activation!r} is not one of {', '.join(ACTIVATIONS)}")
    in_dim = int(np.prod(obs_space.shape))
    mlp, out = _mlp(in_dim, list(hiddens), activation)
    return nn.Sequential(FlattenFloat(), mlp), out


def _check_outputs(name: str, num_outputs: int, expected: int, action_space) -> None:
    if num_outputs != expected:
        raise ValueError(f"{name} for {action_space} needs num_outputs={expected}, "
                         f"got {num_outputs}")


class ActorCritic(nn.Module):
    """Policy and value function: ``forward(obs) -> (dist_inputs [B, D], value [B])``.

    With ``vf_share_layers`` (always for images) one trunk feeds both heads;
    otherwise the policy and the value function have separate trunks, which does
    better on small control tasks. Continuous actions use a state-independent
    log-std parameter initialised to 0.

    Args:
        obs_space: the prepared observation space (the model contract's).
        action_space: the env's action space.
        num_outputs: the width of ``dist_inputs`` (``rl.policies.model_spec``).
        hiddens: MLP layer widths (after the CNN for images): ``model_hiddens``.
        activation: the MLP's activation (``ACTIVATIONS``): ``model_activation``.
        vf_share_layers: one trunk for both heads.
        cnn_hidden: width of the CNN's last layer.
    """

    def __init__(self, obs_space: spaces.Space, action_space: spaces.Space, num_outputs: int, *,
                 hiddens: list[int] = (64, 64), activation: str = "tanh",
                 vf_share_layers: bool = False, cnn_hidden: int = 512):
        super().__init__()
        dist_spec = DistributionSpec(action_space)
        _check_outputs("ActorCritic", num_outputs, dist_spec.input_dim, action_space)
        self.continuous = dist_spec.is_continuous
        self.shared = vf_share_layers or is_image_space(obs_space)
        self.pi_trunk, width = build_encoder(obs_space, hiddens, activation, cnn_hidden)
        self.vf_trunk = (None if self.shared
                         else build_encoder(obs_space, hiddens, activation, cnn_hidden)[0])
        out = num_outputs
        if self.continuous:
            out = dist_spec.action_dim
            self.log_std = nn.Parameter(torch.zeros(out))
        self.pi_head = _init(nn.Linear(width, out), 0.01)
        self.vf_head = _init(nn.Linear(width, 1), 1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.pi_trunk(obs)
        vf_features = features if self.vf_trunk is None else self.vf_trunk(obs)
        return self._dist_inputs(features), self.vf_head(vf_features).squeeze(-1)

    def _dist_inputs(self, features: torch.Tensor) -> torch.Tensor:
        out = self.pi_head(features)
        if self.continuous:
            out = torch.cat([out, self.log_std.expand_as(out)], dim=-1)
        return out


class QNetwork(nn.Module):
    """Q-values ``[B, n_actions]`` for a Discrete action space; optional dueling head
    (``Q = V + A - mean(A)``, Wang et al. 2016).

    Args:
        obs_space: the prepared observation space (the model contract's).
        action_space: the env's Discrete action space.
        num_outputs: the number of actions.
        hiddens: MLP layer widths (``model_hiddens``).
        activation: the MLP's activation (``model_activation``).
        dueling: the dueling head (DQN's ``dueling``).
        cnn_hidden: width of the CNN's last layer.
    """

    def __init__(self, obs_space: spaces.Space, action_space: spaces.Discrete, num_outputs: int,
                 *, hiddens: list[int] = (256, 256), activation: str = "relu",
                 dueling: bool = True, cnn_hidden: int = 512):
        super().__init__()
        _check_outputs("QNetwork", num_outputs, int(action_space.n), action_space)
        self.n_actions = num_outputs
        self.dueling = dueling
        self.trunk, width = build_encoder(obs_space, hiddens, activation, cnn_hidden)
        self.adv_head = _init(nn.Linear(width, self.n_actions), 1.0)
        self.val_head = _init(nn.Linear(width, 1), 1.0) if dueling else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = self.trunk(obs)
        adv = self.adv_head(features)
        if self.val_head is None:
            return adv
        return self.val_head(features) + adv - adv.mean(dim=-1, keepdim=True)


class SquashedGaussianActor(nn.Module):
    """SAC's actor: ``forward(obs) -> dist_inputs [B, 2d]``, the mean and log-std of the
    Gaussian that ``tanh`` squashes into the action (``SquashedGaussian``).

    Args:
        obs_space: the prepared observation space (the model contract's).
        action_space: the env's Box action space, ``d = prod(shape)``.
        num_outputs: ``2 * d``.
        hiddens: MLP layer widths (after the CNN for images): ``model_hiddens``.
        activation: the MLP's activation (``model_activation``).
        cnn_hidden: width of the CNN's last layer.
    """

    def __init__(self, obs_space: spaces.Space, action_space: spaces.Box, num_outputs: int, *,
                 hiddens: list[int] = (256, 256), activation: str = "relu",
                 cnn_hidden: int = 512):
        super().__init__()
        _check_outputs("SquashedGaussianActor", num_outputs,
                       2 * int(np.prod(action_space.shape)), action_space)
        self.trunk, width = build_encoder(obs_space, hiddens, activation, cnn_hidden)
        self.head = _init(nn.Linear(width, num_outputs), 0.01)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(obs))


class ContinuousQCritic(nn.Module):
    """One soft Q-function: ``forward(obs, actions [B, d]) -> q [B]`` (SAC builds two).

    Vector observations are concatenated with the actions before the MLP; images go
    through the Nature CNN first and its features are concatenated with the actions.

    Args:
        obs_space: the prepared observation space (the model contract's).
        action_space: the env's Box action space.
        num_outputs: 1.
        hiddens: MLP layer widths: ``model_hiddens``.
        activation: the MLP's activation (``model_activation``).
        cnn_hidden: width of the CNN's last layer.
    """

    def __init__(self, obs_space: spaces.Space, action_space: spaces.Box, num_outputs: int, *,
                 hiddens: list[int] = (256, 256), activation: str = "relu",
                 cnn_hidden: int = 512):
        super().__init__()
        _check_outputs("ContinuousQCritic", num_outputs, 1, action_space)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r} is not one of {', '.join(ACTIVATIONS)}")
        if is_image_space(obs_space):
            self.encoder: nn.Module = NatureCNN(obs_space.shape, cnn_hidden)
            width = self.encoder.out_dim
        else:
            self.encoder, width = FlattenFloat(), int(np.prod(obs_space.shape))
        in_dim = width + int(np.prod(action_space.shape))
        self.mlp, out = _mlp(in_dim, list(hiddens), activation)
        self.head = _init(nn.Linear(out, 1), 1.0)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.encoder(obs), actions.reshape(len(actions), -1)], dim=-1)
        return self.head(self.mlp(x)).squeeze(-1)


def flat_params(module: nn.Module) -> np.ndarray:
    """All parameters and buffers as one float32 vector (for the weights board)."""
    with torch.no_grad():
        tensors = [t.detach().reshape(-1).float().cpu() for t in module.state_dict().values()]
        return torch.cat(tensors).numpy() if tensors else np.zeros(0, np.float32)


def load_flat_params(module: nn.Module, vector: np.ndarray) -> None:
    """Inverse of ``flat_params``: copy a flat vector into the module's state."""
    flat = torch.from_numpy(np.ascontiguousarray(vector, dtype=np.float32))
    expected = num_flat_params(module)
    if flat.numel() != expected:
        raise ValueError(f"weight vector has {flat.numel()} values, module needs {expected}")
    offset = 0
    with torch.no_grad():
        for t in module.state_dict().values():
            n = t.numel()
            t.copy_(flat[offset : offset + n].view_as(t))
            offset += n


def num_flat_params(module: nn.Module) -> int:
    return sum(t.numel() for t in module.state_dict().values())
