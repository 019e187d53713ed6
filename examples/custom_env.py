"""Train PPO on your own gymnasium env, then evaluate it and record videos.

The env below is registered under a name with ``rl.register_env``; the creator is shipped
to the worker processes, so any callable that takes the ``env_config`` dict works. The
same module serves the command line too, from this directory:
``rl train --algo ppo --import custom_env --env corridor`` (``--import`` runs the
``register_env`` call first).

    python examples/custom_env.py [--timesteps 20000] [--video videos]
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import rl
from rl import Algorithm, PPOConfig


class Corridor(gym.Env):
    """Walk right along a corridor of ``length`` cells; reward 1 at its end, -0.01 a step.

    ``render_mode="rgb_array"`` draws the corridor, so ``--video`` can record it.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(self, length: int = 10, render_mode: str | None = None):
        self.length, self.render_mode = length, render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)  # left, right
        self.pos = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.pos / self.length], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return self._obs(), {}

    def step(self, action):
        self.pos = max(0, self.pos + (1 if int(action) == 1 else -1))
        done = self.pos == self.length
        return self._obs(), 1.0 if done else -0.01, done, False, {}

    def render(self) -> np.ndarray:
        frame = np.full((32, 16 * (self.length + 1), 3), 255, np.uint8)
        frame[8:24, 16 * self.length : 16 * self.length + 16] = (40, 160, 40)  # the goal
        frame[8:24, 16 * self.pos : 16 * self.pos + 16] = (200, 40, 40)  # the walker
        return frame


rl.register_env("corridor", lambda env_config: Corridor(**env_config))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timesteps", type=int, default=20_000, help="env-step budget")
    p.add_argument("--video", metavar="DIR", help="also record greedy episodes as MP4s "
                   "(needs pip install 'rl[video]')")
    args = p.parse_args()
    config = (PPOConfig().environment("corridor", env_config={"length": 10})
              .env_runners(num_env_runners=1, num_envs_per_env_runner=8)
              .training(lr=1e-3, train_batch_size=512, minibatch_size=128, num_epochs=4,
                        entropy_coeff=0.01)
              .debugging(seed=0))
    with config.build(logdir="runs") as algo:
        result, checkpoint = algo.fit(stop={"env_steps_total": args.timesteps}, verbose=False)
        print(f"trained {result['env_steps_total']} env steps: "
              f"episode_return_mean {result['episode_return_mean']:.2f}; {checkpoint}")
    algo = Algorithm.from_checkpoint(checkpoint)
    try:
        print("greedy evaluation:", algo.evaluate(5)["eval/episode_return_mean"])
        if args.video:
            algo.evaluate(2, video_dir=args.video)
            print(f"videos in {args.video}/")
    finally:
        algo.stop()


if __name__ == "__main__":
    main()
