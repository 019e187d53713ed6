"""Every tuned example parses, validates, and names a published reference whose protocol
its pass criterion measures; bad ``pass``/``reference``/``ci`` values are clear errors."""

import glob
import os
import re

import pytest

from rl.config import ConfigError
from rl.experiment import PROTOCOLS, load_example

FILES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "tuned_examples", "*",
                                      "*.yaml")))


def test_the_required_examples_exist():
    names = {os.path.relpath(f, os.path.join(os.path.dirname(__file__), "..", "tuned_examples"))
             for f in FILES}
    for required in ("ppo/cartpole.yaml", "ppo/pendulum.yaml", "ppo/lunarlander.yaml",
                     "ppo/pong.yaml", "ppo/breakout.yaml", "dqn/cartpole.yaml",
                     "dqn/lunarlander.yaml", "dqn/pong.yaml", "impala/cartpole.yaml",
                     "impala/pong.yaml", "sac/pendulum.yaml", "sac/halfcheetah.yaml"):
        assert required in names


@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(os.path.dirname(f)) + "/" +
                                             os.path.basename(f) for f in FILES])
def test_example_loads_and_validates(path):
    example = load_example(path)
    example.config.validate()
    assert example.stop.to_dict(), "an example needs a budget"
    assert example.pass_criterion is not None and example.reference.source
    # Like with like: the criterion measures what the published figure measured.
    assert example.pass_criterion.metric == PROTOCOLS[example.reference.protocol]


@pytest.mark.parametrize(("name", "protocol"), [
    # rl-baselines3-zoo's benchmark.md: the trained agent's deterministic episodes.
    ("ppo/cartpole", "greedy_eval"), ("ppo/pendulum", "greedy_eval"),
    ("ppo/lunarlander", "greedy_eval"), ("dqn/cartpole", "greedy_eval"),
    ("dqn/lunarlander", "greedy_eval"), ("sac/halfcheetah", "greedy_eval"),
    # EPyMARL's MPE table: greedy test episodes of the trained agents.
    ("ppo/simple_spread", "greedy_eval"),
    # CleanRL's Atari tables: the episodic return of the training episodes; RLlib's gate.
    ("ppo/pong", "training_return"), ("ppo/breakout", "training_return"),
    ("dqn/pong", "training_return"), ("impala/pong", "training_return"),
    ("impala/cartpole", "training_return"),
])
def test_each_reference_names_the_protocol_it_was_measured_by(name, protocol):
    root = os.path.join(os.path.dirname(__file__), "..", "tuned_examples")
    example = load_example(os.path.join(root, name + ".yaml"))
    assert example.reference.protocol == protocol
    if protocol == "greedy_eval":
        assert example.pass_criterion.episodes >= 10


BASE = """\
algo: ppo
env: CartPole-v1
stop: {env_steps_total: 1000}
pass: {metric: episode_return_mean, min: 10}
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
    no_pass = BASE.replace("pass: {metric: episode_return_mean, min: 10}\n", "")
    with pytest.raises(ConfigError, match="needs pass criteria"):
        load_example(write_example(tmp_path, no_pass + "ci: {seeds: [0]}\n"))
    no_budget = BASE.replace("{env_steps_total: 1000}", "{training_iteration: 3}")
    with pytest.raises(ConfigError, match="needs a stop.env_steps_total budget"):
        load_example(write_example(tmp_path, no_budget + "ci: {seeds: [0]}\n"))


GREEDY_REF = ("reference: {source: rl-zoo, value: 500, std: 0, protocol: greedy_eval, "
              "episodes: 300}\n")


def test_a_greedy_criterion_and_its_reference_are_read(tmp_path):
    text = BASE.replace("pass: {metric: episode_return_mean, min: 10}",
                        "pass: {metric: eval/episode_return_mean, min: 475, episodes: 10}")
    example = load_example(write_example(tmp_path, text + GREEDY_REF))
    assert (example.pass_criterion.metric, example.pass_criterion.min,
            example.pass_criterion.episodes) == ("eval/episode_return_mean", 475.0, 10)
    assert example.pass_criterion.protocol == "greedy_eval"
    ref = example.reference
    assert (ref.source, ref.value, ref.std, ref.protocol, ref.episodes) == (
        "rl-zoo", 500.0, 0.0, "greedy_eval", 300)
    assert ref.describe() == "500 ± 0 (greedy eval over 300 episodes) (rl-zoo)"


@pytest.mark.parametrize(("pass_", "message"), [
    ("{metric: eval/return, min: 1, episodes: 5}",
     "unknown pass.metric 'eval/return'; valid: eval/episode_return_mean, episode_return_mean"),
    ("{metric: eval/episode_return_mean, min: 1}", "needs pass.episodes"),
    ("{metric: eval/episode_return_mean, min: 1, episodes: 0}",
     "pass.episodes must be an integer >= 1; got 0"),
    ("{metric: episode_return_mean, min: 1, episodes: 10}",
     "pass.episodes is for a greedy evaluation"),
    ("{metric: episode_return_mean, min: high}", "pass.min must be a number; got 'high'"),
    ("{metric: episode_return_mean}", "pass is missing min"),
    ("{metric: episode_return_mean, min: 1, max: 2}",
     "unknown pass keys ['max']; valid: metric, min, episodes"),
    ("{episode_return_mean: 10}", "is the old form; write pass: {metric: NAME, min: VALUE}"),
    ("475", "pass must be a mapping"),
])
def test_bad_pass_values_are_clear_errors(tmp_path, pass_, message):
    path = write_example(tmp_path, BASE.replace("{metric: episode_return_mean, min: 10}", pass_))
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_example(path)
    assert path in str(info.value)


@pytest.mark.parametrize(("reference", "message"), [
    ("{source: x, value: 1, protocol: best_of_5}",
     "unknown reference.protocol 'best_of_5'; valid: greedy_eval, training_return"),
    ("{source: x, value: 1}", "reference is missing protocol"),
    ('{source: x, value: "500 ± 0", protocol: training_return}',
     "reference.value must be a number; got '500 ± 0'"),
    ("{source: x, value: 1, protocol: training_return, std: -1}",
     "reference.std must be a number >= 0; got -1"),
    ("{source: x, value: 1, protocol: training_return, episodes: 10}",
     "reference.episodes is for protocol greedy_eval"),
    ("{source: x, value: 1, protocol: training_return, url: y}",
     "unknown reference keys ['url']; valid: source, value, protocol, std, episodes, seeds, "
     "budget, note"),
])
def test_bad_reference_values_are_clear_errors(tmp_path, reference, message):
    path = write_example(tmp_path, BASE + f"reference: {reference}\n")
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_example(path)
    assert path in str(info.value)


def test_a_criterion_must_measure_what_the_reference_measured(tmp_path):
    # A training-return criterion against a greedy-evaluation figure: the defect this guards.
    path = write_example(tmp_path, BASE + GREEDY_REF)
    with pytest.raises(ConfigError, match=re.escape(
            "pass.metric episode_return_mean does not measure what the reference does "
            "(protocol greedy_eval); compare like with like: use pass.metric "
            "eval/episode_return_mean")):
        load_example(path)


def test_a_bad_example_fails_before_training(tmp_path, capsys):
    from rl.cli import main

    path = write_example(tmp_path, BASE.replace("{metric: episode_return_mean, min: 10}",
                                                "{metric: eval/return, min: 1}"))
    assert main(["bench", path, "--seeds", "0", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "unknown pass.metric 'eval/return'" in err and "[1/" not in err
    assert not (tmp_path / "out").exists()
