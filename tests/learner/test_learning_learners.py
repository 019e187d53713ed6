"""Learning test: PPO CartPole-v1 with two DDP learner processes (seed 0).

The tuned example itself is checked by ``tests/test_learning.py``; this runs it through
the CLI with ``num_learners=2`` and a larger budget, against the example's own ``pass``
criterion (a greedy evaluation after the run).
"""

import json
import os
import subprocess
import sys

import pytest

from rl.experiment import load_example

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


@pytest.mark.learning
def test_ppo_cartpole_with_two_learners(tmp_path):
    # Exactly the command: the example plus --set num_learners=2. minibatch_size
    # is per learner, so the 2 x 128 rows per SGD step take half the example's steps per
    # epoch; the run still solves well inside the 150k budget.
    example = os.path.join(ROOT, "tuned_examples", "ppo", "cartpole.yaml")
    criterion = load_example(example).pass_criterion
    # rl train's evaluation after the run is the criterion's: pass.episodes greedy episodes.
    out = subprocess.run(
        [sys.executable, "-m", "rl.cli", "train", "-f", example, "--set", "num_learners=2",
         "--seed", "0", "--stop-timesteps", "150000",
         "--set", f"evaluation_duration={criterion.episodes}",
         "--logdir", str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert criterion.met(result), (criterion.describe(), result)
    assert result["env_steps_total"] <= 150_000
