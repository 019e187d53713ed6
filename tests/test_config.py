"""AlgorithmConfig: builder, validation messages, dict/YAML round trip."""

import dataclasses

import pytest
import yaml

from rl import ConfigError, DQNConfig, IMPALAConfig, PPOConfig
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
    with pytest.raises(ConfigError, match=r"gamma must be <= 1.0, got 1.5"):
        PPOConfig().environment("CartPole-v1").training(gamma=1.5)
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


@pytest.mark.parametrize("config,name,hint", [
    (PPOConfig, "learning_rate", "rl calls it lr"),
    (PPOConfig, "n_epochs", "did you mean num_epochs"),
    (PPOConfig, "num_sgd_iter", "rl calls it num_epochs"),
    (PPOConfig, "sgd_minibatch_size", "rl calls it minibatch_size"),
    (PPOConfig, "batch_size", "rl calls it minibatch_size"),
    (PPOConfig, "ent_coef", "rl calls it entropy_coeff"),
    (PPOConfig, "clip_range", "rl calls it clip_param"),
    (PPOConfig, "vf_coef", "rl calls it vf_loss_coeff"),
    (PPOConfig, "max_grad_norm", "rl calls it grad_clip"),
    (PPOConfig, "n_steps", "; rl calls it rollout_fragment_length (steps per sub-env per "
                           "sample request)"),
    (PPOConfig, "policy_kwargs", "rl calls it model_hiddens and model_activation"),
    (PPOConfig, "num_workers", "rl calls it num_env_runners"),
    (PPOConfig, "total_timesteps", "a stop criterion: --stop-timesteps"),
    (DQNConfig, "batch_size", "rl calls it train_batch_size"),
    (DQNConfig, "buffer_size", "rl calls it replay_buffer_capacity"),
    # A typo of DQN's n_step, or SB3's rollout length: both readings, typo first.
    (DQNConfig, "n_steps", "; did you mean n_step? (or, if n_steps is another library's name, "
                           "rl calls it rollout_fragment_length: steps per sub-env per sample "
                           "request)"),
])
def test_names_from_other_libraries_map_to_rl_names(config, name, hint):
    with pytest.raises(ConfigError) as info:
        config().set(**{name: 1})
    assert hint in str(info.value)


def test_a_typo_fix_and_an_alias_that_agree_give_one_hint():
    with pytest.raises(ConfigError) as info:
        PPOConfig().set(n_epochs=1)
    assert "did you mean num_epochs?" in str(info.value) and "calls it" not in str(info.value)


@pytest.mark.parametrize("name", ["vf_clip", "exploration_fraction", "qwerty"])
def test_no_suggestion_rather_than_a_wrong_one(name):
    with pytest.raises(ConfigError) as info:
        PPOConfig().set(**{name: 1})
    assert "did you mean" not in str(info.value) and "calls it" not in str(info.value)


@pytest.mark.parametrize("text,value", [
    ("100000", 100_000), ("1e5", 100_000), ("100_000", 100_000), ("100k", 100_000),
    ("2.5M", 2_500_000), ("1G", 10**9), (" 64 ", 64),
    # Whole numbers that binary floating point would miss (4.1 * 10**6 = 4099999.999...).
    ("4.1M", 4_100_000), ("8.2M", 8_200_000), ("8.11k", 8_110), ("1e30", 10**30),
])
def test_integer_fields_take_numbers_as_people_type_them(text, value):
    cfg = PPOConfig().set(train_batch_size=text)
    assert cfg.train_batch_size == value and type(cfg.train_batch_size) is int


def test_float_fields_take_scientific_notation_and_bad_text_is_refused():
    assert PPOConfig().set(lr="3e-4").lr == pytest.approx(3e-4)
    with pytest.raises(ConfigError, match="train_batch_size: expected int"):
        PPOConfig().set(train_batch_size="1.5")
    with pytest.raises(ConfigError, match="lr: expected float"):
        PPOConfig().set(lr="fast")
    for text in ("nan", "inf", "-Infinity", "1.0001k", "1e-3"):
        with pytest.raises(ConfigError, match="train_batch_size: expected int"):
            PPOConfig().set(train_batch_size=text)
    for text in ("nan", "inf", "1e999"):
        with pytest.raises(ConfigError, match="lr: expected float"):
            PPOConfig().set(lr=text)
    assert PPOConfig().set(lr="2.5k").lr == 2500.0 and type(PPOConfig().set(lr="1k").lr) is float


def test_yaml_errors_give_line_and_column():
    with pytest.raises(ConfigError, match="at line 4, column 1"):
        PPOConfig.from_yaml("lr: 0.1\ngamma: 0.9\nbad: [1, 2\n")


# ------------------------------------------------- values checked at the call that sets them
@pytest.mark.parametrize("section,settings,message", [
    ("environment", {"normalize_obs": "yes"}, "normalize_obs: expected bool, got 'yes' (str)"),
    ("env_runners", {"num_envs_per_env_runner": 0}, "num_envs_per_env_runner must be >= 1, got 0"),
    ("env_runners", {"rollout_fragment_length": 0},
     "rollout_fragment_length must be 'auto' or an int >= 1, got 0"),
    ("env_runners", {"rollout_fragment_length": "full"},
     "rollout_fragment_length must be 'auto' or an int >= 1, got 'full'"),
    ("training", {"lr": -1e-3}, "lr must be >= 0.0, got -0.001"),
    ("training", {"clip_param": -0.2}, "clip_param must be >= 0.0, got -0.2"),
    ("training", {"model_activation": "swish"},
     "model_activation='swish' is not valid; choose one of: tanh, relu, elu, silu, gelu"),
    ("training", {"model_hiddens": [64, 0]},
     "model_hiddens must be a non-empty list of positive widths, got [64, 0]"),
    ("learners", {"num_learners": -1}, "num_learners must be >= 0, got -1"),
    ("learners", {"device": "gpu"}, "device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    ("resources", {"backend": "threads"},
     "backend='threads' is not valid; choose one of: process, inline, ray"),
    ("evaluation", {"evaluation_duration": 0}, "evaluation_duration must be >= 1, got 0"),
    ("debugging", {"log_level": "loud"},
     "log_level='loud' is not valid; choose one of: debug, info, warning, error"),
    ("reporting", {"metrics_smoothing_episodes": 0},
     "metrics_smoothing_episodes must be >= 1, got 0"),
    ("fault_tolerance", {"sample_timeout_s": -1}, "sample_timeout_s must be >= 0.0, got -1.0"),
    ("set", {"gamma": 1.01}, "gamma must be <= 1.0, got 1.01"),
])
def test_an_invalid_value_fails_at_the_call_that_sets_it(section, settings, message):
    cfg = PPOConfig()
    with pytest.raises(ConfigError) as info:
        getattr(cfg, section)(**settings)
    assert str(info.value) == message
    # The same value by every other way in gives the same message.
    for load in (PPOConfig.from_dict, lambda d: PPOConfig.from_yaml(yaml.safe_dump(d))):
        with pytest.raises(ConfigError) as again:
            load(settings)
        assert str(again.value) == message


def test_a_failed_call_sets_nothing():
    cfg = PPOConfig()
    with pytest.raises(ConfigError, match="gamma must be <= 1.0"):
        cfg.training(lr=0.1, gamma=2.0)
    assert cfg == PPOConfig()


def test_algorithm_fields_are_checked_at_the_call_too():
    with pytest.raises(ConfigError, match=r"^tau must be a float in \(0, 1\] \(0 would freeze"):
        DQNConfig().training(tau=0.0)
    with pytest.raises(ConfigError, match="^normalize_obs must be false for DQN"):
        DQNConfig().environment(normalize_obs=True)
    with pytest.raises(ConfigError, match="^rollout_fragment_length must be an int for IMPALA"):
        IMPALAConfig().env_runners(rollout_fragment_length="auto")
    with pytest.raises(ConfigError, match="^learner_queue_size must be >= 1, got 0"):
        IMPALAConfig.from_yaml("learner_queue_size: 0\n")


@pytest.mark.parametrize("order", [
    ({"train_batch_size": 256}, {"minibatch_size": 512}, {"train_batch_size": 4096}),
    ({"minibatch_size": 4096}, {"train_batch_size": 8192}),
    ({"train_batch_size": 8192}, {"minibatch_size": 4096}),
])
def test_a_chain_valid_at_its_end_is_not_rejected_midway(order):
    # minibatch_size <= train_batch_size is a rule between fields: validate() checks it,
    # so an intermediate state of a chain may break it.
    cfg = PPOConfig().environment("CartPole-v1")
    for settings in order:
        cfg.training(**settings)
    cfg.validate()
    assert cfg.minibatch_size <= cfg.train_batch_size


def test_rules_between_fields_wait_for_validate():
    cfg = PPOConfig().environment("CartPole-v1").training(train_batch_size=256, minibatch_size=512)
    with pytest.raises(ConfigError, match=r"minibatch_size \(512\) must be <= train_batch_size "
                                          r"\(256\)"):
        cfg.validate()
    # DQN's batch vs its buffer, IMPALA's batch of whole fragments: likewise.
    DQNConfig().environment("CartPole-v1").training(train_batch_size=512).training(
        replay_buffer_capacity=100).training(replay_buffer_capacity=1000).validate()
    IMPALAConfig().environment("CartPole-v1").training(train_batch_size=160).env_runners(
        rollout_fragment_length=20).validate()


def test_a_direct_assignment_is_checked_by_validate_with_the_same_message():
    cfg = PPOConfig().environment("CartPole-v1")
    cfg.lr = -1e-3
    with pytest.raises(ConfigError) as info:
        cfg.validate()
    assert str(info.value) == "lr must be >= 0.0, got -0.001"


def test_valid_values_describe_the_metadata_the_setter_checks():
    assert PPOConfig.valid_values("gamma") == "float in [0.0, 1.0]"
    assert PPOConfig.valid_values("lr") == "float >= 0.0"
    assert PPOConfig.valid_values("clip_param") == "float >= 0.0"
    assert PPOConfig.valid_values("grad_clip") == "float >= 0.0, or null"
    assert PPOConfig.valid_values("model_activation") == "one of: tanh, relu, elu, silu, gelu"
    assert PPOConfig.valid_values("normalize_obs") == "true or false"
    assert PPOConfig.valid_values("env") == "str or null"
    assert DQNConfig.valid_values("tau") == ("a float in (0, 1] (0 would freeze the target "
                                             "network), or null")


@pytest.mark.parametrize("config", [PPOConfig, DQNConfig, IMPALAConfig])
def test_every_bound_and_choice_in_the_help_is_the_one_enforced(config):
    for f in dataclasses.fields(config):
        help_text, meta = config.valid_values(f.name), f.metadata
        if meta["choices"]:
            for choice in meta["choices"]:
                assert str(choice) in help_text
                config().set(**{f.name: choice})
            with pytest.raises(ConfigError, match=f"^{f.name}='nope' is not valid; choose"):
                config().set(**{f.name: "nope"})
        for bound, step in (("min", -1), ("max", 1)):
            if meta[bound] is not None:
                assert str(meta[bound]) in help_text
                config().set(**{f.name: meta[bound]})
                with pytest.raises(ConfigError, match=f"^{f.name} must be [<>]= {meta[bound]}"):
                    config().set(**{f.name: meta[bound] + step})
        if meta["check"] is not None:
            assert help_text.startswith(meta["check"].text)
