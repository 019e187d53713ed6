"""Multi-agent sampling throughput on mpe2's simple_spread_v3 (3 agents).

Env steps/s (one ``step()`` of one game, whatever the agent count), in one run and
interleaved rounds so that machine load hits all alike:

* the ceiling: PettingZoo's own loop over 8 ``parallel_env`` games with random actions
  (``action_space(agent).sample()``), no policy, one process;
* rl, inline backend, 1 worker x 8 games: ``WorkerSet.sample`` fragments with actions,
  log-probs, values and bootstrap values for every (game, agent) slot, one batched
  forward per step;
* rl, process backend, 2 workers x 8 games (fragments through shared memory);
* optionally RLlib's multi-agent PPO env runners on the same env (2 runners x 8 envs),
  when ``--rllib-python`` names a Python that has ``ray[rllib]``, PettingZoo and mpe2
  (RLlib pins another gymnasium, so it lives in its own virtualenv).

Reports the median over rounds and each figure's ratio to the random-action ceiling.

    python benchmarks/multi_agent.py [--rounds 3] [--steps 16000] [--rllib-python PY]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
import time

ENV = "mpe2.simple_spread_v3:parallel_env"
MAX_CYCLES = 25


def random_loop(steps: int, games: int = 8) -> float:
    from mpe2 import simple_spread_v3

    envs = [simple_spread_v3.parallel_env(max_cycles=MAX_CYCLES) for _ in range(games)]
    for g, env in enumerate(envs):
        env.reset(seed=g)
    done = 0
    start = time.perf_counter()
    while done < steps:
        for env in envs:
            actions = {a: env.action_space(a).sample() for a in env.agents}
            env.step(actions)
            if not env.agents:
                env.reset()
            done += 1
    return done / (time.perf_counter() - start)


def rl_sampling(steps: int, backend: str, workers: int) -> float:
    from rl import PPOConfig

    config = (PPOConfig().environment(ENV, env_config={"max_cycles": MAX_CYCLES})
              .env_runners(num_env_runners=workers, num_envs_per_env_runner=8,
                           rollout_fragment_length=50)
              .training(train_batch_size=50 * 8 * max(1, workers), minibatch_size=200)
              .set(backend=backend, seed=0))
    with config.build() as algo:
        algo.workers.sample()  # warm-up: processes started, first forward done
        done = 0
        start = time.perf_counter()
        while done < steps:
            done += sum(int(r["env_steps"]) for r in algo.workers.sample())
        return done / (time.perf_counter() - start)


RLLIB_CHILD = textwrap.dedent("""
    import json, sys, time
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv
    from ray.tune.registry import register_env
    from mpe2 import simple_spread_v3

    steps = int(sys.argv[1])
    register_env("spread", lambda cfg: ParallelPettingZooEnv(
        simple_spread_v3.parallel_env(max_cycles=%d)))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    probe = ParallelPettingZooEnv(simple_spread_v3.parallel_env(max_cycles=%d))
    config = (PPOConfig().environment("spread")
              .env_runners(num_env_runners=2, num_envs_per_env_runner=8,
                           rollout_fragment_length=50)
              .multi_agent(policies={"shared"}, policy_mapping_fn=lambda aid, *a, **k: "shared")
              .training(train_batch_size=800))
    algo = config.build_algo()
    group = algo.env_runner_group
    group.foreach_env_runner(lambda r: r.sample(), local_env_runner=False)
    done, start = 0, time.perf_counter()
    while done < steps:
        outs = group.foreach_env_runner(lambda r: r.sample(), local_env_runner=False)
        done += sum(sum(ep.env_steps() for ep in eps) for eps in outs)
    print(json.dumps({"steps_per_s": done / (time.perf_counter() - start)}))
    algo.stop()
    ray.shutdown()
""") % (MAX_CYCLES, MAX_CYCLES)


def rllib_sampling(python: str, steps: int) -> float | None:
    out = subprocess.run([python, "-c", RLLIB_CHILD, str(steps)], capture_output=True,
                         text=True, timeout=900)
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return float(json.loads(line)["steps_per_s"])
    print(f"RLlib run failed (rc {out.returncode}): {out.stderr[-2000:]}", file=sys.stderr)
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=16000)
    p.add_argument("--rllib-python", default=None,
                   help="a Python with ray[rllib], pettingzoo and mpe2 installed")
    args = p.parse_args()
    runs: dict[str, list[float]] = {}
    for r in range(args.rounds):
        figures = {
            "pettingzoo random loop (8 games, ceiling)": random_loop(args.steps),
            "rl inline 1 x 8": rl_sampling(args.steps, "inline", 0),
            "rl process 2 x 8": rl_sampling(args.steps, "process", 2),
        }
        if args.rllib_python:
            value = rllib_sampling(args.rllib_python, args.steps)
            if value is not None:
                figures["RLlib PPO env runners 2 x 8"] = value
        for name, value in figures.items():
            runs.setdefault(name, []).append(value)
            print(f"round {r}: {name}: {value:,.0f} env steps/s", flush=True)
    ceiling = statistics.median(runs["pettingzoo random loop (8 games, ceiling)"])
    print("\nmedian env steps/s (ratio to the random-action ceiling):")
    for name, values in runs.items():
        median = statistics.median(values)
        print(f"  {name:45s} {median:10,.0f}   {median / ceiling:5.2f}x")


if __name__ == "__main__":
    main()
