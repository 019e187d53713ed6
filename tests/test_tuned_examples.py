"""Every tuned example parses, validates, and names a published reference."""

import glob
import os
import re

import pytest

from rl.config import ConfigError
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


BASE = """\
algo: ppo
env: CartPole-v1
stop: {env_steps_total: 1000}
pass: {episode_return_mean: 10}
"""


def write_example(tmp_path, text: str) -> str:
    path = tmp_path / "example.yaml"
    path.write_text(text)
    return str(path)


def test_ci_seeds_are_read_and_default_to_none(tmp_path):
    assert load_example(write_example(tmp_path, BASE)).ci_seeds == ()
    example = load_example(write_example(tmp_path, BASE + "ci: {seeds: [2, 0]}\n"))
    assert example.ci_seeds == (2, 0)


@pytest.mark.parametrize(("ci", "message"), [
    ("true", "ci must be a mapping with exactly one key, seeds"),
    ("{seeds: [0], budget: 5}", "ci must be a mapping with exactly one key, seeds"),
    ("{seeds: []}", "ci.seeds must be a non-empty list of integers >= 0"),
    ("{seeds: 0}", "ci.seeds must be a non-empty list of integers >= 0"),
    ("{seeds: [0, -1]}", "ci.seeds must be a non-empty list of integers >= 0"),
    ("{seeds: [0, 1.5]}", "ci.seeds must be a non-empty list of integers >= 0"),
    ("{seeds: [true]}", "ci.seeds must be a non-empty list of integers >= 0"),
    ("{seeds: [1, 1]}", "ci.seeds lists a seed twice"),
])
def test_bad_ci_values_are_clear_errors(tmp_path, ci, message):
    path = write_example(tmp_path, BASE + f"ci: {ci}\n")
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_example(path)
    assert path in str(info.value)


def test_a_ci_example_needs_pass_criteria_and_a_step_budget(tmp_path):
    no_pass = BASE.replace("pass: {episode_return_mean: 10}\n", "")
    with pytest.raises(ConfigError, match="needs pass criteria"):
        load_example(write_example(tmp_path, no_pass + "ci: {seeds: [0]}\n"))
    no_budget = BASE.replace("{env_steps_total: 1000}", "{training_iteration: 3}")
    with pytest.raises(ConfigError, match="needs a stop.env_steps_total budget"):
        load_example(write_example(tmp_path, no_budget + "ci: {seeds: [0]}\n"))
