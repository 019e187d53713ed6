"""Train PPO on CartPole, export the policy to ONNX, and play an episode with
onnxruntime alone: the loop at the bottom needs gymnasium, numpy and onnxruntime, not
torch or rl. Needs the ``rl[export]`` extra::

    python examples/export_onnx.py [--timesteps 20000] [-o cartpole.onnx]

The same export from the command line: ``rl export CHECKPOINT --format onnx -o FILE``.
"""

from __future__ import annotations

import argparse
import json

import gymnasium as gym
import numpy as np
import onnxruntime as ort


def train_and_export(timesteps: int, path: str) -> None:
    from rl import PPOConfig
    from rl.serve import export_policy

    config = (PPOConfig().environment("CartPole-v1")
              .env_runners(num_env_runners=0, num_envs_per_env_runner=4)
              .resources(backend="inline").debugging(seed=0))
    config.normalize_obs = True  # folded into the file with the checkpoint's statistics
    with config.build() as algo:
        algo.fit(stop={"env_steps_total": timesteps})
        result = export_policy(algo, path, "onnx")
    print(f"wrote {result.path} and {result.sidecar}; agreement on "
          f"{result.agreement.observations} observations: {result.agreement.max_diff}")


def play(path: str, seed: int = 0) -> float:
    """One greedy episode with the exported file (no torch, no rl)."""
    with open(path + ".json") as f:
        first_input = json.load(f)["inputs"][0]["name"]
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        actions = session.run(["actions"], {first_input: obs[None].astype(np.float32)})[0]
        obs, reward, terminated, truncated, _ = env.step(int(actions[0]))
        total += float(reward)
        done = terminated or truncated
    env.close()
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timesteps", type=int, default=20_000)
    p.add_argument("-o", "--output", default="cartpole.onnx")
    args = p.parse_args()
    train_and_export(args.timesteps, args.output)
    print(f"onnxruntime episode return: {play(args.output):.0f}")


if __name__ == "__main__":
    main()
