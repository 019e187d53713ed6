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
from rl.data.replay import NStepAccumulator, PrioritizedReplayBuffer, ReplayBuffer

GAMMA = 0.99
N_STEP = 3
SAMPLE_BATCH = 256


@dataclass
class ObsKind:
    name: str
    space: gym.spaces.Box
    capacity: int


def time_per_call(fn: Callable[[], object], number: int, repeats: int) -> float:
    """Median seconds per call over ``repeats`` rounds of ``number`` calls."""
    fn()  # warm up: first-touch page faults, lazy allocation
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        rounds.append((time.perf_counter() - start) / number)
    return statistics.median(rounds)


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
    rng = np.random.default_rng(0)
    rows = make_rows(kind, rng, batch)
    transitions = one_step(rows)
    label = f"insert B={batch}"

    def timed(make: Callable[[], Callable[[], object]]) -> float:
        # Build (and prefill) inside, so the buffer is freed before the next one.
        seconds = time_per_call(make(), number, repeats)
        gc.collect()
        return seconds

    def sb3_insert() -> Callable[[], object]:
        buf = sb3_buffer(kind, batch)
        fill_sb3(buf, kind, rng)  # steady state: pages touched, ring wrapping
        return lambda: sb3_add(buf, rows)

    def rl_insert(cls: type[ReplayBuffer]) -> Callable[[], Callable[[], object]]:
        def make() -> Callable[[], object]:
            buf = cls(kind.capacity)
            fill_rl(buf, kind, rng)
            return lambda: buf.add(transitions)

        return make

    def nstep_insert(steps: int) -> Callable[[], Callable[[], object]]:
        # [T, N] with T * N = batch: T = 1 is one env step of all envs (SB3's call
        # pattern); T = batch / 8 is a rollout fragment of 8 envs (rl's).
        fragment = {k: v.reshape(steps, batch // steps, *v.shape[1:]) for k, v in rows.items()}

        def make() -> Callable[[], object]:
            buf, acc = ReplayBuffer(kind.capacity), NStepAccumulator(N_STEP, GAMMA)
            fill_rl(buf, kind, rng)
            return lambda: buf.add(acc.add(fragment))

        return make

    base = timed(sb3_insert)
    results = [(label, "sb3 ReplayBuffer.add", batch / base, None)]
    for name, make in [
        ("rl ReplayBuffer.add", rl_insert(ReplayBuffer)),
        ("rl PrioritizedReplayBuffer.add", rl_insert(PrioritizedReplayBuffer)),
        (f"rl NStepAccumulator(n={N_STEP}) [1, {batch}] + add", nstep_insert(1)),
        (f"rl NStepAccumulator(n={N_STEP}) [{batch // 8}, 8] + add", nstep_insert(batch // 8)),
    ]:
        seconds = timed(make)
        results.append((label, name, batch / seconds, base / seconds))
    return results


def bench_sample(kind: ObsKind, number: int, repeats: int) -> list[tuple]:
    rng = np.random.default_rng(1)
    label = f"sample {SAMPLE_BATCH}"
    td = rng.exponential(size=SAMPLE_BATCH)

    def timed(make: Callable[[], Callable[[], object]]) -> float:
        seconds = time_per_call(make(), number, repeats)
        gc.collect()
        return seconds

    def sb3_sample(nstep: bool) -> Callable[[], Callable[[], object]]:
        def make() -> Callable[[], object]:
            buf = sb3_buffer(kind, 1, nstep=nstep)
            fill_sb3(buf, kind, rng)
            return lambda: buf.sample(SAMPLE_BATCH)

        return make

    def rl_sample(per: bool, torch_out: bool, update: bool = False):
        def make() -> Callable[[], object]:
            buf = PrioritizedReplayBuffer(kind.capacity) if per else ReplayBuffer(kind.capacity)
            fill_rl(buf, kind, rng)
            if per:
                buf.update_priorities(np.arange(kind.capacity), rng.exponential(size=kind.capacity))

            def step() -> None:
                batch = buf.sample(SAMPLE_BATCH, rng)
                if torch_out:
                    batch.to_torch()
                if update:
                    buf.update_priorities(batch[C.BATCH_INDEXES], td)

            return step

        return make

    base = timed(sb3_sample(False))
    base_nstep = timed(sb3_sample(True))
    results = [
        (label, "sb3 ReplayBuffer.sample (torch)", SAMPLE_BATCH / base, None),
        (
            label,
            f"sb3 NStepReplayBuffer(n={N_STEP}).sample (torch)",
            SAMPLE_BATCH / base_nstep,
            None,
        ),
    ]
    # rl's n-step transitions are built at insert: sampling them is a uniform sample.
    for name, make, ref in [
        ("rl ReplayBuffer.sample (numpy)", rl_sample(False, False), base),
        ("rl ReplayBuffer.sample + to_torch", rl_sample(False, True), base),
        ("rl n-step sample + to_torch (vs sb3 n-step)", rl_sample(False, True), base_nstep),
        ("rl PrioritizedReplayBuffer.sample + to_torch", rl_sample(True, True), base),
        ("rl PER sample + to_torch + update_priorities", rl_sample(True, True, True), base),
    ]:
        seconds = timed(make)
        results.append((label, name, SAMPLE_BATCH / seconds, ref / seconds))
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
                5_000 if args.quick else 30_000,
            )
        )

    for kind in kinds:
        print(f"\n== {kind.name}, capacity {kind.capacity:,} ==")
        print(f"{'op':<14} {'implementation':<48} {'transitions/s':>14} {'rl/sb3':>7}")
        results = []
        for batch in (16, 256):
            results += bench_insert(kind, batch, number, repeats)
        results += bench_sample(kind, number, repeats)
        for op, name, rate, ratio in results:
            ratio_s = f"{ratio:7.2f}" if ratio is not None else f"{'-':>7}"
            print(f"{op:<14} {name:<48} {rate:>14,.0f} {ratio_s}")


if __name__ == "__main__":
    main()
