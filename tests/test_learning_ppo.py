"""Learning tests: PPO tuned examples reach their pass criteria with fixed seeds."""

import os

import pytest

from rl.experiment import fit, load_example

ROOT = os.path.join(os.path.dirname(__file__), "..", "tuned_examples")


def run_example(name: str, seed: int) -> dict:
    example = load_example(os.path.join(ROOT, name))
    example.config.set(seed=seed)
    with example.config.build() as algo:
        result, _ = fit(algo, example.stop, checkpoint_at_end=False)
    return result


@pytest.mark.learning
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ppo_cartpole(seed):
    result = run_example("ppo/cartpole.yaml", seed)
    assert result["episode_return_mean"] >= 475, result
    assert result["env_steps_total"] <= 100_000 + 1024


@pytest.mark.learning
def test_ppo_pendulum():
    result = run_example("ppo/pendulum.yaml", 0)
    assert result["episode_return_mean"] >= -250, result
    assert result["env_steps_total"] <= 300_000 + 2048
