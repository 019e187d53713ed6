"""flatten_observations: env-format observations become exactly what the wrapper feeds
the policy during training, one at a time or batched, and misfits are clear errors."""

import gymnasium as gym
import numpy as np
import pytest

from rl.envs import flatten_observations, make_env, resolve_env
from tests.toy_envs import OBS_SPACES, SpaceEnv


def _stack(space, items):
    """A columnar batch (leading batch dim on every leaf) of single observations."""
    if isinstance(space, gym.spaces.Dict):
        return {k: _stack(sub, [x[k] for x in items]) for k, sub in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_stack(sub, [x[j] for x in items]) for j, sub in enumerate(space.spaces))
    return np.stack([np.asarray(x) for x in items])


@pytest.mark.parametrize("name", OBS_SPACES)
def test_same_flat_vectors_as_the_training_wrapper(name):
    raw = SpaceEnv(obs=name)
    wrapped = make_env(resolve_env("tests.toy_envs:SpaceEnv"), {"obs": name})
    space = raw.observation_space
    raw_obs = [raw.reset(seed=3)[0]] + [raw.step(0)[0] for _ in range(4)]
    flat_obs = [wrapped.reset(seed=3)[0]] + [wrapped.step(0)[0] for _ in range(4)]
    expected = np.stack(flat_obs)
    assert expected.shape[1:] == wrapped.observation_space.shape

    one, single = flatten_observations(space, raw_obs[0])
    assert single
    np.testing.assert_array_equal(one, expected[:1])
    assert one.dtype == expected.dtype

    columnar, single = flatten_observations(space, _stack(space, raw_obs))
    assert not single
    np.testing.assert_array_equal(columnar, expected)
    if isinstance(space, gym.spaces.Dict | gym.spaces.Tuple):
        listed, single = flatten_observations(space, raw_obs)
        assert not single
        np.testing.assert_array_equal(listed, expected)


DICT = gym.spaces.Dict({"a": gym.spaces.Discrete(3), "b": gym.spaces.Box(0, 1, (2,))})


@pytest.mark.parametrize("space,obs,match", [
    (gym.spaces.Box(-1, 1, (3,)), np.zeros(4), r"shape \(4,\) does not fit Box.*\(3,\).*\(B, 3\)"),
    (gym.spaces.Box(-1, 1, (3,)), np.zeros((2, 2, 3)), r"\(2, 2, 3\) does not fit Box"),
    (gym.spaces.Discrete(3), 3, r"not in Discrete\(3\)"),
    (gym.spaces.Discrete(3), np.zeros((2, 1), np.int64), r"does not fit Discrete\(3\).*\(B,\)"),
    (gym.spaces.MultiDiscrete([2, 3]), [1, 3], r"not in MultiDiscrete"),
    (DICT, {"a": 1}, r"\['a'\] does not fit Dict.*keys \['a', 'b'\]"),
    (DICT, np.zeros(5), r"ndarray does not fit Dict"),
    (DICT, {"a": np.array([0, 1]), "b": np.zeros((3, 2))}, r"disagree on the batch size"),
    (DICT, [{"a": np.array([0, 1]), "b": np.zeros((2, 2))}], r"single observations"),
    (gym.spaces.Tuple((gym.spaces.Discrete(2),)), (0, 1), r"of 2 does not fit Tuple"),
])
def test_misfits_name_the_expected_space(space, obs, match):
    with pytest.raises(ValueError, match=match):
        flatten_observations(space, obs)


def test_spaces_the_policy_takes_directly_pass_through():
    img = gym.spaces.Box(0, 255, (36, 36, 3), np.uint8)
    batch = np.zeros((4, 36, 36, 3), np.uint8)
    out, single = flatten_observations(img, batch)
    assert out is batch and not single
    out, single = flatten_observations(img, batch[0])
    assert out.shape == (1, 36, 36, 3) and single
