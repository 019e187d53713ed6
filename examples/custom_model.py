"""Train PPO and DQN with your own torch networks instead of the built-in MLP.

A model is a plain ``torch.nn.Module`` built as ``Cls(obs_space, action_space,
num_outputs, **model_kwargs)``. An actor-critic model (PPO, IMPALA) returns
``(dist_inputs [B, num_outputs], values [B])`` from ``forward(obs)``; a Q-model (DQN)
returns ``q_values [B, n_actions]``. Select it by import path (``"custom_model:ResMLP"``)
or by a name given to ``rl.register_model``; ``model_kwargs`` go to its constructor. The
same module serves the command line too, from this directory::

    rl train --algo ppo --env CartPole --import custom_model \\
        --set model_class=resmlp --set model_kwargs='{"width": 128}'

    python examples/custom_model.py [--timesteps 30000]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

import rl
from rl import Algorithm, DQNConfig, PPOConfig


class ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.fc(self.norm(x)))


class ResMLP(nn.Module):
    """An actor-critic: a residual MLP trunk shared by a policy head and a value head."""

    def __init__(self, obs_space, action_space, num_outputs, width: int = 64, blocks: int = 2):
        super().__init__()
        self.inp = nn.Linear(int(np.prod(obs_space.shape)), width)
        self.trunk = nn.Sequential(*[ResidualBlock(width) for _ in range(blocks)])
        self.pi = nn.Linear(width, num_outputs)  # logits for Discrete(n): num_outputs = n
        self.vf = nn.Linear(width, 1)
        nn.init.orthogonal_(self.pi.weight, 0.01)  # near-uniform first policy
        nn.init.zeros_(self.pi.bias)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(torch.relu(self.inp(obs.reshape(len(obs), -1))))
        return self.pi(h), self.vf(h).squeeze(-1)


class DuelingQ(nn.Module):
    """A Q-model: Q = V + A - mean(A) over a ReLU MLP."""

    def __init__(self, obs_space, action_space, num_outputs, width: int = 128):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(int(np.prod(obs_space.shape)), width), nn.ReLU(),
                                  nn.Linear(width, width), nn.ReLU())
        self.value, self.advantage = nn.Linear(width, 1), nn.Linear(width, num_outputs)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = self.body(obs.reshape(len(obs), -1))
        a = self.advantage(h)
        return self.value(h) + a - a.mean(dim=-1, keepdim=True)


rl.register_model("resmlp", ResMLP)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timesteps", type=int, default=30_000, help="env-step budget per algorithm")
    args = p.parse_args()
    ppo = (PPOConfig().environment("CartPole-v1")
           .env_runners(num_env_runners=1, num_envs_per_env_runner=8)
           .training(model_class="resmlp", model_kwargs={"width": 64},
                     lr=1e-3, train_batch_size=1024, minibatch_size=128, num_epochs=10)
           .debugging(seed=0))
    dqn = (DQNConfig().environment("CartPole-v1")
           .env_runners(num_env_runners=1, num_envs_per_env_runner=4)
           .training(model_class="custom_model:DuelingQ", model_kwargs={"width": 128})
           .debugging(seed=0))
    for name, config in (("PPO", ppo), ("DQN", dqn)):
        with config.build(logdir="runs") as algo:
            result, checkpoint = algo.fit(stop={"env_steps_total": args.timesteps},
                                          verbose=False)
        print(f"{name} with {config.model_class}: {result['env_steps_total']} env steps, "
              f"episode_return_mean {result['episode_return_mean']:.1f}; {checkpoint}")
        # The checkpoint names the class (state.json); loading imports it again.
        with Algorithm.from_checkpoint(checkpoint) as algo:
            print(f"{name} greedy evaluation:", algo.evaluate(3)["eval/episode_return_mean"])


if __name__ == "__main__":
    main()
