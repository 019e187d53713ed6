"""The model contract: resolving, registering and checking a model before any process."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import rl
from rl.policies import ActorCritic, ModelError, ModelSpec, QNetwork
from rl.policies.model_spec import num_outputs, registered_models, resolve_model_class
from rl.rollout.policy import ActorCriticPolicy, QPolicy
from tests.custom_models import TorchActorCritic, TorchQNet

BOX4 = gym.spaces.Box(-1, 1, (4,), np.float32)


@pytest.mark.parametrize(("space", "expected"), [
    (gym.spaces.Discrete(5), 5),
    (gym.spaces.MultiDiscrete([2, 3, 4]), 9),
    (gym.spaces.Box(-1, 1, (3,)), 6),       # means then log-stds
    (gym.spaces.Box(-1, 1, (2, 2)), 8),
])
def test_num_outputs_per_action_space(space, expected):
    assert num_outputs("actor_critic", space) == expected
    spec = ModelSpec.create("actor_critic", BOX4, space, None, {})
    assert spec.num_outputs == expected
    assert spec.check() is None  # a built-in MLP is checked in numpy
    dist_inputs, values = spec.build()(torch.zeros(3, 4))
    assert dist_inputs.shape == (3, expected) and values.shape == (3,)


def test_q_models_have_one_output_per_action():
    assert num_outputs("q", gym.spaces.Discrete(7)) == 7
    spec = ModelSpec.create("q", BOX4, gym.spaces.Discrete(7), None, {})
    spec.check()
    assert spec.build()(torch.zeros(2, 4)).shape == (2, 7)


def test_builtin_defaults_are_the_builtin_classes():
    assert ModelSpec.create("actor_critic", BOX4, gym.spaces.Discrete(2), None, {}).model_cls \
        is ActorCritic
    assert ModelSpec.create("q", BOX4, gym.spaces.Discrete(2), None, {}).model_cls is QNetwork


def test_import_paths_and_registered_names_resolve():
    assert resolve_model_class("tests.custom_models:TorchActorCritic") is TorchActorCritic
    rl.register_model("my-q", TorchQNet)
    assert "my-q" in registered_models()
    assert resolve_model_class("my-q") is TorchQNet


@pytest.mark.parametrize(("name", "needle"), [
    ("nosuchmodule_xyz:Net", "cannot import 'nosuchmodule_xyz' (ModuleNotFoundError"),
    ("tests.custom_models:Missing", "module 'tests.custom_models' has no 'Missing'"),
    ("tests.custom_models:NOT_A_MODEL", "is 42, not a torch.nn.Module subclass"),
    ("unregistered-name", "neither 'package.module:Class' nor a name given to "
                          "rl.register_model()"),
])
def test_unresolvable_classes_are_model_errors(name, needle):
    with pytest.raises(ModelError) as info:
        ModelSpec.create("actor_critic", BOX4, gym.spaces.Discrete(2), name, {})
    assert needle in str(info.value) and name in str(info.value)
    assert isinstance(info.value, rl.ConfigError)


def test_register_model_refuses_what_is_not_a_model():
    with pytest.raises(ModelError, match="torch.nn.Module subclass"):
        rl.register_model("x", object)
    with pytest.raises(ModelError, match="without ':'"):
        rl.register_model("a:b", TorchQNet)


@pytest.mark.parametrize(("cls", "kind", "needle"), [
    ("BrokenValueShape", "actor_critic",
     "must return (dist_inputs Tensor[2, 2] float, values Tensor[2] float); got "
     "(Tensor[2, 2] float32, Tensor[2, 1] float32)"),
    ("BrokenOutputWidth", "actor_critic", "got (Tensor[2, 3] float32, Tensor[2] float32)"),
    ("BrokenSingleOutput", "actor_critic", "; got Tensor[2, 2] float32"),
    ("BrokenForward", "actor_critic",
     "forward(obs Tensor[2, 4] float32) raised RuntimeError: mat1 and mat2"),
    ("NoParameters", "actor_critic", "has no trainable parameters"),
    ("TorchActorCritic", "q", "of a Q-model for Discrete(2) must return q_values Tensor[2, 2] "
                              "float; got (Tensor[2, 2] float32, Tensor[2] float32)"),
])
def test_check_names_the_class_what_was_expected_and_what_came_back(cls, kind, needle):
    spec = ModelSpec.create(kind, BOX4, gym.spaces.Discrete(2), f"tests.custom_models:{cls}", {})
    with pytest.raises(ModelError) as info:
        spec.check()
    message = str(info.value)
    assert message.startswith(f"model_class 'tests.custom_models:{cls}'"), message
    assert needle in message, message
    assert len(message.splitlines()) == 1


def test_constructor_errors_name_the_keyword_arguments():
    spec = ModelSpec.create("actor_critic", BOX4, gym.spaces.Discrete(2),
                            "tests.custom_models:TorchActorCritic", {"widht": 8})
    with pytest.raises(ModelError, match=r"TorchActorCritic\(obs_space, action_space, "
                                         r"num_outputs=2, widht=8\) raised TypeError"):
        spec.check()


def test_check_leaves_the_global_torch_stream_alone():
    spec = ModelSpec.create("actor_critic", BOX4, gym.spaces.Discrete(2), None, {})
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    spec.check()
    torch.testing.assert_close(torch.rand(3), expected)


def test_image_models_are_checked_on_uint8_pixels():
    img = gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
    logits, values = ModelSpec.create("actor_critic", img, gym.spaces.Discrete(6), None,
                                      {"cnn_hidden": 64}).check()(
        torch.zeros(1, 84, 84, 4, dtype=torch.uint8))
    assert logits.shape == (1, 6) and values.shape == (1,)


def test_workers_run_custom_models_in_torch_and_builtin_mlps_in_numpy():
    custom = ActorCriticPolicy(ModelSpec.create("actor_critic", BOX4, gym.spaces.Discrete(2),
                                                "tests.custom_models:TorchActorCritic", {}))
    builtin = ActorCriticPolicy(ModelSpec.create("actor_critic", BOX4, gym.spaces.Discrete(2),
                                                 None, {}))
    q = QPolicy(ModelSpec.create("q", BOX4, gym.spaces.Discrete(2),
                                 "tests.custom_models:TorchQNet", {}))
    assert custom._fast is None and q._fast is None and builtin._fast is not None
    assert isinstance(custom.module, TorchActorCritic)
    obs = torch.randn(5, 4)
    with torch.no_grad():
        expected_values = custom.module(obs)[1].numpy()
    np.testing.assert_allclose(custom.value(obs), expected_values, rtol=1e-6)
    assert custom.greedy(obs).shape == (5,)
