"""Every tuned example parses, validates, and names a published reference."""

import glob
import os

import pytest

from rl.experiment import load_example

FILES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "tuned_examples", "*",
                                      "*.yaml")))


def test_the_required_examples_exist():
    names = {os.path.relpath(f, os.path.join(os.path.dirname(__file__), "..", "tuned_examples"))
             for f in FILES}
    for required in ("ppo/cartpole.yaml", "ppo/pendulum.yaml", "ppo/lunarlander.yaml",
                     "ppo/pong.yaml", "ppo/breakout.yaml", "dqn/cartpole.yaml",
                     "dqn/lunarlander.yaml", "dqn/pong.yaml", "impala/cartpole.yaml",
                     "impala/pong.yaml"):
        assert required in names


@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(os.path.dirname(f)) + "/" +
                                             os.path.basename(f) for f in FILES])
def test_example_loads_and_validates(path):
    example = load_example(path)
    example.config.validate()
    assert example.stop.to_dict(), "an example needs a budget"
    assert example.pass_criteria and example.reference.get("source")
