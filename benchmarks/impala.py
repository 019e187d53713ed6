"""IMPALA against PPO on CartPole-v1 with the same worker layout, in one run.

Two measurements:

1. **Throughput**: env steps/s of training (sampling *and* learning) with 2 workers
   x 8 envs on the process backend. IMPALA runs its tuned example
   (``tuned_examples/impala/cartpole.yaml``); PPO runs its defaults with the same
   layout (1024 steps, 10 epochs of 256-step minibatches per iteration). Both size
   torch's intra-op pool the same way (``Algorithm._set_learner_threads``). The rounds
   of the contenders alternate, so that a change of machine load hits them alike;
   each figure is the median over the rounds.
2. **Time to solve**: wall time until ``episode_return_mean >= 475`` (100-episode
   window), median over seeds, from ``build()`` (process start included) and as
   ``time_total_s`` (training only), for IMPALA's tuned example and PPO.

    python benchmarks/impala.py [--rounds 3] [--round-s 8] [--seeds 0 1 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from rl import IMPALAConfig, PPOConfig
from rl.algorithms.algorithm import Algorithm
from rl.experiment import load_example

ROOT = os.path.join(os.path.dirname(__file__), "..")
IMPALA_EXAMPLE = os.path.join(ROOT, "tuned_examples", "impala", "cartpole.yaml")
SOLVED = 475.0
BUDGET = 1_000_000


def impala_config(seed: int) -> IMPALAConfig:
    cfg = load_example(IMPALA_EXAMPLE).config
    return cfg.set(seed=seed)


def ppo_config(seed: int) -> PPOConfig:
    return (PPOConfig().environment("CartPole-v1").resources(backend="process")
            .env_runners(num_env_runners=2, num_envs_per_env_runner=8).debugging(seed=seed))


class Contender:
    """A built algorithm whose training throughput is timed in rounds."""

    def __init__(self, name: str, make: Callable[[], Algorithm]):
        self.name = name
        self.algo = make()
        self.rates: list[float] = []

    def round(self, seconds: float) -> float:
        self.algo.train()  # warm-up: refill the pipeline after the other contender's round
        start_steps, start = self.algo.env_steps_total, time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.algo.train()
        rate = (self.algo.env_steps_total - start_steps) / (time.perf_counter() - start)
        self.rates.append(rate)
        return rate


def throughput(rounds: int, round_s: float) -> dict[str, float]:
    contenders = [Contender("impala", lambda: impala_config(0).build()),
                  Contender("ppo", lambda: ppo_config(0).build())]
    try:
        for r in range(rounds):
            for c in contenders:
                rate = c.round(round_s)
                print(f"  round {r + 1}/{rounds}  {c.name:<8} {rate:10,.0f} env steps/s",
                      flush=True)
    finally:
        for c in contenders:
            c.algo.stop()
    return {c.name: statistics.median(c.rates) for c in contenders}


def time_to_solve(make: Callable[[int], Any], seed: int) -> dict[str, float]:
    start = time.perf_counter()
    with make(seed).build() as algo:
        algo.stop_timesteps = BUDGET
        while True:
            r = algo.train()
            if r["episode_return_mean"] >= SOLVED or r["env_steps_total"] >= BUDGET:
                break
    return {"seed": seed, "solved": r["episode_return_mean"] >= SOLVED,
            "wall_s": time.perf_counter() - start, "train_s": r["time_total_s"],
            "env_steps": r["env_steps_total"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--round-s", type=float, default=8.0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--no-solve", action="store_true", help="only measure throughput")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args()

    print(f"CartPole-v1, 2 workers x 8 envs, process backend, {os.cpu_count()} cores, "
          f"torch {torch.__version__}")
    print("throughput (sampling + learning):")
    rates = throughput(args.rounds, args.round_s)
    for name, rate in rates.items():
        print(f"  {name:<8} {rate:10,.0f} env steps/s (median of {args.rounds})")
    speedup = rates["impala"] / rates["ppo"]
    print(f"  IMPALA / PPO = {speedup:.2f}x")
    out: dict[str, Any] = {"throughput": rates, "speedup": speedup}

    if not args.no_solve:
        for name, make in (("impala", impala_config), ("ppo", ppo_config)):
            print(f"time to episode_return_mean >= {SOLVED:.0f} ({name}):")
            runs = []
            for seed in args.seeds:
                run = time_to_solve(make, seed)
                runs.append(run)
                print(f"  seed {seed}: {'solved' if run['solved'] else 'NOT solved'} at "
                      f"{run['env_steps']:,} env steps, {run['wall_s']:.1f} s wall "
                      f"({run['train_s']:.1f} s training)", flush=True)
            print(f"  median: {statistics.median(r['wall_s'] for r in runs):.1f} s wall, "
                  f"{statistics.median(r['train_s'] for r in runs):.1f} s training, "
                  f"{statistics.median(r['env_steps'] for r in runs):,.0f} env steps")
            out[f"solve_{name}"] = runs
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
