"""The Ray backend against the process backend on this machine, in one run.

For PPO on CartPole-v1 with 2 rollout workers x 8 envs:

- **startup**: from ``config.build()`` to the first fragment of every worker, in a
  fresh Python process each time (so the runtime's own start, the forkserver or the
  local Ray, is counted); rounds alternate between the backends;
- **sampling throughput**: env steps/s of ``WorkerSet.sample()`` (fragments of 256
  steps per env, 4,096 steps per call) with both algorithms built side by side and
  measured in alternating rounds, so that machine load hits both alike;
- **training throughput**: env steps/s of whole PPO iterations (sample, learn, sync);
- **per-call overhead**: the runtime benchmark's empty-call round trip
  (``benchmarks/runtime.py``) for both backends.

Run: ``.venv/bin/python benchmarks/ray_vs_process.py [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rl import PPOConfig

BACKENDS = ("process", "ray")
WORKERS, ENVS, FRAGMENT = 2, 8, 256


def config(backend: str) -> PPOConfig:
    return (PPOConfig().environment("CartPole-v1").resources(backend=backend)
            .env_runners(num_env_runners=WORKERS, num_envs_per_env_runner=ENVS,
                         rollout_fragment_length=FRAGMENT)
            .training(train_batch_size=WORKERS * ENVS * FRAGMENT, minibatch_size=512,
                      num_epochs=2)
            .debugging(seed=0))


def startup_once(backend: str) -> float:
    """Seconds from build() to every worker's first fragment (run in a fresh process)."""
    start = time.perf_counter()
    algo = config(backend).build()
    algo.workers.sample()
    elapsed = time.perf_counter() - start
    algo.stop()
    return elapsed


def startup(backend: str) -> float:
    script = Path(__file__).resolve()
    out = subprocess.run([sys.executable, str(script), "--startup-child", backend],
                         capture_output=True, text=True, check=True, timeout=300)
    return float(out.stdout.strip().splitlines()[-1])


def sample_rate(algo, calls: int) -> float:
    done, start = 0, time.perf_counter()
    for _ in range(calls):
        done += sum(r["batch"]["rewards"].size for r in algo.workers.sample())
    return done / (time.perf_counter() - start)


def train_rate(algo, iterations: int) -> float:
    done, start = algo.env_steps_total, time.perf_counter()
    for _ in range(iterations):
        algo.train()
    return (algo.env_steps_total - done) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--startup-child", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.startup_child:
        print(startup_once(args.startup_child))
        return

    print(f"PPO CartPole-v1, {WORKERS} workers x {ENVS} envs, {FRAGMENT}-step fragments; "
          f"medians of alternating rounds")
    print(f"{'':38} {'process':>9} {'ray':>9}   ray/process")
    med: dict[str, dict[str, float]] = {}

    def report(label: str, key: str, values: dict[str, list[float]], unit: str,
               fmt: str) -> None:
        med[key] = {b: statistics.median(values[b]) for b in BACKENDS}
        p, r = med[key]["process"], med[key]["ray"]
        print(f"{label:38} {fmt.format(p)} {fmt.format(r)}   {r / p:6.2f}x  ({unit})",
              flush=True)

    starts: dict[str, list[float]] = {b: [] for b in BACKENDS}
    for _ in range(max(1, args.rounds // 2 + 1)):
        for backend in BACKENDS:
            starts[backend].append(startup(backend))
    report("startup (build -> first fragments)", "startup_s", starts, "s", "{:9.2f}")

    algos = {b: config(b).build() for b in BACKENDS}
    samples: dict[str, list[float]] = {b: [] for b in BACKENDS}
    trains: dict[str, list[float]] = {b: [] for b in BACKENDS}
    try:
        for algo in algos.values():
            algo.workers.sample()  # warm-up
        for _ in range(args.rounds):
            for backend, algo in algos.items():
                samples[backend].append(sample_rate(algo, 4))
                trains[backend].append(train_rate(algo, 2))
    finally:
        for algo in algos.values():
            algo.stop()
    report("sampling throughput", "sample_steps_per_s", samples, "steps/s", "{:9.0f}")
    report("training throughput (PPO iteration)", "train_steps_per_s", trains, "steps/s",
           "{:9.0f}")

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from runtime import bench_backend  # benchmarks/runtime.py

    calls = argparse.Namespace(calls=2000, reps=3)
    rtt = {b: [bench_backend(b, calls)["rtt_us"]] for b in BACKENDS}
    report("empty call round trip", "call_rtt_us", rtt, "us", "{:9.1f}")
    print(json.dumps(med))

if __name__ == "__main__":
    main()
