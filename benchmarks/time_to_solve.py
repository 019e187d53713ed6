"""Wall time to solve CartPole-v1: rl PPO (default config) against SB3 PPO (rl-zoo params).

Both are measured the same way, each (implementation, seed) in a fresh subprocess:
a 10-episode greedy evaluation every ``--eval-every`` env steps, and the wall time
from launching the process until the first evaluation with mean return >= 475
(plus the env steps at that point). Reports per-seed figures, medians and the ratio.

SB3 uses the rl-baselines3-zoo CartPole-v1 hyper-parameters: 8 envs, n_steps 32,
batch 256, gae_lambda 0.8, gamma 0.98, 20 epochs, lr 1e-3 linear, clip 0.2 linear,
ent_coef 0, 100k steps, with torch's default threads (``sb3``) and with one thread
(``sb3-1t``: small MLPs on a small machine often run faster so; rl's learner gets the
cores its worker processes leave free). Needs ``pip install stable-baselines3``
(benchmark only).

    python benchmarks/time_to_solve.py [--seeds 0,1,2] [--budget 200000] [--impls rl,sb3]
"""

from __future__ import annotations

import argparse
import statistics

from solve_harness import THRESHOLD, measure, rl_train_until_solved, sb3_eval_callback


def child_rl(seed: int, budget: int, eval_every: int) -> None:
    from rl import PPOConfig

    rl_train_until_solved(PPOConfig().environment("CartPole-v1").debugging(seed=seed).build(),
                          budget, eval_every)


def child_sb3(seed: int, budget: int, eval_every: int, threads: int | None = None) -> None:
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    def linear(start: float):
        return lambda progress_remaining: progress_remaining * start

    if threads is not None:
        torch.set_num_threads(threads)
    venv = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    eval_env = gym.make("CartPole-v1")
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98,
                n_epochs=20, ent_coef=0.0, learning_rate=linear(1e-3), clip_range=linear(0.2),
                seed=seed, device="cpu")

    model.learn(total_timesteps=budget, callback=sb3_eval_callback(eval_env, eval_every))


IMPLS = ("rl", "sb3", "sb3-1t")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--budget", type=int, default=100_000)
    p.add_argument("--eval-every", type=int, default=10_000)
    p.add_argument("--impls", default=",".join(IMPLS), help="comma-separated: " + ", ".join(IMPLS))
    p.add_argument("--child", choices=IMPLS, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        if args.child == "rl":
            child_rl(args.seed, args.budget, args.eval_every)
        else:
            child_sb3(args.seed, args.budget, args.eval_every,
                      threads=1 if args.child == "sb3-1t" else None)
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    impls = [i for i in args.impls.split(",") if i]
    unknown = sorted(set(impls) - set(IMPLS))
    if unknown:
        p.error(f"unknown --impls {unknown}; valid: {', '.join(IMPLS)}")
    results: dict[str, list[dict]] = {impl: [] for impl in impls}
    for seed in seeds:  # interleave implementations so load changes hit both
        for impl in results:
            results[impl].append(measure(__file__, impl, seed, args.budget, args.eval_every))
            print(impl, seed, results[impl][-1], flush=True)
    print(f"\nCartPole-v1 time to first greedy eval >= {THRESHOLD} (eval every "
          f"{args.eval_every} steps, budget {args.budget}), seeds {seeds}")
    med = {}
    for impl, runs in results.items():
        walls = [r["wall_s"] for r in runs]
        steps = [r["steps"] for r in runs if r["steps"] is not None]
        solved = sum(1 for r in runs if r["steps"] is not None)
        med[impl] = statistics.median(walls)
        print(f"{impl:<6} solved {solved}/{len(runs)}  median wall {med[impl]:.1f}s  "
              f"median steps {statistics.median(steps) if steps else 'n/a'}  "
              f"per seed {[round(w, 1) for w in walls]}")
    for peer in (i for i in med if i != "rl"):
        if "rl" in med:
            print(f"ratio rl/{peer} median wall time: {med['rl'] / med[peer]:.2f}")


if __name__ == "__main__":
    main()
