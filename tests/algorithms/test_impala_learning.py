"""Learning test: the IMPALA CartPole tuned example reaches its pass criterion.

2 workers x 8 envs on the process backend, seeds 0, 1, 2; each seed must reach
``episode_return_mean >= 475`` within the example's 1M env-step budget.
"""

import os

import pytest

from rl.experiment import fit, load_example

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "tuned_examples", "impala",
                       "cartpole.yaml")


@pytest.mark.learning
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_impala_cartpole(seed):
    example = load_example(EXAMPLE)
    example.config.set(seed=seed)
    assert example.config.num_env_runners == 2 and example.config.backend == "process"
    with example.config.build() as algo:
        result, _ = fit(algo, example.stop, checkpoint_at_end=False)
    for key, threshold in example.pass_criteria.items():
        assert result[key] >= threshold, result
    assert result["env_steps_total"] <= example.stop.env_steps_total
