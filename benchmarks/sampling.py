"""Sampling throughput: env steps/s on CartPole-v1 with the policy in the loop.

Compares, in one run and interleaved rounds (so machine load hits all alike):

* rl inline backend, 1 worker x 16 envs (``WorkerSet.sample``: fragments with
  actions, log-probs, values and bootstrap values);
* rl process backend, 2 workers x 8 envs (fragments through shared memory);
* the ceiling: bare ``env.step`` of ``gym.make("CartPole-v1")`` with random actions
  and no policy, in 2 processes at once (one per core), their rates summed (issue 20's
  target: the process backend at >= 50% of it, and >= 5x SB3's DummyVecEnv 8);
* Stable-Baselines3 ``model.predict`` + ``DummyVecEnv`` (8 and 16 envs) and
  ``SubprocVecEnv`` (8 envs), the same 64x64 policy;
* the extension API's costs, on the inline sampler: a user's torch model of exactly
  the built-in MLP's shape (a subclass of ``ActorCritic``, which the workers run in
  torch, never through the numpy mirror), and a no-op ``on_episode_end`` callback
  (target: at most 3% fewer steps/s).

Reports the median over rounds and the ratio of each rl figure to SB3's
DummyVecEnv (8 envs), then the extension ratios. Needs ``pip install
stable-baselines3`` (benchmark only; ``--extension-only`` runs without it).

    python benchmarks/sampling.py [--rounds 5] [--steps 32768] [--extension-only]
                                  [--envs-per-worker 8]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import rl
from rl.policies import ActorCritic


class TorchActorCritic(ActorCritic):
    """The built-in network as a user's model: same layers, run in torch by the workers."""


class NoOpEpisodeEnd(rl.Callbacks):
    def on_episode_end(self, episode, env_index, info):
        pass


rl.register_model("bench-torch-mlp", TorchActorCritic)


def rl_sampler(backend: str, workers: int, envs: int, fragment: int, **settings):
    from rl import PPOConfig

    cfg = (PPOConfig().environment("CartPole-v1").resources(backend=backend)
           .env_runners(num_env_runners=workers, num_envs_per_env_runner=envs,
                        rollout_fragment_length=fragment)
           .training(train_batch_size=max(1, workers) * envs * fragment, minibatch_size=64)
           .set(**settings))
    algo = cfg.build()
    algo.workers.sample()  # warm-up: processes started, envs built

    def run(steps: int) -> float:
        done, start = 0, time.perf_counter()
        while done < steps:
            for r in algo.workers.sample():
                done += r["batch"]["rewards"].size
        return done / (time.perf_counter() - start)

    return run, algo.stop


def _bare_steps(steps: int) -> float:
    """env.step/s of one CartPole with random actions and nothing else (in a child)."""
    import gymnasium as gym
    import numpy as np

    env = gym.make("CartPole-v1")
    env.reset(seed=0)
    # numpy scalars, as the workers pass them: the faster form for Discrete.contains
    # (Python ints take about twice as long under numpy 2), so the ceiling is the highest.
    actions = list(np.random.default_rng(0).integers(0, 2, steps))
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def bare_ceiling(processes: int = 2):
    """The summed bare env.step rate of ``processes`` processes stepping at once."""
    import multiprocessing as mp

    pool = mp.get_context("forkserver").Pool(processes)
    pool.map(_bare_steps, [1000] * processes)  # warm: imports done

    def run(steps: int) -> float:
        return sum(pool.map(_bare_steps, [steps // processes] * processes))

    def close() -> None:
        pool.terminate()
        pool.join()

    return run, close


def sb3_sampler(kind: str, envs: int):
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    cls = DummyVecEnv if kind == "dummy" else SubprocVecEnv
    kwargs = {} if kind == "dummy" else {"start_method": "forkserver"}
    venv = make_vec_env(lambda: gym.make("CartPole-v1"), n_envs=envs, vec_env_cls=cls,
                        vec_env_kwargs=kwargs)
    model = PPO("MlpPolicy", venv, device="cpu", seed=0)
    obs = venv.reset()

    def run(steps: int) -> float:
        nonlocal obs
        done, start = 0, time.perf_counter()
        while done < steps:
            actions, _ = model.predict(obs)
            obs, _, _, _ = venv.step(actions)
            done += envs
        return done / (time.perf_counter() - start)

    return run, venv.close


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=32768, help="env steps per measurement")
    p.add_argument("--quick", action="store_true", help="2 rounds of 8192 steps")
    p.add_argument("--envs-per-worker", type=int, default=8,
                   help="sub-envs of each of the process backend's 2 workers")
    p.add_argument("--extension-only", action="store_true",
                   help="only the inline sampler and its extension-API variants (no SB3)")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.steps = 2, 8192
    torch.set_num_threads(1)  # the driver-side samplers (ours inline, SB3) get one core each
    process = f"rl process 2x{args.envs_per_worker}"
    samplers = {"rl inline 1x16": rl_sampler("inline", 0, 16, 64)}
    if not args.extension_only:
        samplers.update({
            "bare env.step 2 procs": bare_ceiling(2),
            process: rl_sampler("process", 2, args.envs_per_worker, 64),
            "sb3 DummyVecEnv 8": sb3_sampler("dummy", 8),
            "sb3 DummyVecEnv 16": sb3_sampler("dummy", 16),
            "sb3 SubprocVecEnv 8": sb3_sampler("subproc", 8),
        })
    samplers.update({
        "rl inline torch model": rl_sampler("inline", 0, 16, 64, model_class="bench-torch-mlp"),
        "rl inline no-op cb": rl_sampler("inline", 0, 16, 64,
                                         callbacks_class="__main__:NoOpEpisodeEnd"),
    })
    figures: dict[str, list[float]] = {name: [] for name in samplers}
    try:
        for _ in range(args.rounds):
            for name, (run, _) in samplers.items():
                figures[name].append(run(args.steps))
    finally:
        for _, close in samplers.values():
            close()
    medians = {name: statistics.median(values) for name, values in figures.items()}
    base_name = "rl inline 1x16" if args.extension_only else "sb3 DummyVecEnv 8"
    base = medians[base_name]
    print(f"CartPole-v1 sampling with the policy in the loop, median of {args.rounds} rounds "
          f"x {args.steps} steps")
    print(f"{'sampler':<22} {'steps/s':>10} {'vs ' + base_name:>22}")
    for name, med in medians.items():
        print(f"{name:<22} {med:>10,.0f} {med / base:>21.2f}x")
    if not args.extension_only:
        ceiling = medians[process] / medians["bare env.step 2 procs"]
        print(f"{process} / bare env.step ceiling: {ceiling:.2f} (target >= 0.50); "
              f"/ sb3 DummyVecEnv 8: {medians[process] / base:.2f}x (target >= 5)")
    mirror = medians["rl inline 1x16"]
    print(f"custom torch model (built-in MLP's shape) / numpy mirror: "
          f"{medians['rl inline torch model'] / mirror:.2f}x steps/s")
    print(f"no-op on_episode_end callback / no callbacks: "
          f"{medians['rl inline no-op cb'] / mirror:.3f}x steps/s (target >= 0.97)")


if __name__ == "__main__":
    main()
