"""User-style models for the extension-API tests: importable as ``tests.custom_models:Name``.

``TorchActorCritic`` and ``TorchQNet`` are what a user writes after reading the model
contract (plain torch, no rl imports); the ``Broken*`` ones each break it in one way.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _mlp(in_dim: int, width: int, depth: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(in_dim, width), nn.Tanh()]
        in_dim = width
    return nn.Sequential(*layers)


class TorchActorCritic(nn.Module):
    """Separate policy and value MLPs (the built-in's shape) for Discrete or Box actions."""

    def __init__(self, obs_space, action_space, num_outputs, width: int = 64):
        super().__init__()
        in_dim = int(np.prod(obs_space.shape))
        self.continuous = hasattr(action_space, "low")
        self.pi = _mlp(in_dim, width)
        self.vf = _mlp(in_dim, width)
        self.head = nn.Linear(width, num_outputs // 2 if self.continuous else num_outputs)
        self.value = nn.Linear(width, 1)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.orthogonal_(m.weight, 2 ** 0.5)
                nn.init.zeros_(m.bias)
        nn.init.orthogonal_(self.head.weight, 0.01)
        nn.init.orthogonal_(self.value.weight, 1.0)
        self.log_std = nn.Parameter(torch.zeros(self.head.out_features))

    def forward(self, obs):
        x = obs.reshape(len(obs), -1).float()
        out = self.head(self.pi(x))
        if self.continuous:
            out = torch.cat([out, self.log_std.expand_as(out)], dim=-1)
        return out, self.value(self.vf(x)).squeeze(-1)


class TorchQNet(nn.Module):
    """A plain ReLU MLP of Q-values."""

    def __init__(self, obs_space, action_space, num_outputs, width: int = 128):
        super().__init__()
        in_dim = int(np.prod(obs_space.shape))
        self.net = nn.Sequential(nn.Linear(in_dim, width), nn.ReLU(), nn.Linear(width, width),
                                 nn.ReLU(), nn.Linear(width, num_outputs))

    def forward(self, obs):
        return self.net(obs.reshape(len(obs), -1).float())


class BrokenValueShape(TorchActorCritic):
    """Returns values [B, 1] instead of [B]."""

    def forward(self, obs):
        dist_inputs, values = super().forward(obs)
        return dist_inputs, values[:, None]


class BrokenOutputWidth(TorchActorCritic):
    """Ignores num_outputs: always 3 logits."""

    def __init__(self, obs_space, action_space, num_outputs, **kw):
        super().__init__(obs_space, action_space, 3, **kw)


class BrokenSingleOutput(TorchActorCritic):
    """Returns only the logits."""

    def forward(self, obs):
        return super().forward(obs)[0]


class BrokenForward(TorchActorCritic):
    def forward(self, obs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")


class NoParameters(nn.Module):
    def __init__(self, obs_space, action_space, num_outputs):
        super().__init__()
        self.n = num_outputs

    def forward(self, obs):
        return torch.zeros(len(obs), self.n), torch.zeros(len(obs))


NOT_A_MODEL = 42


class DictPolicy(nn.Module):
    """Takes the whole Dict observation (as the contract gives a user's model) and checks
    it: keys ``obs`` [B, 4] and ``action_mask`` [B, 4]. Its logits prefer the *illegal*
    action (action ``s`` in state ``s``: IllegalBestEnv), so only the mask keeps it legal."""

    def __init__(self, obs_space, action_space, num_outputs, prefer_illegal: float = 5.0):
        super().__init__()
        assert set(obs_space.spaces) == {"obs", "action_mask"}, obs_space
        self.pi = nn.Linear(4, num_outputs)
        self.vf = nn.Linear(4, 1)
        with torch.no_grad():
            self.pi.weight.copy_(prefer_illegal * torch.eye(4))
            self.pi.bias.zero_()

    def forward(self, obs):
        assert isinstance(obs, dict) and obs["obs"].shape[1:] == (4,), obs
        assert obs["action_mask"].shape[1:] == (4,)
        return self.pi(obs["obs"]), self.vf(obs["obs"]).squeeze(-1)


class DictQ(nn.Module):
    """Q-values that prefer the illegal action, from the Dict observation."""

    def __init__(self, obs_space, action_space, num_outputs):
        super().__init__()
        self.q = nn.Linear(4, num_outputs)
        with torch.no_grad():
            self.q.weight.copy_(5.0 * torch.eye(4))
            self.q.bias.zero_()

    def forward(self, obs):
        return self.q(obs["obs"])


class TorchSquashedActor(nn.Module):
    """SAC's actor contract: ``forward(obs [B, *obs_shape]) -> [B, 2 * dim(A)]`` (means,
    then log-stds), with a state-independent log-std."""

    def __init__(self, obs_space, action_space, num_outputs, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(int(np.prod(obs_space.shape)), width), nn.ReLU(),
                                 nn.Linear(width, num_outputs // 2))
        self.log_std = nn.Parameter(torch.full((num_outputs // 2,), -0.5))

    def forward(self, obs):
        mean = self.net(obs.reshape(len(obs), -1).float())
        return torch.cat([mean, self.log_std.expand_as(mean)], dim=-1)


class TorchCritic(nn.Module):
    """SAC's critic contract: ``forward(obs [B, *obs_shape], actions [B, dim(A)]) -> q [B]``."""

    def __init__(self, obs_space, action_space, num_outputs, width: int = 32):
        super().__init__()
        in_dim = int(np.prod(obs_space.shape)) + int(np.prod(action_space.shape))
        self.net = nn.Sequential(nn.Linear(in_dim, width), nn.ReLU(), nn.Linear(width, 1))

    def forward(self, obs, actions):
        return self.net(torch.cat([obs.reshape(len(obs), -1).float(), actions], -1)).squeeze(-1)


class BrokenCriticShape(TorchCritic):
    """Returns q [B, 1] instead of [B]."""

    def forward(self, obs, actions):
        return super().forward(obs, actions)[:, None]


class HalfGRU(nn.Module):
    """A user's recurrent model (the contract's ``initial_state`` and ``forward(obs
    [B, T, ...], state)``) whose initial state is not zeros: 0.5 everywhere."""

    def __init__(self, obs_space, action_space, num_outputs, hidden: int = 8):
        super().__init__()
        self.gru = nn.GRU(int(np.prod(obs_space.shape)), hidden, batch_first=True)
        self.pi = nn.Linear(hidden, num_outputs)
        self.vf = nn.Linear(hidden, 1)
        self.hidden = hidden

    def initial_state(self, batch_size):
        return (torch.full((batch_size, self.hidden), 0.5),)

    def forward(self, obs, state):
        out, h = self.gru(obs.float(), state[0][None].contiguous())
        return self.pi(out), self.vf(out).squeeze(-1), (h[0],)
