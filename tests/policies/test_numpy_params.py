"""The numpy models from (spec, flat vector) match the torch modules they mirror."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from gymnasium import spaces

from rl.policies import ActorCritic, ModelSpec, QNetwork, SquashedGaussianActor, flat_params
from rl.policies.numpy_params import _DEFAULTS, numpy_model, param_layout

VEC = spaces.Box(-2, 2, (5,), np.float32)
MASKED = spaces.Dict({"obs": spaces.Box(-2, 2, (3,), np.float32),
                      "action_mask": spaces.MultiBinary(4)})
MASKED_MD = spaces.Dict({"obs": spaces.Box(-2, 2, (3,), np.float32),
                         "action_mask": spaces.MultiBinary(5)})

CASES = [
    ("actor_critic", VEC, spaces.Discrete(4), {}),
    ("actor_critic", VEC, spaces.Discrete(4), {"hiddens": [7], "activation": "relu"}),
    ("actor_critic", VEC, spaces.Discrete(4), {"hiddens": [], "vf_share_layers": True}),
    ("actor_critic", VEC, spaces.Discrete(4), {"hiddens": [6, 5, 4], "activation": "elu",
                                               "vf_share_layers": True}),
    ("actor_critic", VEC, spaces.MultiDiscrete([2, 3]), {"hiddens": [8], "activation": "silu"}),
    ("actor_critic", VEC, spaces.Box(-1, 1, (3,)), {"hiddens": [8, 8]}),
    ("actor_critic", VEC, spaces.Box(-1, 1, (2,)), {"hiddens": [8], "vf_share_layers": True}),
    ("actor_critic", MASKED, spaces.Discrete(4), {"hiddens": [8]}),
    ("actor_critic", MASKED_MD, spaces.MultiDiscrete([2, 3]), {"hiddens": [8, 6]}),
    ("q", VEC, spaces.Discrete(3), {}),
    ("q", VEC, spaces.Discrete(3), {"hiddens": [9], "dueling": False, "activation": "tanh"}),
    ("q", MASKED, spaces.Discrete(4), {"hiddens": [8]}),
    ("squashed_gaussian", VEC, spaces.Box(-1, 1, (2,)), {}),
    ("squashed_gaussian", VEC, spaces.Box(-3, 3, (3,)), {"hiddens": [4, 4], "activation": "elu"}),
]


def _spec(kind, obs_space, action_space, kwargs) -> ModelSpec:
    if isinstance(obs_space, spaces.Dict):
        flat = spaces.flatten_space(obs_space)
        flat = spaces.Box(flat.low, flat.high, flat.shape, np.float32)
        return ModelSpec.create(kind, flat, action_space, None, kwargs, env_obs_space=obs_space)
    return ModelSpec.create(kind, obs_space, action_space, None, kwargs)


@pytest.mark.parametrize("kind, obs_space, action_space, kwargs", CASES)
def test_layout_and_forward_match_the_torch_module(kind, obs_space, action_space, kwargs):
    torch.manual_seed(0)
    spec = _spec(kind, obs_space, action_space, kwargs)
    module = spec.build()
    state = module.state_dict()
    assert param_layout(spec) == [(k, tuple(v.shape)) for k, v in state.items()]
    # Non-trivial weights everywhere (the heads start near zero, log_std at zero).
    with torch.no_grad():
        for t in module.state_dict().values():
            t.copy_(torch.randn_like(t) * 0.5)
    forward = numpy_model(spec, flat_params(module))
    space = obs_space
    space.seed(1)
    rows = [space.sample() for _ in range(6)]
    if isinstance(space, spaces.Dict):
        rows = [spaces.flatten(space, r) for r in rows]
        rows[0][-4:] = 0  # a row with nothing allowed stays unmasked
    obs = np.stack(rows).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(obs))
    got = forward(obs)
    if kind == "actor_critic":
        np.testing.assert_allclose(got[0], expected[0].numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got[1], expected[1].numpy(), rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_unmirrorable_models_have_no_layout():
    image = spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert param_layout(ModelSpec.create("actor_critic", image, spaces.Discrete(2), None,
                                         {})) is None
    assert param_layout(ModelSpec.create("actor_critic", VEC, spaces.Discrete(2), None,
                                         {"activation": "gelu"})) is None
    assert param_layout(ModelSpec.create("actor_critic", VEC, spaces.Discrete(2),
                                         "tests.custom_models:TorchActorCritic", {})) is None


def test_a_vector_of_the_wrong_length_is_refused():
    spec = _spec("q", VEC, spaces.Discrete(3), {"hiddens": [4]})
    with pytest.raises(ValueError, match="weight vector has 3 values"):
        numpy_model(spec, np.zeros(3, np.float32))


@pytest.mark.parametrize("kind, cls", [("actor_critic", ActorCritic), ("q", QNetwork),
                                       ("squashed_gaussian", SquashedGaussianActor)])
def test_defaults_are_the_classes_defaults(kind, cls):
    params = inspect.signature(cls).parameters
    for name, value in _DEFAULTS[kind].items():
        assert params[name].default == value, (cls.__name__, name)
