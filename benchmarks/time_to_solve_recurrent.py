"""Wall time to solve StatelessCartPole: rl PPO-LSTM against sb3-contrib RecurrentPPO.

"Solved" is the issue's criterion: the smoothed training return (the mean over the
last 100 training episodes, rl's ``episode_return_mean`` and SB3's ``ep_info_buffer``)
reaching 475. Each (implementation, seed) runs in a fresh subprocess
(``solve_harness.measure``), whose child prints the smoothed return after every
iteration (SB3: every rollout); the wall time runs from launching the child until the
first report >= 475, with the env steps at that point. Reports per-seed figures,
medians and the ratio.

rl runs ``tuned_examples/ppo/stateless_cartpole_lstm.yaml``. RecurrentPPO runs its
rl-baselines3-zoo CartPoleNoVel-v1 hyper-parameters: MlpLstmPolicy (64-cell LSTM, a
separate critic LSTM, ReLU, net_arch [64], ortho_init off), 8 envs, n_steps 32, batch
256, 20 epochs, gamma 0.98, gae_lambda 0.8, ent_coef 0, lr and clip linear from 1e-3
and 0.2, VecNormalize, on ``rl.envs.StatelessCartPole`` (rl-zoo's CartPoleNoVel:
position and angle only). RecurrentPPO's budget is rl-zoo's ``n_timesteps`` (100k,
``--sb3-budget``): its linear lr and clip schedules run out over it, so a longer budget
would change its hyper-parameters rather than give it more time. Needs ``pip install
sb3-contrib`` (the ``bench`` extra).

    python benchmarks/time_to_solve_recurrent.py [--seeds 0,1,2] [--budget 200000] [--sb3-budget 100000]
"""

from __future__ import annotations

import argparse
import os
import statistics

from solve_harness import THRESHOLD, measure, report

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "tuned_examples", "ppo",
                       "stateless_cartpole_lstm.yaml")


def child_rl(seed: int, budget: int) -> None:
    from rl.experiment import load_example

    example = load_example(EXAMPLE)
    example.config.set(seed=seed)
    with example.config.build() as algo:
        algo.stop_timesteps = budget
        while algo.env_steps_total < budget:
            result = algo.train()
            report(algo.env_steps_total, result.get("episode_return_mean") or 0.0)


def child_sb3(seed: int, budget: int) -> None:
    import torch
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from rl.envs import StatelessCartPole

    def linear(start: float):
        return lambda progress_remaining: progress_remaining * start

    class Report(BaseCallback):
        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            buf = self.model.ep_info_buffer
            if buf:
                report(self.num_timesteps, sum(e["r"] for e in buf) / len(buf))

    venv = VecNormalize(make_vec_env(StatelessCartPole, n_envs=8, seed=seed,
                                     wrapper_class=_time_limit))
    model = RecurrentPPO(
        "MlpLstmPolicy", venv, n_steps=32, batch_size=256, n_epochs=20, gamma=0.98,
        gae_lambda=0.8, ent_coef=0.0, learning_rate=linear(1e-3), clip_range=linear(0.2),
        policy_kwargs={"ortho_init": False, "activation_fn": torch.nn.ReLU,
                       "lstm_hidden_size": 64, "enable_critic_lstm": True,
                       "net_arch": {"pi": [64], "vf": [64]}},
        seed=seed, device="cpu")
    model.learn(total_timesteps=budget, callback=Report())


def _time_limit(env):
    from gymnasium.wrappers import TimeLimit

    return TimeLimit(env, 500)


IMPLS = ("rl", "sb3")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--budget", type=int, default=200_000, help="rl's env-step budget")
    p.add_argument("--sb3-budget", type=int, default=100_000,
                   help="RecurrentPPO's total_timesteps (rl-zoo's n_timesteps; sets its schedules)")
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
            r = measure(__file__, impl, seed, args.sb3_budget if impl == "sb3" else args.budget, 0)
            returns = r.pop("evals")
            results[impl].append(r)
            reached = (f"last smoothed return {returns[-1]}, best {max(returns)}" if returns
                       else "no episode finished")
            if r["steps"] is None:
                reached += f"; its whole budget took {r['budget_wall_s']:.1f} s"
            print(f"{impl} seed {seed}: {r['wall_s']:.1f} s, {r['steps']} env steps "
                  f"({reached})", flush=True)
    medians = {}
    for impl, runs in results.items():
        solved = [r["wall_s"] for r in runs if r["steps"] is not None]
        medians[impl] = statistics.median(solved) if len(solved) == len(runs) else float("nan")
        print(f"{impl}: median {medians[impl]:.1f} s to a smoothed return of {THRESHOLD:g} "
              f"({len(solved)}/{len(runs)} seeds solved)")
    if {"rl", "sb3"} <= set(medians):
        print(f"ratio rl / sb3: {medians['rl'] / medians['sb3']:.2f}")
        spent = [r["budget_wall_s"] for r in results["sb3"] if r["steps"] is None]
        if spent and medians["rl"] == medians["rl"]:  # an sb3 seed never solved
            print(f"sb3 left {len(spent)} seed(s) unsolved after a median "
                  f"{statistics.median(spent):.1f} s: ratio rl / sb3 below "
                  f"{medians['rl'] / statistics.median(spent):.2f}")


if __name__ == "__main__":
    main()
