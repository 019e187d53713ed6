"""numpy sampling and log-probabilities agree with the torch distributions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from rl.policies import DistributionSpec
from rl.policies.numpy_dists import (
    deterministic,
    epsilon_greedy,
    log_prob,
    sample,
    sample_with_log_prob,
)
from rl.policies.numpy_params import masked_logits_np

SPACES = [("categorical", spaces.Discrete(5), False),
          ("multi_categorical", spaces.MultiDiscrete([3, 2, 4]), False),
          ("diag_gaussian", spaces.Box(-1, 1, (3,)), False),
          ("squashed_gaussian", spaces.Box(-1, 1, (3,)), True)]


def _inputs(spec: DistributionSpec, rows: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(0, 1.5, (rows, spec.input_dim)).astype(np.float32)
    return x


@pytest.mark.parametrize("kind, space, squashed", SPACES)
def test_log_probs_equal_the_torch_distributions(kind, space, squashed):
    spec = DistributionSpec(space, squashed=squashed)
    assert spec.kind == kind
    inputs = _inputs(spec, 64)
    actions = sample(spec, inputs, np.random.default_rng(1))
    assert actions.shape == (64, *spec.action_shape)
    expected = spec(torch.from_numpy(inputs)).log_prob(torch.from_numpy(actions)).numpy()
    got = log_prob(spec, inputs, actions)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    greedy = spec(torch.from_numpy(inputs)).deterministic().numpy()
    np.testing.assert_allclose(deterministic(spec, inputs), greedy, rtol=1e-6, atol=1e-6)


def test_masked_categorical_log_probs_and_samples():
    spec = DistributionSpec(spaces.Discrete(4))
    inputs = _inputs(spec, 32)
    mask = (np.random.default_rng(2).random((32, 4)) < 0.5).astype(np.float32)
    mask[0] = 0  # nothing allowed: the row stays unmasked
    masked = masked_logits_np(inputs, mask)
    torch_masked = spec.mask(torch.from_numpy(inputs), torch.from_numpy(mask)).numpy()
    np.testing.assert_array_equal(masked, torch_masked)
    actions = sample(spec, masked, np.random.default_rng(3))
    allowed = (mask > 0.5) | ~(mask > 0.5).any(-1, keepdims=True)
    assert allowed[np.arange(32), actions].all()
    expected = spec(torch.from_numpy(masked)).log_prob(torch.from_numpy(actions)).numpy()
    np.testing.assert_allclose(log_prob(spec, masked, actions), expected, rtol=1e-5, atol=1e-5)


def _chi_square(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


def test_categorical_samples_follow_the_softmax():
    spec = DistributionSpec(spaces.Discrete(5))
    logits = np.array([[1.0, 0.0, -1.0, 2.0, 0.5]], np.float32)
    draws = sample(spec, np.repeat(logits, 20_000, axis=0), np.random.default_rng(4))
    probs = np.exp(logits[0]) / np.exp(logits[0]).sum()
    # 4 degrees of freedom: P(chi2 > 25) < 1e-4.
    assert _chi_square(np.bincount(draws, minlength=5), probs) < 25.0


def test_multi_categorical_samples_follow_each_softmax():
    spec = DistributionSpec(spaces.MultiDiscrete([2, 3]))
    logits = np.array([[0.0, 1.0, 2.0, 0.0, -2.0]], np.float32)
    draws = sample(spec, np.repeat(logits, 20_000, axis=0), np.random.default_rng(5))
    for k, (a, b) in enumerate([(0, 2), (2, 5)]):
        p = np.exp(logits[0, a:b]) / np.exp(logits[0, a:b]).sum()
        assert _chi_square(np.bincount(draws[:, k], minlength=b - a), p) < 25.0


@pytest.mark.parametrize("squashed", [False, True])
def test_gaussian_samples_have_the_moments(squashed):
    spec = DistributionSpec(spaces.Box(-1, 1, (2,)), squashed=squashed)
    mean, log_std = np.array([0.5, -1.0], np.float32), np.array([-0.5, 0.3], np.float32)
    inputs = np.repeat(np.concatenate([mean, log_std])[None], 40_000, axis=0)
    draws = sample(spec, inputs, np.random.default_rng(6))
    u = np.arctanh(np.clip(draws, -1 + 1e-6, 1 - 1e-6)) if squashed else draws
    std = np.exp(log_std)
    # The standard error of the mean is std / 200; of the std about std / 280.
    np.testing.assert_allclose(u.mean(0), mean, atol=float(5 * std.max() / 200))
    np.testing.assert_allclose(u.std(0), std, rtol=0.03)
    if squashed:
        assert (np.abs(draws) <= 1).all()


def test_epsilon_greedy_is_uniform_among_allowed_actions():
    q = np.tile(np.array([[0.0, 5.0, 1.0, 2.0]], np.float32), (30_000, 1))
    rng = np.random.default_rng(7)
    assert (epsilon_greedy(q, 0.0, rng) == 1).all()
    draws = epsilon_greedy(q, 1.0, rng)
    assert _chi_square(np.bincount(draws, minlength=4), np.full(4, 0.25)) < 25.0
    allowed = np.tile(np.array([[1, 0, 1, 1]], np.float32), (30_000, 1))
    allowed[:10] = 0  # nothing allowed: any action
    draws = epsilon_greedy(q, 1.0, rng, allowed)
    assert set(np.unique(draws[10:])) <= {0, 2, 3}
    assert _chi_square(np.bincount(draws[10:], minlength=4)[[0, 2, 3]],
                       np.full(3, 1 / 3)) < 25.0
    half = epsilon_greedy(q, 0.5, rng)
    # Greedy half the time plus a quarter of the random half.
    assert abs((half == 1).mean() - 0.625) < 0.02


@pytest.mark.parametrize("kind, space, squashed", SPACES)
def test_sample_with_log_prob_is_the_two_calls(kind, space, squashed):
    spec = DistributionSpec(space, squashed=squashed)
    x = _inputs(spec, 64, seed=4)
    x[3, :] = -np.inf if kind == "categorical" else x[3, :]  # a fully masked row
    if kind == "categorical":
        x[3, 1] = 0.0
    one, two = np.random.default_rng(9), np.random.default_rng(9)
    for _ in range(20):
        actions, logp = sample_with_log_prob(spec, x, one)
        expected = sample(spec, x, two)
        np.testing.assert_array_equal(actions, expected)
        np.testing.assert_array_equal(logp, log_prob(spec, x, expected))
