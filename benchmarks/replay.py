"""Replay-buffer throughput: rl.data.replay against Stable-Baselines3, in one run.

Measures transitions/s (median over repeats) for

- insert: ``add`` of B rows per call (B = 16, 256), i.e. one env step of B envs;
  for n-step, ``NStepAccumulator.add`` of a ``[1, B]`` (one step of B envs) or a
  ``[B / 8, 8]`` fragment (a rollout fragment of 8 envs), then ``add``;
- sample: batches of 256, uniform, prioritised and n-step; SB3 returns torch
  tensors, so ``rl`` is also timed with ``SampleBatch.to_torch()`` for a like
  comparison.

Observations are CartPole-sized (4 float32) and, unless ``--no-atari``, Atari-sized
(84x84x4 uint8). Ratios are rl / SB3 (> 1: rl is faster).

    python benchmarks/replay.py [--quick] [--no-atari]

Needs ``stable-baselines3`` (``pip install -c constraints.txt stable-baselines3``).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.buffers import NStepReplayBuffer
from stable_baselines3.common.buffers import ReplayBuffer as SB3ReplayBuffer

from rl.data import columns as C
from rl.data.nstep import NStepAccumulator
from rl.data.replay import PrioritizedReplayBuffer, ReplayBuffer

GAMMA = 0.99
N_STEP = 3
SAMPLE_BATCH = 256


@dataclass
class ObsKind:
    name: str
    space: gym.spaces.Box
    capacity: int


def time_interleaved(
    fns: dict[str, Callable[[], object]], number: int, repeats: int
) -> dict[str, float]:
    """Median seconds per call of each function over ``repeats`` rounds of ``number`` calls.

    The rounds of all functions alternate, so that a change of machine load during
    the run (other processes, frequency scaling) hits every implementation alike
    and the ratios stay fair.
    """
    for fn in fns.values():
        fn()  # warm up: first-touch page faults, lazy allocation
    rounds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(number):
                fn()
            rounds[name].append((time.perf_counter() - start) / number)
    return {name: statistics.median(r) for name, r in rounds.items()}


def random_obs(space: gym.spaces.Box, rng: np.random.Generator, rows: int) -> np.ndarray:
    if space.dtype == np.uint8:
        return rng.integers(0, 256, size=(rows, *space.shape), dtype=np.uint8)
    return rng.normal(size=(rows, *space.shape)).astype(space.dtype)


def make_rows(kind: ObsKind, rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    return {
        C.OBS: random_obs(kind.space, rng, rows),
        C.ACTIONS: rng.integers(0, 2, size=rows),
        C.REWARDS: rng.normal(size=rows).astype(np.float32),
        C.NEXT_OBS: random_obs(kind.space, rng, rows),
        C.TERMINATEDS: rng.random(rows) < 0.01,
        C.TRUNCATEDS: rng.random(rows) < 0.005,
    }


def one_step(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A 1-step transition batch as the learner stores it (truncation folded into discounts)."""
    out = {k: v for k, v in rows.items() if k != C.TRUNCATEDS}
    out[C.DISCOUNTS] = np.full(len(out[C.REWARDS]), GAMMA, np.float32)
    return out


def sb3_buffer(kind: ObsKind, n_envs: int, nstep: bool = False) -> SB3ReplayBuffer:
    cls = NStepReplayBuffer if nstep else SB3ReplayBuffer
    kw = {"n_steps": N_STEP, "gamma": GAMMA} if nstep else {}
    return cls(kind.capacity, kind.space, gym.spaces.Discrete(2), device="cpu", n_envs=n_envs, **kw)


def sb3_add(buf: SB3ReplayBuffer, rows: dict[str, np.ndarray]) -> None:
    infos = [{"TimeLimit.truncated": bool(t)} for t in rows[C.TRUNCATEDS]]
    done = rows[C.TERMINATEDS] | rows[C.TRUNCATEDS]
    buf.add(rows[C.OBS], rows[C.NEXT_OBS], rows[C.ACTIONS], rows[C.REWARDS], done, infos)


def fill_rl(buf: ReplayBuffer, kind: ObsKind, rng: np.random.Generator) -> None:
    chunk = one_step(make_rows(kind, rng, min(kind.capacity, 4096)))
    while len(buf) < buf.capacity:
        buf.add(chunk)


def fill_sb3(buf: SB3ReplayBuffer, kind: ObsKind, rng: np.random.Generator) -> None:
    rows = make_rows(kind, rng, buf.n_envs)
    while not buf.full:
        sb3_add(buf, rows)


def bench_insert(kind: ObsKind, batch: int, number: int, repeats: int) -> list[tuple]:
    """Insert ``batch`` rows per call into full buffers (steady state: the ring wraps)."""
    rng = np.random.default_rng(0)
    rows = make_rows(kind, rng, batch)
    transitions = one_step(rows)

    sb3 = sb3_buffer(kind, batch)
    fill_sb3(sb3, kind, rng)
    fns: dict[str, Callable[[], object]] = {"sb3 ReplayBuffer.add": lambda: sb3_add(sb3, rows)}
    for cls in (ReplayBuffer, PrioritizedReplayBuffer):
        buf = cls(kind.capacity)
        fill_rl(buf, kind, rng)
        fns[f"rl {cls.__name__}.add"] = lambda buf=buf: buf.add(transitions)
    # [T, N] with T * N = batch: T = 1 is one step of all envs (SB3's call pattern),
    # T = batch / 8 a rollout fragment of 8 envs (rl's).
    for steps in (1, batch // 8):
        fragment = {k: v.reshape(steps, batch // steps, *v.shape[1:]) for k, v in rows.items()}
        buf, acc = ReplayBuffer(kind.capacity), NStepAccumulator(N_STEP, GAMMA)
        fill_rl(buf, kind, rng)
        name = f"rl NStepAccumulator(n={N_STEP}) [{steps}, {batch // steps}] + add"
        fns[name] = lambda buf=buf, acc=acc, fragment=fragment: buf.add(acc.add(fragment))

    seconds = time_interleaved(fns, number, repeats)
    base = seconds["sb3 ReplayBuffer.add"]
    return [
        (f"insert B={batch}", name, batch / s, None if name.startswith("sb3") else base / s)
        for name, s in seconds.items()
    ]


def bench_sample(kind: ObsKind, number: int, repeats: int) -> list[tuple]:
    """Sample batches of 256 from full buffers."""
    rng = np.random.default_rng(1)
    td = rng.exponential(size=SAMPLE_BATCH)

    sb3 = sb3_buffer(kind, 1)
    fill_sb3(sb3, kind, rng)
    sb3_nstep = sb3_buffer(kind, 1, nstep=True)
    fill_sb3(sb3_nstep, kind, rng)
    uniform = ReplayBuffer(kind.capacity)
    fill_rl(uniform, kind, rng)
    per = PrioritizedReplayBuffer(kind.capacity)
    fill_rl(per, kind, rng)
    per.update_priorities(np.arange(kind.capacity), rng.exponential(size=kind.capacity))

    def per_round() -> None:
        batch = per.sample(SAMPLE_BATCH, rng)
        batch.to_torch()
        per.update_priorities(batch[C.BATCH_INDEXES], td)

    sb3_name, sb3_nstep_name = "sb3 ReplayBuffer.sample (torch)", "sb3 NStepReplayBuffer.sample"
    # rl's n-step transitions are built at insert: sampling them is a uniform sample,
    # so "rl ... + to_torch" is also the n-step figure; compare it with sb3 n-step.
    fns: dict[str, Callable[[], object]] = {
        sb3_name: lambda: sb3.sample(SAMPLE_BATCH),
        f"{sb3_nstep_name}(n={N_STEP}) (torch)": lambda: sb3_nstep.sample(SAMPLE_BATCH),
        "rl ReplayBuffer.sample (numpy)": lambda: uniform.sample(SAMPLE_BATCH, rng),
        "rl ReplayBuffer.sample + to_torch": lambda: uniform.sample(SAMPLE_BATCH, rng).to_torch(),
        "rl PrioritizedReplayBuffer.sample + to_torch": lambda: per.sample(
            SAMPLE_BATCH, rng
        ).to_torch(),
        "rl PER sample + to_torch + update_priorities": per_round,
    }
    seconds = time_interleaved(fns, number, repeats)
    base = seconds[sb3_name]
    results = [
        (
            f"sample {SAMPLE_BATCH}",
            name,
            SAMPLE_BATCH / s,
            None if name.startswith("sb3") else base / s,
        )
        for name, s in seconds.items()
    ]
    nstep_base = seconds[f"{sb3_nstep_name}(n={N_STEP}) (torch)"]
    rl_nstep = seconds["rl ReplayBuffer.sample + to_torch"]
    results.append(
        (
            f"sample {SAMPLE_BATCH}",
            "rl n-step (= uniform) + to_torch, vs sb3 n-step",
            SAMPLE_BATCH / rl_nstep,
            nstep_base / rl_nstep,
        )
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small buffers, few repeats")
    parser.add_argument("--no-atari", action="store_true", help="CartPole-sized obs only")
    args = parser.parse_args()
    torch.set_num_threads(1)

    number, repeats = (50, 5) if args.quick else (200, 9)
    kinds = [
        ObsKind(
            "cartpole (4,) float32",
            gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
            100_000 if args.quick else 1_000_000,
        )
    ]
    if not args.no_atari:
        kinds.append(
            ObsKind(
                "atari (84, 84, 4) uint8",
                gym.spaces.Box(0, 255, (84, 84, 4), np.uint8),
                5_000 if args.quick else 20_000,
            )
        )

    for kind in kinds:
        print(f"\n== {kind.name}, capacity {kind.capacity:,} ==")
        print(f"{'op':<14} {'implementation':<48} {'transitions/s':>14} {'rl/sb3':>7}")
        results = []
        for batch in (16, 256):
            results += bench_insert(kind, batch, number, repeats)
            gc.collect()  # free this group's buffers before the next group is built
        results += bench_sample(kind, number, repeats)
        gc.collect()
        for op, name, rate, ratio in results:
            ratio_s = f"{ratio:7.2f}" if ratio is not None else f"{'-':>7}"
            print(f"{op:<14} {name:<48} {rate:>14,.0f} {ratio_s}")


if __name__ == "__main__":
    main()
