"""The numpy mirror of the built-in LSTM policy equals the torch module step by step:
distribution inputs, values and the carried (h, c), with and without the previous
action and reward, for Discrete, MultiDiscrete and Box actions; other models are not
mirrored."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from rl.policies.numpy_lstm import compile_lstm_actor_critic
from rl.policies.recurrent import LSTMActorCritic

ACTIONS = {
    "discrete": spaces.Discrete(3),
    "multidiscrete": spaces.MultiDiscrete([2, 4]),
    "box": spaces.Box(-1.0, 1.0, (2,), np.float32),
}


def _module(action_space, prev_action, prev_reward, activation="tanh"):
    from rl.policies.dist_spec import DistributionSpec

    torch.manual_seed(0)
    obs_space = spaces.Box(-5.0, 5.0, (3,), np.float32)
    module = LSTMActorCritic(obs_space, action_space, DistributionSpec(action_space).input_dim,
                             hiddens=[8], activation=activation, lstm_cell_size=6,
                             use_prev_action=prev_action, use_prev_reward=prev_reward)
    with torch.no_grad():  # away from the init (zero biases, tiny policy head)
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return module.eval()


def _actions(space, rng, n):
    if isinstance(space, spaces.Discrete):
        return rng.integers(space.n, size=n).astype(np.float32)
    if isinstance(space, spaces.MultiDiscrete):
        return np.stack([rng.integers(k, size=n) for k in space.nvec], 1).astype(np.float32)
    return rng.uniform(-1, 1, size=(n, *space.shape)).astype(np.float32)


@pytest.mark.parametrize("kind", sorted(ACTIONS))
@pytest.mark.parametrize("prev_action,prev_reward", [(False, False), (True, False),
                                                      (False, True), (True, True)])
def test_the_mirror_steps_like_the_torch_module(kind, prev_action, prev_reward):
    space = ACTIONS[kind]
    module = _module(space, prev_action, prev_reward)
    mirror = compile_lstm_actor_critic(module)
    assert mirror is not None
    rng = np.random.default_rng(1)
    n = 5
    h_t, c_t = module.initial_state(n)
    h_n, c_n = h_t.numpy().copy(), c_t.numpy().copy()
    for _ in range(6):
        obs = rng.normal(size=(n, 3)).astype(np.float32)
        prev_a, prev_r = _actions(space, rng, n), rng.normal(size=n).astype(np.float32)
        kwargs = {}
        if prev_action:
            kwargs["prev_actions"] = torch.from_numpy(prev_a.reshape(n, 1, -1)
                                                      if prev_a.ndim > 1 else prev_a[:, None])
        if prev_reward:
            kwargs["prev_rewards"] = torch.from_numpy(prev_r[:, None])
        with torch.no_grad():
            d_t, v_t, (h_t, c_t) = module(torch.from_numpy(obs)[:, None], (h_t, c_t), **kwargs)
        d_n, v_n, h_n, c_n = mirror(obs, h_n, c_n, prev_a if prev_action else None,
                                    prev_r if prev_reward else None)
        np.testing.assert_allclose(d_n, d_t[:, 0].numpy(), atol=1e-5)
        np.testing.assert_allclose(v_n, v_t[:, 0].numpy(), atol=1e-5)
        np.testing.assert_allclose(h_n, h_t.numpy(), atol=1e-5)
        np.testing.assert_allclose(c_n, c_t.numpy(), atol=1e-5)


def test_only_the_built_in_lstm_with_an_mlp_encoder_is_mirrored():
    space = ACTIONS["discrete"]

    class Sub(LSTMActorCritic):
        pass

    obs_space = spaces.Box(-5.0, 5.0, (3,), np.float32)
    assert compile_lstm_actor_critic(Sub(obs_space, space, 3, hiddens=[8])) is None
    assert compile_lstm_actor_critic(_module(space, False, False, activation="gelu")) is None
    image = spaces.Box(0, 255, (42, 42, 1), np.uint8)
    assert compile_lstm_actor_critic(LSTMActorCritic(image, space, 3, lstm_cell_size=4)) is None
    assert compile_lstm_actor_critic(torch.nn.Linear(3, 3)) is None
