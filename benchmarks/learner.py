"""PPO learner throughput: train-batch rows/s through ``LearnerGroup.update``.

Two workloads, each one PPO update on a fixed synthetic batch:

* ``cartpole``: obs ``[B, 4]`` float32, the default 64x64 MLP actor-critic;
* ``image``: obs ``[B, 84, 84, 4]`` uint8 (Atari frames), the Nature CNN.

and four learner layouts, all on the CPU:

* ``driver``: ``num_learners=0``, the learner in this process, 1 torch thread;
* ``driver-2t``: the same with 2 torch threads (what N=0 gets on an idle 2-core box);
* ``procs=1``: one learner process (1 CPU), the batch shipped through shared memory;
* ``procs=2``: two learner processes (1 CPU each) in a gloo group with DDP, each on
  half the batch with half the minibatch, so the SGD steps and their maths are the
  single learner's (see tests/learner/test_equivalence.py).

The process hop is shown two ways: ``procs=1`` minus ``driver`` (same work, same
threads), and ``hop``: a round trip that ships the batch to an actor that only reads
its length (export to shared memory, map, reply). Rounds interleave the single-thread
layouts so that load from other processes on the machine hits all of them alike;
``driver-2t`` runs after them. The table gives medians.

    python benchmarks/learner.py [--rounds 5] [--workload cartpole image]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import gymnasium as gym
import numpy as np
import torch

from rl import PPOConfig
from rl.algorithms.ppo.learner import PPOLearner
from rl.data import SampleBatch
from rl.data import columns as C
from rl.learner import LearnerGroup
from rl.policies import ModelSpec
from rl.runtime import make_runtime

WORKLOADS = {
    # name: obs space, rows, minibatch, epochs (the tuned examples' shapes, scaled to CPU)
    "cartpole": (gym.spaces.Box(-1.0, 1.0, (4,), np.float32), 1024, 256, 10),
    "image": (gym.spaces.Box(0, 255, (84, 84, 4), np.uint8), 256, 64, 1),
}
ACTIONS = gym.spaces.Discrete(4)


class Sink:
    """An actor that only touches the batch: the cost of the hop alone."""

    def take(self, batch: SampleBatch) -> int:
        return len(batch)


def make_batch(obs_space: gym.Space, rows: int, seed: int = 0) -> SampleBatch:
    rng = np.random.default_rng(seed)
    if obs_space.dtype == np.uint8:
        obs = rng.integers(0, 256, (rows, *obs_space.shape), dtype=np.uint8)
    else:
        obs = rng.uniform(-1, 1, (rows, *obs_space.shape)).astype(np.float32)
    values = rng.normal(size=rows).astype(np.float32)
    return SampleBatch({
        C.OBS: obs,
        C.ACTIONS: rng.integers(0, ACTIONS.n, rows),
        C.LOGP: np.full(rows, -np.log(ACTIONS.n), np.float32),
        C.VF_PREDS: values,
        C.ADVANTAGES: rng.normal(size=rows).astype(np.float32),
        C.VALUE_TARGETS: values + rng.normal(size=rows).astype(np.float32),
    })


def make_group(workload: str, learners: int, runtime) -> LearnerGroup:
    obs_space, _, minibatch, epochs = WORKLOADS[workload]
    cfg = (PPOConfig().environment("CartPole-v1")
           .training(minibatch_size=minibatch // max(1, learners), num_epochs=epochs)
           .learners(num_learners=learners, num_cpus_per_learner=1).debugging(seed=0))
    model = ModelSpec.create("actor_critic", obs_space, ACTIONS, None, {})
    return LearnerGroup(functools.partial(PPOLearner, model, cfg, "cpu"), cfg, runtime)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(workload: str, rounds: int, runtime) -> dict[str, float]:
    obs_space, rows, _, _ = WORKLOADS[workload]
    batch = make_batch(obs_space, rows)
    driver = make_group(workload, 0, runtime)
    groups = {"procs=1": make_group(workload, 1, runtime),
              "procs=2": make_group(workload, 2, runtime)}
    sink = runtime.spawn(Sink)
    runtime.get(sink.call("take", batch))

    def run_driver(threads: int):
        def go():
            saved = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                driver.update(batch)
            finally:
                torch.set_num_threads(saved)
        return go

    layouts = {"driver": run_driver(1),
               **{name: functools.partial(g.update, batch) for name, g in groups.items()},
               "hop": lambda: runtime.get(sink.call("take", batch))}
    for fn in layouts.values():  # warm-up: first-call allocations, DDP buckets
        fn()
    times: dict[str, list[float]] = {name: [] for name in layouts}
    for _ in range(rounds):
        for name, fn in layouts.items():
            times[name].append(timed(fn))
    # Last and on its own: after a multi-threaded op, OpenMP's idle workers spin for a
    # while, which would steal the cores of whatever layout ran next.
    two_threads = run_driver(2)
    two_threads()
    times["driver-2t"] = [timed(two_threads) for _ in range(rounds)]
    for g in groups.values():
        g.stop()
    sink.kill()
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workload", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    args = parser.parse_args()
    runtime = make_runtime("process")
    try:
        for workload in args.workload:
            _, rows, minibatch, epochs = WORKLOADS[workload]
            medians = bench(workload, args.rounds, runtime)
            print(f"\n{workload}: {rows} rows, minibatch {minibatch} (global), {epochs} epochs; "
                  f"median of {args.rounds}")
            print(f"{'layout':<10} {'ms/update':>10} {'rows/s':>10} {'vs driver':>10}")
            for name, t in medians.items():
                if name == "hop":
                    continue
                print(f"{name:<10} {t * 1e3:>10.1f} {rows / t:>10.0f} "
                      f"{medians['driver'] / t:>9.2f}x")
            print(f"process hop: procs=1 - driver = "
                  f"{(medians['procs=1'] - medians['driver']) * 1e3:.1f} ms; batch round trip "
                  f"alone = {medians['hop'] * 1e3:.2f} ms "
                  f"({batch_mib(workload):.1f} MiB)")
    finally:
        runtime.shutdown()


def batch_mib(workload: str) -> float:
    obs_space, rows, _, _ = WORKLOADS[workload]
    return sum(v.nbytes for v in make_batch(obs_space, rows).values()) / 2**20


if __name__ == "__main__":
    main()
