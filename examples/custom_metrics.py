"""Record your own per-episode metrics with callbacks, and add keys to each result.

The worker-side hooks see the episode (``length``, ``total_reward``, ``user_data``,
``custom_metrics``) and each step's ``info``, not the observation. CartPole's info is
empty, so a small ``gym.Wrapper`` puts the cart position and pole angle into it; the env
is registered under a name with ``rl.register_env``. ``PoleStats.on_episode_step`` keeps
the largest |angle| and |position| of the episode in ``episode.user_data``;
``on_episode_end`` reports them (and the episode's length) in ``episode.custom_metrics``,
which reach every result as ``custom/<name>_mean``, ``_min`` and ``_max``.
``on_train_result`` runs in the driver and adds a key of its own: the best
``custom/length_mean`` so far. All of them land in ``result.jsonl`` and TensorBoard.

The same module serves the command line too, from this directory::

    rl train --algo ppo --env cartpole_info --import custom_metrics \\
        --set callbacks_class=custom_metrics:PoleStats

    python examples/custom_metrics.py [--timesteps 20000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym

import rl
from rl import PPOConfig


class StateInInfo(gym.Wrapper):
    """CartPole with its cart position and pole angle (radians) in every step's info."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = {**info, "cart_position": float(obs[0]), "pole_angle": float(obs[2])}
        return obs, reward, terminated, truncated, info


rl.register_env("cartpole_info", lambda env_config: StateInInfo(gym.make("CartPole-v1")))


class PoleStats(rl.Callbacks):
    """Per episode: the largest |pole angle| and |cart position|, and the length."""

    def on_episode_start(self, episode, env_index):
        episode.user_data["max_angle"] = episode.user_data["max_position"] = 0.0

    def on_episode_step(self, episode, env_index, info):
        data = episode.user_data
        data["max_angle"] = max(data["max_angle"], abs(info["pole_angle"]))
        data["max_position"] = max(data["max_position"], abs(info["cart_position"]))

    def on_episode_end(self, episode, env_index, info):
        episode.custom_metrics["max_pole_angle"] = episode.user_data["max_angle"]
        episode.custom_metrics["max_cart_position"] = episode.user_data["max_position"]
        episode.custom_metrics["length"] = episode.length

    def on_algorithm_init(self, algorithm):
        self.best_length = float("-inf")  # the driver's instance: state across iterations

    def on_train_result(self, algorithm, result):
        if "custom/length_mean" in result:  # no episode may have ended in an iteration
            self.best_length = max(self.best_length, result["custom/length_mean"])
            result["custom/best_length_mean"] = self.best_length


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timesteps", type=int, default=20_000, help="env-step budget")
    args = p.parse_args()
    config = (PPOConfig().environment("cartpole_info")
              .env_runners(num_env_runners=1, num_envs_per_env_runner=8)
              .training(lr=1e-3, train_batch_size=1024, minibatch_size=256, num_epochs=10)
              .callbacks(PoleStats)  # or callbacks_class="custom_metrics:PoleStats"
              .debugging(seed=0))
    with config.build(logdir="runs") as algo:
        result, checkpoint = algo.fit(stop={"env_steps_total": args.timesteps}, verbose=False)
        logdir = Path(algo.run_dir)
    print(f"trained {result['env_steps_total']} env steps; the custom metrics of the last "
          "iteration:")
    for key in sorted(k for k in result if k.startswith("custom/")):
        print(f"  {key} = {result[key]:.4g}")
    # Every iteration's row, custom/ keys included, is a line of result.jsonl; TensorBoard
    # shows them under "custom" (tensorboard --logdir runs).
    rows = [json.loads(line) for line in (logdir / "result.jsonl").read_text().splitlines()]
    print(f"{logdir / 'result.jsonl'}: {len(rows)} rows, custom/max_pole_angle_mean per "
          f"iteration {[round(r.get('custom/max_pole_angle_mean', float('nan')), 3) for r in rows]}")


if __name__ == "__main__":
    main()
