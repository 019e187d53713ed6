"""Learning tests: every tuned example with a ``ci`` key reaches its ``pass`` criteria.

One test, parametrised over (example, seed) for the seeds the example lists under
``ci: {seeds: [...]}``. The criterion and the budget are the example's own (``pass``
and ``stop.env_steps_total``), measured by the protocol of its reference (a greedy
evaluation of ``pass.episodes`` episodes after training, or the training return): the
file that ``rl train -f`` runs and ``rl bench`` times is the file checked here, with
nothing copied into the test.
"""

from __future__ import annotations

import glob
import os
import time

import pytest

from rl.config import AlgorithmConfig
from rl.experiment import fit, load_example

ROOT = os.path.join(os.path.dirname(__file__), "..", "tuned_examples")


def ci_cases() -> list:
    cases = []
    for path in sorted(glob.glob(os.path.join(ROOT, "*", "*.yaml"))):
        name = os.path.relpath(path, ROOT).removesuffix(".yaml")
        for seed in load_example(path).ci_seeds:
            cases.append(pytest.param(path, seed, id=f"{name}-seed{seed}"))
    return cases


def iteration_env_steps(config: AlgorithmConfig) -> int:
    """The env steps one ``train()`` iteration samples.

    An iteration that starts under the budget ends past it by up to this much. DQN's
    ``train_batch_size`` is its SGD batch, and ``min_sample_timesteps_per_iteration`` the
    iteration's quota; PPO and IMPALA sample ``train_batch_size`` env steps per iteration.
    """
    return getattr(config, "min_sample_timesteps_per_iteration", config.train_batch_size)


def test_the_ci_examples_are_found():
    assert ci_cases(), "no tuned example carries a ci key"


@pytest.mark.learning
@pytest.mark.parametrize(("path", "seed"), ci_cases())
def test_tuned_example_passes(path, seed):
    example = load_example(path)
    example.config.set(seed=seed)
    start = time.perf_counter()
    criterion = example.pass_criterion
    with example.config.build() as algo:
        result, _ = fit(algo, example.stop, checkpoint_at_end=False)
        trained = time.perf_counter()
        measured = criterion.measure(algo, result)
        measuring_s = time.perf_counter() - trained
    print(f"{example.algo} {example.env} seed {seed}: {criterion.metric} "
          f"{measured[criterion.metric]:.1f} (training return "
          f"{result['episode_return_mean']:.1f}) at {result['env_steps_total']} env steps, "
          f"{time.perf_counter() - start:.0f} s, {measuring_s:.1f} s of it measuring")
    assert criterion.met(measured), (criterion.describe(), measured, result)
    budget = example.stop.env_steps_total + iteration_env_steps(example.config)
    assert result["env_steps_total"] <= budget, result
