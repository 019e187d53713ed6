"""Learning test: PPO CartPole-v1 with two DDP learner processes (seed 0)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


@pytest.mark.learning
def test_ppo_cartpole_with_two_learners(tmp_path):
    # Exactly the command: the example plus --set num_learners=2. minibatch_size
    # is per learner, so the 2 x 128 rows per SGD step take half the example's steps per
    # epoch; the run still solves well inside the 150k budget.
    out = subprocess.run(
        [sys.executable, "-m", "rl.cli", "train", "-f",
         os.path.join(ROOT, "tuned_examples", "ppo", "cartpole.yaml"), "--set", "num_learners=2",
         "--seed", "0", "--stop-timesteps", "150000",
         "--logdir", str(tmp_path), "--json", "--no-eval"],
        capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["episode_return_mean"] >= 475, result
    assert result["env_steps_total"] <= 150_000
