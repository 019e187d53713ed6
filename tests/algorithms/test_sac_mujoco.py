"""tuned_examples/sac/halfcheetah.yaml in CI: two iterations of that very file on
MuJoCo's HalfCheetah-v5 (the ``mujoco`` extra, which ``make setup-test`` installs), with
a shorter warm-up and iteration than its 1M-step bench run."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from rl.experiment import load_example

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "tuned_examples", "sac",
                       "halfcheetah.yaml")
LEARNER_KEYS = ("learner/alpha", "learner/actor_loss", "learner/critic_loss",
                "learner/q_mean", "learner/entropy")


@pytest.fixture
def one_torch_thread():
    # 256x256 updates with two threads on two busy cores spin (measured: ~1 s per update
    # beside another job, 0.05 s with one thread).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_halfcheetah_example_trains_two_iterations(one_torch_thread):
    example = load_example(EXAMPLE)
    assert example.env == "HalfCheetah-v5" and not example.ci_seeds  # a bench run only
    config = example.config.set(learning_starts=50, min_sample_timesteps_per_iteration=100)
    with config.build() as algo:
        algo.stop_timesteps = 200
        results = [algo.train() for _ in range(2)]
        low, high = algo.action_space.low, algo.action_space.high
        obs = np.random.default_rng(0).normal(size=(16, *algo.obs_space.shape))
        actions = algo.compute_actions(obs.astype(np.float32), explore=True)
        stored = algo.replay.sample(64, np.random.default_rng(0))["actions"]
    assert results[-1]["env_steps_total"] == 200
    for key in LEARNER_KEYS:
        assert all(np.isfinite(r[key]) for r in results), key
    assert results[-1]["learner/num_updates"] > 0
    # Sampled actions fit the env's Box ([-1, 1]^6); the replay holds the actor's scale.
    assert actions.shape == (16, 6) and (actions >= low).all() and (actions <= high).all()
    assert (np.abs(stored) <= 1).all()
