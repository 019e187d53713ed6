"""AlgorithmConfig: builder, validation messages, dict/YAML round trip."""

import pytest

from rl import ConfigError, PPOConfig
from rl.config import parse_value


def test_builder_sets_typed_fields():
    cfg = (PPOConfig().environment("CartPole-v1").env_runners(num_env_runners=3)
           .training(lr=1e-4, model_hiddens=[32, 32]).debugging(seed=7))
    assert cfg.env == "CartPole-v1" and cfg.num_env_runners == 3 and cfg.lr == 1e-4
    assert cfg.model_hiddens == [32, 32] and cfg.seed == 7
    assert isinstance(PPOConfig().training(lr=1).lr, float)


def test_unknown_key_suggests_closest():
    with pytest.raises(ConfigError, match="did you mean num_env_runners"):
        PPOConfig().env_runners(num_env_runner=2)
    with pytest.raises(ConfigError, match="not a .training"):
        PPOConfig().training(num_env_runners=2)


def test_bad_values_state_the_constraint():
    with pytest.raises(ConfigError, match="lr: expected float"):
        PPOConfig().training(lr="fast")
    with pytest.raises(ConfigError, match="choose one of: process, inline, ray"):
        PPOConfig().resources(backend="threads")
    cfg = PPOConfig().environment("CartPole-v1").training(gamma=1.5)
    with pytest.raises(ConfigError, match=r"gamma must be <= 1.0, got 1.5"):
        cfg.validate()
    cfg = PPOConfig().environment("CartPole-v1").training(minibatch_size=4096)
    with pytest.raises(ConfigError, match=r"minibatch_size \(4096\) must be <= train_batch_size"):
        cfg.validate()
    cfg = PPOConfig().environment("CartPole-v1").env_runners(rollout_fragment_length=10)
    with pytest.raises(ConfigError, match="2 x 8 x 10 = 160"):
        cfg.validate()
    with pytest.raises(ConfigError, match="no env set"):
        PPOConfig().validate()


def test_dict_and_yaml_round_trip_exactly():
    cfg = PPOConfig().environment("Pendulum-v1", env_config={"g": 9.81}).training(
        vf_clip_param=10.0, target_kl=None, model_hiddens=[128, 64])
    d = cfg.to_dict()
    assert PPOConfig.from_dict(d) == cfg
    assert PPOConfig.from_yaml(cfg.to_yaml()) == cfg
    assert PPOConfig.from_yaml(cfg.to_yaml()).to_dict() == d
    with pytest.raises(ConfigError, match="unknown ppo config key 'lrr'"):
        PPOConfig.from_dict({"lrr": 1.0})


def test_parse_value_for_set_flags():
    assert parse_value("3") == 3 and parse_value("1e-3") == 1e-3
    assert parse_value("64,64") == [64, 64] and parse_value("[32, 32]") == [32, 32]
    assert parse_value("null") is None and parse_value("true") is True


def test_fragment_length_auto():
    cfg = PPOConfig().env_runners(num_env_runners=2, num_envs_per_env_runner=8).training(
        train_batch_size=1024)
    assert cfg.fragment_length() == 64
    cfg.env_runners(num_env_runners=0)
    assert cfg.fragment_length() == 128
