"""Action distributions: rl's tensor-level classes against ``torch.distributions``.

Times the per-step inference path (build from logits, sample, log-prob) at worker
batch sizes and the training path (log-prob + entropy) at minibatch sizes, for
Categorical (Discrete) and diagonal Gaussian (Box). Medians of repeated runs;
ratio = torch.distributions time / rl time (above 1: rl is faster).

    python benchmarks/distributions.py [--repeats 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np
import torch
from torch import distributions as D

from rl.policies import DistributionSpec


def timeit(fn, repeats: int) -> float:
    for _ in range(20):
        fn()
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        samples.append((time.perf_counter() - start) / repeats)
    return statistics.median(samples)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=2000)
    args = p.parse_args()
    torch.set_num_threads(1)
    cat = DistributionSpec(gym.spaces.Discrete(4))
    gauss = DistributionSpec(gym.spaces.Box(-1, 1, (6,), np.float32))
    rows = []
    for batch in (8, 256):
        logits = torch.randn(batch, 4)

        def ours_cat(logits=logits):
            d = cat(logits)
            a = d.sample()
            return d.log_prob(a), d.entropy()

        def torch_cat(logits=logits):
            d = D.Categorical(logits=logits, validate_args=False)
            a = d.sample()
            return d.log_prob(a), d.entropy()

        rows.append((f"Categorical(4) B={batch}", timeit(ours_cat, args.repeats),
                     timeit(torch_cat, args.repeats)))
        inputs = torch.randn(batch, 12)
        mean, log_std = inputs.chunk(2, -1)

        def ours_gauss(inputs=inputs):
            d = gauss(inputs)
            a = d.sample()
            return d.log_prob(a), d.entropy()

        def torch_gauss(mean=mean, log_std=log_std):
            d = D.Independent(D.Normal(mean, log_std.exp(), validate_args=False), 1,
                              validate_args=False)
            a = d.sample()
            return d.log_prob(a), d.entropy()

        rows.append((f"DiagGaussian(6) B={batch}", timeit(ours_gauss, args.repeats),
                     timeit(torch_gauss, args.repeats)))
    print(f"{'distribution':<24} {'rl us':>8} {'torch us':>9} {'torch/rl':>9}")
    for name, ours, ref in rows:
        print(f"{name:<24} {ours * 1e6:>8.1f} {ref * 1e6:>9.1f} {ref / ours:>9.2f}")


if __name__ == "__main__":
    main()
