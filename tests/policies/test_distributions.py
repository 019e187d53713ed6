"""Action distributions against torch.distributions, and network initialisation."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import distributions as D

from rl.policies import ActorCritic, DistributionSpec, flat_params, load_flat_params


def test_categorical_matches_torch():
    logits = torch.randn(6, 4)
    spec = DistributionSpec(gym.spaces.Discrete(4))
    d, ref = spec(logits), D.Categorical(logits=logits)
    a = torch.tensor([0, 1, 2, 3, 0, 1])
    torch.testing.assert_close(d.log_prob(a), ref.log_prob(a))
    torch.testing.assert_close(d.entropy(), ref.entropy())
    other = torch.randn(6, 4)
    torch.testing.assert_close(d.kl(spec(other)),
                               D.kl_divergence(ref, D.Categorical(logits=other)))


def test_categorical_sampling_frequencies():
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.7]])).repeat(20000, 1)
    g = torch.Generator().manual_seed(0)
    a = DistributionSpec(gym.spaces.Discrete(3))(logits).sample(g)
    freq = torch.bincount(a, minlength=3).float() / len(a)
    torch.testing.assert_close(freq, torch.tensor([0.1, 0.2, 0.7]), atol=0.01, rtol=0)


def test_multi_categorical_sums_independent_log_probs():
    spec = DistributionSpec(gym.spaces.MultiDiscrete([3, 2]))
    logits = torch.randn(5, 5)
    a = torch.tensor([[0, 1], [2, 0], [1, 1], [0, 0], [2, 1]])
    ref_lp = (D.Categorical(logits=logits[:, :3]).log_prob(a[:, 0])
              + D.Categorical(logits=logits[:, 3:]).log_prob(a[:, 1]))
    d = spec(logits)
    torch.testing.assert_close(d.log_prob(a), ref_lp)
    assert d.sample().shape == (5, 2)


def test_diag_gaussian_matches_torch_and_clips_env_actions():
    space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    spec = DistributionSpec(space)
    mean, log_std = torch.randn(4, 2), torch.randn(4, 2) * 0.3
    d = spec(torch.cat([mean, log_std], -1))
    ref = D.Independent(D.Normal(mean, log_std.exp()), 1)
    a = torch.randn(4, 2) * 3
    torch.testing.assert_close(d.log_prob(a), ref.log_prob(a))
    torch.testing.assert_close(d.entropy(), ref.entropy())
    env_a = spec.env_actions(a.numpy())
    assert env_a.max() <= 1.0 and env_a.min() >= -1.0
    assert np.abs(a.numpy()).max() > 1.0  # the raw sample is kept for the batch


def test_multi_categorical_entropy_and_kl_sum_the_components():
    spec = DistributionSpec(gym.spaces.MultiDiscrete([3, 2, 4]))
    logits, other = torch.randn(6, 9), torch.randn(6, 9)
    splits = [(0, 3), (3, 5), (5, 9)]
    ref = [D.Categorical(logits=logits[:, a:b]) for a, b in splits]
    ref_other = [D.Categorical(logits=other[:, a:b]) for a, b in splits]
    d = spec(logits)
    torch.testing.assert_close(d.entropy(), sum(c.entropy() for c in ref))
    torch.testing.assert_close(d.kl(spec(other)),
                               sum(D.kl_divergence(p, q) for p, q in zip(ref, ref_other)))
    torch.testing.assert_close(d.kl(d), torch.zeros(6))


def test_diag_gaussian_samples_have_the_mean_std_and_torch_log_probs():
    mean = torch.tensor([[1.5, -2.0, 0.0]])
    log_std = torch.tensor([[0.0, -1.0, 0.7]])
    n = 200_000
    d = DistributionSpec(gym.spaces.Box(-1.0, 1.0, (3,), np.float32))(
        torch.cat([mean, log_std], -1).repeat(n, 1))
    a = d.sample(torch.Generator().manual_seed(0))
    std = log_std.exp()
    # 5 standard errors: the sample mean's is std / sqrt(n), the sample std's std / sqrt(2n).
    torch.testing.assert_close(a.mean(0, keepdim=True), mean, atol=float(5 * std.max() / n**0.5),
                               rtol=0)
    torch.testing.assert_close(a.std(0, keepdim=True), std,
                               atol=float(5 * std.max() / (2 * n) ** 0.5), rtol=0)
    ref = D.Independent(D.Normal(mean.expand(n, 3), std.expand(n, 3)), 1)
    torch.testing.assert_close(d.log_prob(a), ref.log_prob(a))


@pytest.mark.parametrize("space", [gym.spaces.Discrete(3), gym.spaces.MultiDiscrete([3, 3])],
                         ids=["categorical", "multi_categorical"])
def test_extreme_logits_stay_finite(space):
    spec = DistributionSpec(space)
    width = spec.input_dim
    logits = torch.tensor([1e4, -1e4, 0.0] * (width // 3)).repeat(4, 1)
    other = torch.tensor([-1e4, 1e4, -1e4] * (width // 3)).repeat(4, 1)
    d = spec(logits)
    actions = d.sample(torch.Generator().manual_seed(0))
    # The +1e4 logit takes all the mass: it is always sampled, with log-prob 0.
    assert (actions == 0).all()
    unlikely = torch.ones_like(actions)
    for value in (d.log_prob(actions), d.log_prob(unlikely), d.entropy(), d.kl(spec(other)),
                  spec(other).kl(d)):
        assert torch.isfinite(value).all(), value
    torch.testing.assert_close(d.log_prob(actions), torch.zeros(4))
    torch.testing.assert_close(d.entropy(), torch.zeros(4))
    assert (d.log_prob(unlikely) < -1e4).all()
    assert (d.kl(spec(other)) > 1e4).all()


def test_tiny_standard_deviations_give_finite_log_probs_and_samples_at_the_mean():
    mean = torch.tensor([[0.5, -3.0]]).repeat(8, 1)
    log_std = torch.full((8, 2), -60.0)  # std ~ 1e-26
    spec = DistributionSpec(gym.spaces.Box(-5.0, 5.0, (2,), np.float32))
    d = spec(torch.cat([mean, log_std], -1))
    a = d.sample(torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, mean)
    logp = d.log_prob(a)
    assert torch.isfinite(logp).all()
    # At the mean z = 0: log N = -log_std - log sqrt(2 pi) per dim.
    torch.testing.assert_close(logp, torch.full((8,), 2 * (60.0 - 0.5 * math.log(2 * math.pi))))
    assert torch.isfinite(d.entropy()).all()
    # KL(tiny || wide) is finite; KL(wide || tiny) ~ e^120 / 2 exceeds float32 by right.
    wide = spec(torch.cat([mean, torch.zeros(8, 2)], -1))
    for kl in (d.kl(wide), d.kl(d)):
        assert torch.isfinite(kl).all(), kl
    torch.testing.assert_close(d.kl(d), torch.zeros(8))
    ref = D.kl_divergence(D.Normal(mean, log_std.double().exp()),
                          D.Normal(mean, torch.ones(8, 2))).sum(-1).float()
    torch.testing.assert_close(d.kl(wide), ref)


def test_orthogonal_init_and_heads():
    torch.manual_seed(0)
    m = ActorCritic(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Box(-1, 1, (2,)), 4)
    w = m.pi_trunk[1][0].weight  # first hidden layer
    # Orthogonal rows scaled by sqrt(2): W W^T = 2 I (rows <= cols case is 64x4 -> columns).
    torch.testing.assert_close(w.T @ w, 2 * torch.eye(4), atol=1e-4, rtol=0)
    assert float(m.pi_head.weight.detach().norm()) < 0.1  # policy head gain 0.01
    assert float(m.pi_trunk[1][0].bias.detach().abs().sum()) == 0.0
    torch.testing.assert_close(m.log_std, torch.zeros(2))
    assert not m.shared and m.vf_trunk is not None


def test_flat_params_round_trip():
    m1 = ActorCritic(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), 2)
    m2 = ActorCritic(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), 2)
    load_flat_params(m2, flat_params(m1))
    x = torch.randn(5, 3)
    torch.testing.assert_close(m1(x)[0], m2(x)[0])
    with pytest.raises(ValueError, match="values"):
        load_flat_params(m2, np.zeros(3, np.float32))


def test_cnn_scales_uint8_and_accepts_channels_last():
    space = gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
    m = ActorCritic(space, gym.spaces.Discrete(6), 6)
    assert m.shared
    x = torch.randint(0, 256, (2, 84, 84, 4), dtype=torch.uint8)
    logits, v = m(x)
    assert logits.shape == (2, 6) and v.shape == (2,)
    assert math.isfinite(float(v.detach().sum()))
