"""Learning test: the DQN CartPole tuned example reaches its pass criterion.

1 worker x 4 envs on the process backend, seeds 0, 1, 2; each seed must reach
``episode_return_mean >= 475`` (the mean of the last 100 training episodes) within
the example's 100k env-step budget.
"""

import os
import time

import pytest

from rl.experiment import fit, load_example

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "tuned_examples", "dqn",
                       "cartpole.yaml")


@pytest.mark.learning
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dqn_cartpole(seed):
    example = load_example(EXAMPLE)
    example.config.set(seed=seed)
    start = time.perf_counter()
    with example.config.build() as algo:
        result, _ = fit(algo, example.stop, checkpoint_at_end=False)
    print(f"DQN CartPole seed {seed}: episode_return_mean {result['episode_return_mean']:.1f} "
          f"at {result['env_steps_total']} env steps, {time.perf_counter() - start:.0f} s")
    for key, threshold in example.pass_criteria.items():
        assert result[key] >= threshold, result
    assert result["env_steps_total"] <= example.stop.env_steps_total
