"""Mask invalid actions: an env whose observation is a Dict with an ``action_mask`` key.

Every algorithm reads the mask (1 = allowed) from the observation: PPO and IMPALA never
sample a masked action and leave it out of log-probabilities, entropy and KL; DQN never
picks one greedily, explores among the allowed ones and bootstraps from the best allowed
next action. ``compute_actions``, ``evaluate`` and ``rl evaluate`` respect it too. The
built-in networks see the other keys flattened; your own model (``model_class``) gets
the whole dict. From this directory, on the command line::

    rl train --algo ppo --import action_masking --env card-hand

    python examples/action_masking.py [--timesteps 20000]
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import rl
from rl import DQNConfig, PPOConfig


class CardHand(gym.Env):
    """Six cards worth 0..5; each turn the player holds 3 random ones and plays one for
    its value. Playing a card not in hand is illegal (the env raises), so the mask is the
    hand. The best play is the hand's highest card; a random legal play scores less."""

    def __init__(self, turns: int = 10):
        self.turns = turns
        self.observation_space = gym.spaces.Dict({
            "hand": gym.spaces.MultiBinary(6),
            "action_mask": gym.spaces.MultiBinary(6),
            "turn": gym.spaces.Box(0.0, 1.0, (1,), np.float32),
        })
        self.action_space = gym.spaces.Discrete(6)

    def _obs(self):
        return {"hand": self.hand.copy(), "action_mask": self.hand.copy(),
                "turn": np.array([self.t / self.turns], np.float32)}

    def _deal(self):
        self.hand = np.zeros(6, np.int8)
        self.hand[self.np_random.choice(6, 3, replace=False)] = 1

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self._deal()
        return self._obs(), {}

    def step(self, action):
        card = int(action)
        if not self.hand[card]:
            raise ValueError(f"card {card} is not in hand {self.hand.tolist()}")
        self.t += 1
        self._deal()
        return self._obs(), float(card), False, self.t >= self.turns, {}


rl.register_env("card-hand", lambda env_config: CardHand(**env_config))


def best_possible(episodes: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Mean return of the best legal play and of a random legal play, by simulation."""
    rng = np.random.default_rng(seed)
    hands = np.array([rng.choice(6, 3, replace=False) for _ in range(episodes * 10)])
    return 10 * hands.max(axis=1).mean(), 10 * hands.mean()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timesteps", type=int, default=20_000, help="env-step budget per algorithm")
    args = p.parse_args()
    best, random_play = best_possible()
    print(f"best legal play: {best:.1f} per episode; random legal play: {random_play:.1f}")
    ppo = (PPOConfig().environment("card-hand")
           .env_runners(num_env_runners=1, num_envs_per_env_runner=8)
           .training(lr=1e-3, train_batch_size=1024, minibatch_size=256, num_epochs=6)
           .debugging(seed=0))
    dqn = (DQNConfig().environment("card-hand")
           .env_runners(num_env_runners=1, num_envs_per_env_runner=4)
           .training(model_hiddens=[64, 64], epsilon_timesteps=5000,
                     target_network_update_freq=500)
           .debugging(seed=0))
    for name, config in (("PPO", ppo), ("DQN", dqn)):
        with config.build() as algo:
            result, _ = algo.fit(stop={"env_steps_total": args.timesteps}, verbose=False,
                                 checkpoint_at_end=False)
            greedy = algo.evaluate(20)["eval/episode_return_mean"]
            hand = {"hand": np.array([1, 0, 1, 0, 0, 1], np.int8),
                    "action_mask": np.array([1, 0, 1, 0, 0, 1], np.int8),
                    "turn": np.array([0.0], np.float32)}
            print(f"{name}: {result['env_steps_total']} env steps, training return "
                  f"{result['episode_return_mean']:.1f}, greedy {greedy:.1f}; plays card "
                  f"{int(algo.compute_actions(hand))} from the hand 0, 2, 5")


if __name__ == "__main__":
    main()
