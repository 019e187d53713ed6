"""Wall time to solve CartPole-v1 with DQN: rl against Stable-Baselines3, same protocol.

Each (implementation, seed) runs in a fresh subprocess: a 10-episode greedy
evaluation every ``--eval-every`` env steps (5k), and the wall time from launching
the process until the first evaluation with mean return >= 475 (plus the env steps
at that point). Reports per-seed figures, medians and the ratio to SB3.

Implementations:

* ``sb3``: SB3 DQN with the rl-baselines3-zoo CartPole-v1 hyper-parameters (lr 2.3e-3,
  batch 64, buffer 100k, learning_starts 1000, gamma 0.99, target_update_interval 10,
  train_freq 256, gradient_steps 128, exploration over 0.16 x 50k steps to eps 0.04,
  net [256, 256]); plain DQN (no double Q, no dueling), as in SB3.
* ``rl``: rl's DQN with the same hyper-parameters, mapped one to one: one env,
  fragments of 256 steps, ``training_intensity`` 0.5 (128 updates per 256 steps),
  a hard target update every round, ``double_q`` and ``dueling`` off.
* ``rl-tuned``: rl's DQN with ``tuned_examples/dqn/cartpole.yaml`` (what the
  learning test runs).
* ``rl-defaults``: ``DQNConfig().environment("CartPole-v1")`` with nothing else set,
  what ``rl train --algo dqn --env CartPole`` runs.

Each solve also reports its learner's gradient updates per second (updates over the
seconds spent learning: ``timers/learn_s`` for rl, ``model.train`` for SB3).

Torch runs one intra-op thread in every child (rl's learner does so by default;
SB3 is given the same, its best case on a small shared machine). Needs
``pip install -c constraints.txt stable-baselines3`` (benchmark only).

    python benchmarks/time_to_solve_dqn.py [--seeds 0,1,2] [--impls rl-defaults,rl,rl-tuned,sb3]

Measured 2026-12-08 (``--impls rl-defaults,rl,sb3``, seeds 0-2, 2-core dev machine, a
test run beside it for the first two seeds), SB3 2.9.2:

===========  ======  ============  ============  ==========
impl         solved  median wall   median steps  updates/s
===========  ======  ============  ============  ==========
rl-defaults  3/3     72.2 s        40,320        324
rl           3/3     32.1 s        40,192        641
sb3          3/3     39.1 s        35,000        408
===========  ======  ============  ============  ==========

With the same hyper-parameters rl takes 0.82x SB3's wall time at 1.57x its updates/s.
rl's defaults take 1.84x: each of their updates does about 2.5x the arithmetic of the
rl-zoo one (batch 128 instead of 64, the double-Q forward pass, the dueling head), and
issue 20's target (0.5x) is not met. SB3 seed 0 solved at its first evaluation (5k steps).
A default update (batch 128, [256, 256]) measured alone on one thread: 2.1 ms, 2.8 ms
before rl's fused Adam and lean gradient clipping.
"""

from __future__ import annotations

import argparse
import os
import statistics

from solve_harness import THRESHOLD, measure, report, sb3_eval_callback, sb3_time_updates

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "tuned_examples", "dqn", "cartpole.yaml")

# rl-baselines3-zoo hyperparams/dqn.yml, CartPole-v1 (n_timesteps 5e4).
ZOO = dict(lr=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
           target_update_interval=10, train_freq=256, gradient_steps=128,
           exploration_fraction=0.16, exploration_final_eps=0.04, net_arch=[256, 256],
           n_timesteps=50_000)


IMPLS = ("rl-defaults", "rl", "rl-tuned", "sb3")


def child_rl(seed: int, budget: int, eval_every: int, impl: str) -> None:
    import torch

    torch.set_num_threads(1)
    from rl import DQNConfig
    from rl.experiment import load_example

    if impl == "rl-tuned":
        cfg = load_example(EXAMPLE).config.set(seed=seed)
    elif impl == "rl-defaults":
        cfg = DQNConfig().environment("CartPole-v1").set(seed=seed)
    else:
        cfg = DQNConfig().environment("CartPole-v1").set(
            backend="inline", num_env_runners=0, num_envs_per_env_runner=1,
            rollout_fragment_length=ZOO["train_freq"],
            training_intensity=ZOO["gradient_steps"] / ZOO["train_freq"],
            min_sample_timesteps_per_iteration=ZOO["train_freq"],
            lr=ZOO["lr"], train_batch_size=ZOO["batch_size"],
            replay_buffer_capacity=ZOO["buffer_size"],
            num_steps_sampled_before_learning_starts=ZOO["learning_starts"],
            gamma=ZOO["gamma"], target_network_update_freq=ZOO["target_update_interval"],
            epsilon_initial=1.0, epsilon_final=ZOO["exploration_final_eps"],
            epsilon_timesteps=int(ZOO["exploration_fraction"] * ZOO["n_timesteps"]),
            model_hiddens=ZOO["net_arch"], model_activation="relu", grad_clip=10.0,
            double_q=False, dueling=False, n_step=1, seed=seed)
    learn_s = 0.0
    next_eval = eval_every
    with cfg.build() as algo:
        algo.stop_timesteps = budget
        while algo.env_steps_total < budget:
            learn_s += algo.train().get("timers/learn_s", 0.0)
            if algo.env_steps_total >= next_eval:
                next_eval += eval_every
                ret = algo.evaluate(10)["eval/episode_return_mean"]
                report(algo.env_steps_total, ret, updates=algo.num_updates_total,
                       learn_s=learn_s)
                if ret >= THRESHOLD:
                    break


def child_sb3(seed: int, budget: int, eval_every: int) -> None:
    import gymnasium as gym
    import torch
    from stable_baselines3 import DQN

    torch.set_num_threads(1)
    env = gym.make("CartPole-v1")
    eval_env = gym.make("CartPole-v1")
    # Same exploration horizon as rl-zoo's 50k-step run, whatever the budget here.
    fraction = ZOO["exploration_fraction"] * ZOO["n_timesteps"] / budget
    model = DQN("MlpPolicy", env, learning_rate=ZOO["lr"], batch_size=ZOO["batch_size"],
                buffer_size=ZOO["buffer_size"], learning_starts=ZOO["learning_starts"],
                gamma=ZOO["gamma"], target_update_interval=ZOO["target_update_interval"],
                train_freq=ZOO["train_freq"], gradient_steps=ZOO["gradient_steps"],
                exploration_fraction=fraction,
                exploration_final_eps=ZOO["exploration_final_eps"],
                policy_kwargs={"net_arch": ZOO["net_arch"]}, seed=seed, device="cpu")

    timed = sb3_time_updates(model)
    on_eval = lambda steps, ret: report(steps, ret, **timed)  # noqa: E731
    model.learn(total_timesteps=budget,
                callback=sb3_eval_callback(eval_env, eval_every, on_eval=on_eval))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--impls", default=",".join(IMPLS), help="comma-separated: " + ", ".join(IMPLS))
    p.add_argument("--budget", type=int, default=100_000)
    p.add_argument("--eval-every", type=int, default=5_000)
    p.add_argument("--child", choices=IMPLS, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child == "sb3":
        child_sb3(args.seed, args.budget, args.eval_every)
        return
    if args.child:
        child_rl(args.seed, args.budget, args.eval_every, args.child)
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    impls = [i for i in args.impls.split(",") if i]
    unknown = sorted(set(impls) - set(IMPLS))
    if unknown:
        p.error(f"unknown --impls {unknown}; valid: {', '.join(IMPLS)}")
    results: dict[str, list[dict]] = {impl: [] for impl in impls}
    for seed in seeds:  # interleave implementations so load changes hit all alike
        for impl, runs in results.items():
            r = measure(__file__, impl, seed, args.budget, args.eval_every)
            r["updates_per_s"] = (r["updates"] / r["learn_s"] if r.get("learn_s")
                                  else float("nan"))
            runs.append(r)
            print(impl, seed, r, flush=True)
    print(f"\nCartPole-v1 DQN time to first greedy eval >= {THRESHOLD} (10 episodes every "
          f"{args.eval_every} steps, budget {args.budget}), seeds {seeds}")
    med, ups = {}, {}
    for impl, runs in results.items():
        # An unsolved seed counts as the whole budget's time would: infinitely slow.
        walls = [r["wall_s"] if r["steps"] is not None else float("inf") for r in runs]
        steps = [r["steps"] for r in runs if r["steps"] is not None]
        med[impl] = statistics.median(walls)
        ups[impl] = statistics.median(r["updates_per_s"] for r in runs)
        print(f"{impl:<9} solved {len(steps)}/{len(runs)}  median wall {med[impl]:.1f}s  "
              f"median steps {statistics.median(steps) if steps else 'n/a'}  "
              f"median {ups[impl]:.0f} updates/s  per seed {[round(w, 1) for w in walls]} s, {[r['steps'] for r in runs]} steps")
    if "sb3" in med:
        for impl in med:
            if impl != "sb3":
                print(f"ratio {impl}/sb3 median wall time: {med[impl] / med['sb3']:.2f}, "
                      f"updates/s {ups[impl] / ups['sb3']:.2f}x")


if __name__ == "__main__":
    main()
