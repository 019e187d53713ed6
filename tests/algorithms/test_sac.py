"""SAC's math against references: the squashed-Gaussian log-prob (float64 formula), the
soft Q target and the critic, actor and alpha losses by hand, the learner's updates."""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rl import SACConfig
from rl.algorithms.sac.learner import TD_ERRORS, SACLearner
from rl.algorithms.sac.loss import actor_loss, alpha_loss, critic_loss, soft_q_targets
from rl.data import SampleBatch
from rl.data import columns as C
from rl.policies import DistributionSpec, ModelSpec, SquashedGaussian
from rl.policies.distributions import squashed_log_prob
from rl.policies.model_spec import CRITIC, SQUASHED_GAUSSIAN


def reference_log_prob(u: np.ndarray, mean: np.ndarray, log_std: np.ndarray) -> np.ndarray:
    """log N(u; mean, std) - sum log(1 - tanh(u)^2), naively in float64."""
    std = np.exp(log_std)
    gauss = (-0.5 * ((u - mean) / std) ** 2 - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)
    return gauss - np.log(1.0 - np.tanh(u) ** 2).sum(-1)


def test_squashed_log_prob_matches_the_float64_formula_also_near_the_bounds():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(6, 3))
    log_std = rng.uniform(-2, 1, size=(6, 3))
    # Pre-tanh values from the middle to where tanh(u) is within 1e-7 of +-1.
    u = np.array([[0.0, 0.5, -1.0], [2.0, -3.0, 4.0], [5.0, -6.0, 7.0],
                  [-8.0, 8.0, 0.1], [7.5, -7.5, 3.3], [-0.01, 1e-4, -5.5]])
    expected = reference_log_prob(u, mean, log_std)
    got = squashed_log_prob(torch.tensor(u, dtype=torch.float32),
                            torch.tensor(mean, dtype=torch.float32),
                            torch.tensor(log_std, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    # Where float32 tanh rounds to 1, the naive float32 formula is infinite; this is not.
    far = squashed_log_prob(torch.tensor([[12.0]]), torch.zeros(1, 1), torch.zeros(1, 1))
    assert torch.isfinite(far).all()
    naive = torch.log(1 - torch.tanh(torch.tensor(12.0)) ** 2)
    assert torch.isinf(naive)


def test_squashed_gaussian_samples_stay_inside_and_rescale_to_the_bounds():
    space = gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 10.0], np.float32))
    spec = DistributionSpec(space, squashed=True)
    assert spec.kind == "squashed_gaussian" and spec.input_dim == 4 and spec.is_continuous
    inputs = torch.tensor([[0.0, 0.0, 0.0, 0.0], [30.0, -30.0, 5.0, 5.0]])
    dist = spec(inputs)
    assert isinstance(dist, SquashedGaussian)
    assert (dist.log_std <= 2.0).all()  # clamped
    actions = dist.sample(torch.Generator().manual_seed(0))
    assert (actions.abs() <= 1).all()
    np.testing.assert_allclose(dist.deterministic()[0].numpy(), [0.0, 0.0])
    env = spec.env_actions(np.array([[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0]], np.float32))
    np.testing.assert_allclose(env, [[-2.0, 0.0], [0.0, 5.0], [2.0, 10.0]])
    # rsample's log-prob is the log-prob of its action (inverted through atanh).
    a, logp = spec(inputs[:1]).rsample_with_log_prob(torch.Generator().manual_seed(1))
    torch.testing.assert_close(spec(inputs[:1]).log_prob(a), logp, rtol=1e-4, atol=1e-4)


def test_the_squashed_spec_needs_a_box():
    with pytest.raises(ValueError, match="Box"):
        DistributionSpec(gym.spaces.Discrete(3), squashed=True)


def test_soft_q_target_by_hand():
    y = soft_q_targets(rewards=torch.tensor([1.0, 2.0, -1.0]),
                       discounts=torch.tensor([0.99, 0.9801, 0.99]),
                       terminateds=torch.tensor([False, False, True]),
                       next_q1=torch.tensor([10.0, 5.0, 3.0]),
                       next_q2=torch.tensor([8.0, 6.0, 1.0]),
                       next_log_prob=torch.tensor([-1.0, 0.5, 2.0]), alpha=0.2)
    expected = [1.0 + 0.99 * (8.0 + 0.2), 2.0 + 0.9801 * (5.0 - 0.1), -1.0]
    torch.testing.assert_close(y, torch.tensor(expected))


def test_critic_actor_and_alpha_losses_by_hand():
    q1, q2 = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.0])
    y, w = torch.tensor([2.0, 1.0]), torch.tensor([1.0, 0.5])
    loss, td = critic_loss(q1, q2, y, w)
    # rows: 0.5 * ((1-2)^2 + (3-2)^2) = 1.0 and 0.5 * 0.5 * ((2-1)^2 + (0-1)^2) = 0.5
    torch.testing.assert_close(loss, torch.tensor(0.75))
    torch.testing.assert_close(td, torch.tensor([0.0, 0.0]))
    logp = torch.tensor([-1.0, 0.5])
    # mean(0.1 * logp - min(q1, q2)) = mean(-0.1 - 1, 0.05 - 0)
    torch.testing.assert_close(actor_loss(logp, q1, q2, 0.1), torch.tensor(-0.525))
    log_alpha = torch.tensor(math.log(0.5), requires_grad=True)
    a_loss = alpha_loss(log_alpha, logp, target_entropy=-1.0)
    torch.testing.assert_close(a_loss, -(log_alpha * torch.tensor(-1.25)).detach())
    a_loss.backward()
    # Entropy -mean(logp) = 0.25 is above the target -1: the gradient lowers alpha.
    assert log_alpha.grad.item() == pytest.approx(1.25)


def _learner(**overrides) -> SACLearner:
    space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    obs_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    cfg = SACConfig().set(**{"model_hiddens": [16], "seed": 0, **overrides})
    kwargs = {"hiddens": [16], "activation": "relu"}
    actor = ModelSpec.create(SQUASHED_GAUSSIAN, obs_space, space, None, kwargs)
    critic = ModelSpec.create(CRITIC, obs_space, space, None, kwargs)
    return SACLearner(actor, cfg, "cpu", critic=critic)


def _batch(n: int = 32) -> SampleBatch:
    rng = np.random.default_rng(0)
    return SampleBatch({
        C.OBS: rng.uniform(-1, 1, (n, 3)).astype(np.float32),
        C.ACTIONS: rng.uniform(-1, 1, (n, 1)).astype(np.float32),
        C.REWARDS: rng.normal(size=n).astype(np.float32),
        C.NEXT_OBS: rng.uniform(-1, 1, (n, 3)).astype(np.float32),
        C.TERMINATEDS: rng.uniform(size=n) < 0.1,
        C.DISCOUNTS: np.full(n, 0.99, np.float32),
        C.WEIGHTS: np.ones(n, np.float32),
    })


def test_learner_update_moves_every_part_and_the_targets_by_tau():
    learner = _learner(tau=0.1, initial_alpha=0.5, target_entropy=-3.0)
    assert learner.target_entropy == -3.0
    actor0 = learner.get_weights()
    critic0 = learner.critic_weights()
    target0 = [p.detach().clone() for p in learner.target.parameters()]
    out = learner.update(_batch())
    assert out["alpha"] == pytest.approx(0.5)  # the alpha the losses used
    for key in ("critic_loss", "actor_loss", "alpha_loss", "q_mean", "entropy"):
        assert np.isfinite(out[key]), key
    assert out[TD_ERRORS].shape == (32,)
    assert not np.array_equal(learner.get_weights(), actor0)
    assert not np.array_equal(learner.critic_weights(), critic0)
    # The entropy is far above -3, so alpha went down.
    assert learner.log_alpha.exp().item() < 0.5
    for t0, t, c in zip(target0, learner.target.parameters(), learner.critic_net.parameters()):
        torch.testing.assert_close(t, 0.9 * t0 + 0.1 * c)
    # The workers' weights are the actor's alone.
    assert learner.get_weights().size == sum(p.numel() for p in learner.actor.parameters())


def test_auto_target_entropy_is_minus_the_action_dim():
    assert _learner().target_entropy == -1.0


def test_learner_state_round_trip_holds_all_three_optimizers():
    a = _learner()
    a.update(_batch())
    b = _learner(seed=5)
    b.load_state(copy.deepcopy(a.state()))  # as a checkpoint would: no shared tensors
    np.testing.assert_array_equal(b.get_weights(), a.get_weights())
    np.testing.assert_array_equal(b.critic_weights(), a.critic_weights())
    assert b.log_alpha.item() == a.log_alpha.item()
    for name in ("optimizer", "critic_optimizer", "alpha_optimizer"):
        assert getattr(b, name).state_dict()["state"], name
    torch.manual_seed(0)
    out_a = a.update(_batch())
    torch.manual_seed(0)
    out_b = b.update(_batch())
    out_a.pop(TD_ERRORS), out_b.pop(TD_ERRORS)
    assert out_b == out_a


def test_squashed_kl_is_the_kl_before_the_squash_and_matches_a_monte_carlo_estimate():
    torch.manual_seed(0)
    pi = torch.tensor([[0.3, -0.2, -0.5, 0.1]], dtype=torch.float64)
    qi = torch.tensor([[-0.1, 0.4, 0.0, -0.3]], dtype=torch.float64)
    exact = float(SquashedGaussian(pi).kl(SquashedGaussian(qi)))
    # E_p[log p(a) - log q(a)] over squashed draws a, in float64 (exact atanh).
    n = 200_000
    p, q = SquashedGaussian(pi.expand(n, 4)), SquashedGaussian(qi.expand(n, 4))
    actions, logp = p.rsample_with_log_prob()
    diff = (logp - q.log_prob(actions)).numpy()
    assert exact == pytest.approx(diff.mean(), abs=4 * diff.std() / np.sqrt(n))
    assert float(SquashedGaussian(pi).kl(SquashedGaussian(pi))) == 0.0
