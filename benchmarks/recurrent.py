"""Sampling cost of the built-in LSTM: env steps/s of the inline sampler on
StatelessCartPole-v1, feed-forward (the built-in MLP, hiddens [64]) against
``use_lstm`` (the same encoder, then a 64-cell LSTM), in interleaved rounds so machine
load hits both alike. Reports the median steps/s of each and the LSTM's share.

    python benchmarks/recurrent.py [--rounds 5] [--steps 16384]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rl import PPOConfig


def sampler(use_lstm: bool):
    cfg = (PPOConfig().environment("StatelessCartPole-v1").resources(backend="inline")
           .env_runners(num_env_runners=0, num_envs_per_env_runner=8, rollout_fragment_length=64)
           .training(train_batch_size=512, minibatch_size=128, model_hiddens=[64],
                     use_lstm=use_lstm, lstm_cell_size=64, max_seq_len=32))
    algo = cfg.build()
    algo.workers.sample()  # warm-up

    def run(steps: int) -> float:
        done, start = 0, time.perf_counter()
        while done < steps:
            for r in algo.workers.sample():
                done += r["batch"]["rewards"].size
        return done / (time.perf_counter() - start)

    return run, algo.stop


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=16384)
    args = p.parse_args()
    torch.set_num_threads(1)  # the rollout workers' setting
    cases = {"feed-forward": sampler(False), "use_lstm": sampler(True)}
    rates: dict[str, list[float]] = {k: [] for k in cases}
    try:
        for _ in range(args.rounds):
            for name, (run, _) in cases.items():
                rates[name].append(run(args.steps))
    finally:
        for _, stop in cases.values():
            stop()
    med = {k: statistics.median(v) for k, v in rates.items()}
    for k, v in med.items():
        print(f"{k}: {v:,.0f} env steps/s (median of {args.rounds})")
    print(f"use_lstm / feed-forward: {med['use_lstm'] / med['feed-forward']:.2f}")


if __name__ == "__main__":
    main()
