"""Wall time to solve Pendulum-v1 with SAC: rl against Stable-Baselines3, same protocol.

"Solved" is a mean return of -200 over the last 10 training episodes (rl's
``episode_return_mean`` with ``metrics_smoothing_episodes=10``; SB3's last 10 episodes of
its Monitor). Each (implementation, seed) runs in a fresh subprocess
(``solve_harness.measure``); the wall time runs from launching the child until the first
report at or above -200, with the env steps at that point. The child reports after every
finished episode (rl: every iteration of 200 env steps, one Pendulum episode). Also
gradient updates per second of each: updates done by the solve over the seconds spent in
the update phase (rl: the ``timers/learn_s`` of every iteration; SB3: its ``train()``
calls), replay sampling included in both.

Implementations:

* ``rl``: rl's SAC defaults on Pendulum-v1 (what ``rl train --algo sac --env Pendulum-v1
  --set metrics_smoothing_episodes=10`` runs: 256x256 ReLU networks, lr 1e-3 for actor,
  critics and alpha, batch 256, tau 0.005, 1000 random warm-up steps, one update per env
  step, sampling in the driver), with ``min_sample_timesteps_per_iteration`` 200 so the
  return is read once per episode (a reporting setting: training is unchanged).
* ``sb3``: SB3 SAC with the rl-baselines3-zoo Pendulum-v1 hyper-parameters (lr 1e-3, all
  else SB3's defaults: 256x256 ReLU, batch 256, buffer 1M, tau 0.005, gamma 0.99,
  learning_starts 100, train_freq 1, gradient_steps 1, ent_coef auto).

Torch runs one intra-op thread in every child (the best case of either on a small
shared machine). Needs ``pip install -c constraints.txt stable-baselines3`` (the
``bench`` extra).

    python benchmarks/time_to_solve_sac.py [--seeds 0,1,2] [--budget 30000]

Measured 2026-12-07 on the 2-core dev VM (load about 1 at the start; SB3's seed 2 ran
beside a test run, its 25 updates/s shows it), seeds 0, 1, 2, all solved:

* rl: 50.9, 76.2, 54.8 s (5600, 7600, 5200 env steps); median 54.8 s, 98 updates/s.
* SB3: 90.4, 60.8, 186.1 s (7600, 4600, 4400 env steps); median 90.4 s, 82 updates/s.
* median wall-time ratio rl / SB3: 0.61 (target <= 1.0, aim 0.5); updates/s 1.2x SB3's.
  An earlier quiet run of seed 0 alone: rl 48.8 s, SB3 92.1 s (0.53).
"""

from __future__ import annotations

import argparse
import statistics
from collections import deque

from solve_harness import measure, report, sb3_time_updates

THRESHOLD = -200.0
WINDOW = 10  # episodes in the smoothed return
IMPLS = ("rl", "sb3")


def child_rl(seed: int, budget: int) -> None:
    import torch

    torch.set_num_threads(1)
    from rl import SACConfig

    cfg = SACConfig().environment("Pendulum-v1").set(
        metrics_smoothing_episodes=WINDOW, min_sample_timesteps_per_iteration=200, seed=seed)
    learn_s = 0.0
    with cfg.build() as algo:
        algo.stop_timesteps = budget
        while algo.env_steps_total < budget:
            result = algo.train()
            learn_s += result.get("timers/learn_s", 0.0)
            ret = result.get("episode_return_mean")
            if ret is not None:
                report(algo.env_steps_total, ret, updates=algo.num_updates_total,
                       learn_s=learn_s)


def child_sb3(seed: int, budget: int) -> None:
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(1)
    model = SAC("MlpPolicy", gym.make("Pendulum-v1"), learning_rate=1e-3, seed=seed,
                device="cpu")
    timed = sb3_time_updates(model)

    returns: deque[float] = deque(maxlen=WINDOW)

    class Report(BaseCallback):
        # The Monitor's episode records, read here: SB3 adds them to ep_info_buffer only
        # after the callback has run.
        def _on_step(self) -> bool:
            finished = [info["episode"]["r"] for info in self.locals["infos"]
                        if "episode" in info]
            if finished:
                returns.extend(finished)
                report(self.num_timesteps, sum(returns) / len(returns), **timed)
            return True

    model.learn(total_timesteps=budget, callback=Report())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--budget", type=int, default=30_000)
    p.add_argument("--impls", default=",".join(IMPLS), help="comma-separated: " + ", ".join(IMPLS))
    p.add_argument("--child", choices=IMPLS, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--eval-every", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        (child_rl if args.child == "rl" else child_sb3)(args.seed, args.budget)
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    impls = [i for i in args.impls.split(",") if i]
    unknown = sorted(set(impls) - set(IMPLS))
    if unknown:
        p.error(f"unknown --impls {unknown}; valid: {', '.join(IMPLS)}")
    results: dict[str, list[dict]] = {impl: [] for impl in impls}
    for seed in seeds:  # interleave implementations so load changes hit both
        for impl in results:
            r = measure(__file__, impl, seed, args.budget, 0, threshold=THRESHOLD)
            r["updates_per_s"] = (r["updates"] / r["learn_s"] if r.get("learn_s")
                                  else float("nan"))
            results[impl].append(r)
            print(f"{impl} seed {seed}: {r['wall_s']:.1f} s, {r['steps']} env steps, "
                  f"{r.get('updates')} updates at {r['updates_per_s']:.0f} updates/s",
                  flush=True)
    print(f"\nPendulum-v1 SAC time to a mean return >= {THRESHOLD:g} over the last {WINDOW} "
          f"training episodes (budget {args.budget} env steps), seeds {seeds}")
    medians = {}
    for impl, runs in results.items():
        # An unsolved seed counts as infinitely slow.
        walls = [r["wall_s"] if r["steps"] is not None else float("inf") for r in runs]
        steps = [r["steps"] for r in runs if r["steps"] is not None]
        medians[impl] = statistics.median(walls)
        ups = statistics.median(r["updates_per_s"] for r in runs)
        print(f"{impl:<4} solved {len(steps)}/{len(runs)}  median wall {medians[impl]:.1f} s  "
              f"median steps {statistics.median(steps) if steps else 'n/a'}  median "
              f"{ups:.0f} updates/s  per seed {[round(w, 1) for w in walls]} s, "
              f"{[r['steps'] for r in runs]} steps")
    if {"rl", "sb3"} <= set(medians):
        print(f"ratio rl / sb3 median wall time: {medians['rl'] / medians['sb3']:.2f}")


if __name__ == "__main__":
    main()
