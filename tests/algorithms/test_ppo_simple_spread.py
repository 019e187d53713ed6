"""tuned_examples/ppo/simple_spread.yaml in CI: two iterations of that very file on
mpe2's simple_spread_v3 (the ``multiagent`` extra), three agents sharing one PPO policy on
the process backend; its learning run is ``rl bench`` work (minutes), not a CI test."""

from __future__ import annotations

import os

import numpy as np

from rl.experiment import load_example

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "tuned_examples", "ppo",
                       "simple_spread.yaml")


def test_the_simple_spread_example_trains_two_iterations():
    example = load_example(EXAMPLE)
    assert example.env == "mpe2.simple_spread_v3:parallel_env"
    assert not example.ci_seeds  # a bench run only
    config = example.config
    with config.build() as algo:
        results = [algo.train() for _ in range(2)]
        metrics = algo.evaluate(2)
    batch = config.train_batch_size
    assert [r["env_steps_total"] for r in results] == [batch, 2 * batch]
    assert results[-1]["episode_len_mean"] == 25  # max_cycles of the file's env_config
    policy = "learner/default_policy/"  # one policy shared by the three agents
    for key in ("policy_loss", "vf_loss", "entropy"):
        assert all(np.isfinite(r[policy + key]) for r in results), key
    assert metrics["eval/episodes"] == 2 and metrics["eval/episode_len_mean"] == 25
    assert np.isfinite(metrics["eval/episode_return_mean"])
