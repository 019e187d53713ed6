"""The numpy mirror of MLP policies matches the torch modules it copies."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from rl.policies import ActorCritic, ModelSpec, QNetwork
from rl.policies.numpy_mlp import compile_actor_critic, compile_q_network
from rl.rollout.policy import ActorCriticPolicy


@pytest.mark.parametrize("activation", ["tanh", "relu", "elu", "silu"])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("action_space", [gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2,)),
                                          gym.spaces.MultiDiscrete([2, 3])])
def test_actor_critic_mirror_matches_torch(activation, shared, action_space):
    torch.manual_seed(0)
    m = ActorCritic(gym.spaces.Box(-1, 1, (5,)), action_space,
                    ModelSpec.create("actor_critic", gym.spaces.Box(-1, 1, (5,)), action_space,
                                     None, {}).num_outputs,
                    hiddens=[32, 16], activation=activation, vf_share_layers=shared)
    if isinstance(action_space, gym.spaces.Box):
        with torch.no_grad():
            m.log_std.fill_(-0.3)
    fast = compile_actor_critic(m)
    obs = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    d_np, v_np = fast(obs)
    with torch.no_grad():
        d_t, v_t = m(torch.from_numpy(obs))
    np.testing.assert_allclose(d_np, d_t.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v_np, v_t.numpy(), rtol=1e-5, atol=1e-6)


def test_q_network_mirror_matches_torch():
    for dueling in (True, False):
        m = QNetwork(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(3), 3,
                     hiddens=[16, 16], activation="relu", dueling=dueling)
        obs = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
        with torch.no_grad():
            expected = m(torch.from_numpy(obs)).numpy()
        np.testing.assert_allclose(compile_q_network(m)(obs), expected, rtol=1e-5, atol=1e-6)


def test_unsupported_networks_fall_back_to_torch():
    img = gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
    assert compile_actor_critic(ActorCritic(img, gym.spaces.Discrete(2), 2)) is None
    assert compile_actor_critic(ActorCritic(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2),
                                            2, activation="gelu")) is None


def test_subclasses_of_the_builtin_models_are_never_mirrored():
    class Doubled(ActorCritic):
        def forward(self, obs):
            d, v = super().forward(obs)
            return 2 * d, v

    class Negated(QNetwork):
        def forward(self, obs):
            return -super().forward(obs)

    box = gym.spaces.Box(-1, 1, (3,))
    assert compile_actor_critic(Doubled(box, gym.spaces.Discrete(2), 2)) is None
    assert compile_q_network(Negated(box, gym.spaces.Discrete(2), 2)) is None


def test_policy_mirror_follows_weight_loads():
    policy = ActorCriticPolicy(ModelSpec.create("actor_critic", gym.spaces.Box(-1, 1, (4,)),
                                                gym.spaces.Discrete(2), None, {}))
    assert policy._fast is not None
    other = ActorCritic(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), 2)
    from rl.policies import flat_params

    policy.load_weights(flat_params(other))
    obs = torch.randn(3, 4)
    with torch.no_grad():
        np.testing.assert_allclose(policy.value(obs), other(obs)[1].numpy(), rtol=1e-5,
                                   atol=1e-6)
