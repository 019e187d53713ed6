"""Train a recurrent PPO policy (``use_lstm``) on StatelessCartPole, then run one episode.

StatelessCartPole is CartPole without the velocities: the policy must remember earlier
observations to tell which way the pole moves. The episode below feeds
``compute_actions`` its own returned state at every step, starting from ``None`` (the
model's initial state) as a new episode must. The settings are those of
``tuned_examples/ppo/stateless_cartpole_lstm.yaml`` (about 150k steps to balance the
pole for 500 steps).

    python examples/recurrent_policy.py [--timesteps 200000]
"""

from __future__ import annotations

import argparse

import gymnasium as gym

import rl  # noqa: F401  (registers StatelessCartPole-v1)
from rl import PPOConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timesteps", type=int, default=200_000)
    args = p.parse_args()
    config = (PPOConfig().environment("StatelessCartPole-v1")
              .env_runners(num_env_runners=1, num_envs_per_env_runner=8,
                           rollout_fragment_length=64)
              .training(train_batch_size=512, minibatch_size=128, num_epochs=10, lr=1e-3,
                        gamma=0.99, gae_lambda=0.95, use_lstm=True, lstm_cell_size=128,
                        max_seq_len=32, model_hiddens=[64], model_activation="relu",
                        schedule_timesteps=min(args.timesteps, 150_000))
              .set(normalize_obs=True, normalize_rewards=True))
    with config.build() as algo:
        while algo.env_steps_total < args.timesteps:
            result = algo.train()
        print(f"trained {algo.env_steps_total} env steps, training return "
              f"{result['episode_return_mean']:.1f}")
        env = gym.make("StatelessCartPole-v1")
        obs, _ = env.reset(seed=0)
        state, total, done = None, 0.0, False
        while not done:
            action, state = algo.compute_actions(obs, state, explore=False)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        print(f"one greedy episode carrying the LSTM state: return {total:.0f}")


if __name__ == "__main__":
    main()
