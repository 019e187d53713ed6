"""Env name resolution, registration and space preparation."""

import gymnasium as gym
import numpy as np
import pytest

import rl
from rl.envs import (
    EnvNameError,
    UnsupportedSpaceError,
    check_action_space,
    make_env,
    prepare_observation_space,
    resolve_env,
)
from tests.toy_envs import ConfigurableEnv


def test_exact_id_and_short_names_resolve_to_highest_version():
    assert resolve_env("CartPole-v1").env_id == "CartPole-v1"
    assert resolve_env("CartPole").env_id == "CartPole-v1"
    assert resolve_env("cartpole").env_id == "CartPole-v1"
    assert resolve_env("pendulum").env_id == "Pendulum-v1"


def test_unknown_name_lists_closest_valid_names():
    with pytest.raises(EnvNameError, match="CartPole-v1"):
        resolve_env("CartPol")
    with pytest.raises(EnvNameError, match="unknown env"):
        resolve_env("NoSuchThingAtAll")


def test_ambiguous_short_name_is_an_error():
    gym.register("AmbigTest-v0", entry_point=ConfigurableEnv)
    gym.register("ambigtest-v0", entry_point=ConfigurableEnv)
    try:
        with pytest.raises(EnvNameError, match="ambiguous"):
            resolve_env("AMBIGTEST")
    finally:
        gym.registry.pop("AmbigTest-v0")
        gym.registry.pop("ambigtest-v0")


def test_import_path_and_env_config_reach_the_class():
    spec = resolve_env("tests.toy_envs:ConfigurableEnv")
    env = spec.make({"size": 5})
    assert env.observation_space.shape == (5,)
    with pytest.raises(EnvNameError, match="no attribute"):
        resolve_env("tests.toy_envs:ConfigurableEnvX")


def test_register_env_creator_receives_env_config():
    seen = {}

    def creator(cfg):
        seen.update(cfg)
        return ConfigurableEnv(cfg["size"])

    rl.register_env("my-env", creator)
    env = resolve_env("my-env").make({"size": 7})
    assert env.observation_space.shape == (7,) and seen == {"size": 7}


def test_gymnasium_make_kwargs_from_env_config():
    env = resolve_env("CartPole-v1").make({"max_episode_steps": 11})
    env.reset(seed=0)
    steps = 0
    while True:
        steps += 1
        _, _, term, trunc, _ = env.step(steps % 2)
        if term or trunc:
            break
    assert steps <= 11


def test_observation_spaces_are_flattened_where_needed():
    d = gym.spaces.Dict({"a": gym.spaces.Discrete(3), "b": gym.spaces.Box(0, 1, (2,))})
    assert prepare_observation_space(d).shape == (5,)
    assert prepare_observation_space(gym.spaces.Discrete(4)).shape == (4,)
    t = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Box(0, 1, (2, 2))))
    assert prepare_observation_space(t).shape == (6,)
    img = gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
    assert prepare_observation_space(img) is img
    with pytest.raises(UnsupportedSpaceError, match="Text"):
        prepare_observation_space(gym.spaces.Text(5))


def test_discrete_observations_become_one_hot():
    env = make_env(resolve_env("FrozenLake-v1"))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (16,) and obs.sum() == 1 and obs[0] == 1


def test_action_space_check_names_the_space():
    check_action_space(gym.spaces.Discrete(2), "PPO", ("Discrete", "Box"))
    with pytest.raises(UnsupportedSpaceError, match="MultiBinary"):
        check_action_space(gym.spaces.MultiBinary(3), "PPO", ("Discrete", "Box", "MultiDiscrete"))
    with pytest.raises(UnsupportedSpaceError, match="PPO"):
        check_action_space(gym.spaces.Box(-1, 1, (2,)), "DQN", ("Discrete",),
                           "Use PPO or IMPALA for continuous or multi-discrete actions.")


# ------------------------------------------------------------ a user's env failing


@pytest.mark.parametrize("name,needles", [
    ("tests.toy_envs:RaisingConstructorEnv",
     ["RaisingConstructorEnv(**env_config) raised RuntimeError: simulator licence not found"]),
    ("tests.toy_envs:RaisingResetEnv", ["reset(seed=0) raised ValueError: no scenario loaded"]),
    ("tests.toy_envs:OldApiResetEnv",
     ["reset(seed=0) returned ndarray; a gymnasium env returns (obs, info)"]),
    ("tests.toy_envs:WrongShapeEnv",
     ["reset(seed=0) returned an observation of shape (3,), but its observation_space is"]),
    ("tests.toy_envs:NoStepEnv", ["returned NoStepEnv, which is not a gymnasium env: it has "
                                  "no step() method"]),
])
def test_a_failing_or_foreign_env_is_one_config_error_naming_env_and_call(name, needles):
    from rl.config import ConfigError
    from rl.envs import EnvError, probe_spaces

    with pytest.raises(EnvError) as info:
        probe_spaces(resolve_env(name))
    message = str(info.value)
    assert isinstance(info.value, ConfigError)
    assert message.startswith(f"env {name!r}: ") and len(message.splitlines()) == 1, message
    for needle in needles:
        assert needle in message, message


def test_a_module_whose_import_raises_is_one_error(tmp_path, monkeypatch):
    from rl.envs import EnvError

    (tmp_path / "broken_envs_mod.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(EnvError, match=r"^env 'broken_envs_mod:Env': importing module "
                                       r"'broken_envs_mod' raised RuntimeError: boom at import$"):
        resolve_env("broken_envs_mod:Env")
    with pytest.raises(EnvNameError, match="is it in the current directory or on PYTHONPATH"):
        resolve_env("no_such_envs_mod:Env")


def test_a_registered_creator_that_raises_and_gymnasium_kwargs_are_wrapped():
    from rl.envs import EnvError

    def creator(cfg):
        raise KeyError("size")

    rl.register_env("raising-creator-env", creator)
    with pytest.raises(EnvError, match=r"'raising-creator-env': its creator .*creator\(env_config"
                                       r"\) raised KeyError: 'size'"):
        resolve_env("raising-creator-env").make({})
    with pytest.raises(EnvError, match=r"gymnasium.make\('CartPole-v1', \*\*env_config\) raised "
                                       "TypeError"):
        resolve_env("CartPole-v1").make({"no_such_kwarg": 1})


def test_building_an_algorithm_on_a_foreign_env_fails_before_processes():
    from rl import PPOConfig
    from rl.envs import EnvError

    with pytest.raises(EnvError, match="not a gymnasium env"):
        PPOConfig().environment("tests.toy_envs:NoStepEnv").resources(
            backend="process").build()


def test_a_pettingzoo_style_factory_is_called_with_keywords_and_its_api_checked():
    from rl.envs import EnvError, probe_spaces

    # Called with keywords (**env_config), then read as multi-agent: possible_agents and
    # per-agent space methods; it lacks `agents`, so it is no Parallel env.
    with pytest.raises(EnvError, match="_ParallelEnv is not a PettingZoo Parallel env: it "
                                       "has no 'agents' attribute"):
        probe_spaces(resolve_env("tests.toy_envs:make_parallel_env"), {"unused": 1})
