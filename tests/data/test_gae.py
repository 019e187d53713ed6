"""compute_gae against hand-computed values and a plain per-env reference loop."""

from __future__ import annotations

import numpy as np
import pytest

from rl.data.returns import compute_gae


def reference_gae(rewards, values, next_values, terms, truncs, gamma, lam):
    T, N = rewards.shape
    adv = np.zeros((T, N))
    for i in range(N):
        running = 0.0
        for t in reversed(range(T)):
            if terms[t, i]:
                delta = rewards[t, i] - values[t, i]
                running = delta
            elif truncs[t, i] or t == T - 1:
                # Cut episode or fragment end: bootstrap, but start a fresh recursion.
                running = rewards[t, i] + gamma * next_values[t, i] - values[t, i]
            else:
                delta = rewards[t, i] + gamma * next_values[t, i] - values[t, i]
                running = delta + gamma * lam * running
            adv[t, i] = running
    return adv


def test_gae_hand_computed():
    # One env, gamma 0.5, lambda 0.5; step 1 terminates, step 2 is the fragment end.
    # delta_2 = 1 + 0.5*8 - 2 = 3;  delta_1 = 2 - 1 = 1 (terminated, no bootstrap);
    # delta_0 = 0 + 0.5*1 - 1 = -0.5; A_0 = -0.5 + 0.25*1 = -0.25.
    adv, targets = compute_gae(
        rewards=np.array([[0.0], [2.0], [1.0]]),
        values=np.array([[1.0], [1.0], [2.0]]),
        next_values=np.array([[1.0], [99.0], [8.0]]),
        terminateds=np.array([[False], [True], [False]]),
        truncateds=np.zeros((3, 1), bool),
        gamma=0.5,
        lam=0.5,
    )
    np.testing.assert_allclose(adv[:, 0], [-0.25, 1.0, 3.0])
    np.testing.assert_allclose(targets[:, 0], [0.75, 2.0, 5.0])


@pytest.mark.parametrize("seed", range(4))
def test_gae_matches_reference_loop(seed):
    rng = np.random.default_rng(seed)
    T, N = 20, 6
    terms = rng.random((T, N)) < 0.1
    truncs = (rng.random((T, N)) < 0.1) & ~terms
    kw = dict(
        rewards=rng.normal(size=(T, N)),
        values=rng.normal(size=(T, N)),
        next_values=rng.normal(size=(T, N)),
    )
    adv, targets = compute_gae(**kw, terminateds=terms, truncateds=truncs, gamma=0.99, lam=0.95)
    ref = reference_gae(kw["rewards"], kw["values"], kw["next_values"], terms, truncs, 0.99, 0.95)
    assert adv.dtype == np.float32 and adv.shape == (T, N)
    np.testing.assert_allclose(adv, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(targets, ref + kw["values"], rtol=1e-5, atol=1e-5)


def test_truncation_bootstraps_and_stops_the_recursion():
    rewards = np.array([[1.0], [1.0], [1.0]])
    values = np.zeros((3, 1))
    next_values = np.array([[0.0], [10.0], [0.0]])  # step 1 truncated: V(final obs) = 10
    truncs = np.array([[False], [True], [False]])
    adv, _ = compute_gae(
        rewards=rewards, values=values, next_values=next_values,
        terminateds=np.zeros((3, 1), bool), truncateds=truncs, gamma=0.9, lam=1.0,
    )  # fmt: skip
    # Step 2 (next episode) must not flow into step 1; step 1 bootstraps from 10.
    np.testing.assert_allclose(adv[:, 0], [1 + 0.9 * 10.0, 1 + 0.9 * 10.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(adv[0, 0], 1.0 + 0.9 * adv[1, 0], rtol=1e-6)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same"):
        compute_gae(
            rewards=np.zeros((3, 2)), values=np.zeros((3, 2)), next_values=np.zeros((2, 2)),
            terminateds=np.zeros((3, 2)), truncateds=np.zeros((3, 2)), gamma=0.9, lam=0.9,
        )  # fmt: skip


@pytest.mark.parametrize("seed", range(5))
def test_gae_with_a_valid_mask_runs_along_each_columns_valid_rows(seed):
    # Turn-based games: an agent's moves are a column's valid rows, padding between them.
    rng = np.random.default_rng(seed)
    T, N = 40, 3
    valid = rng.random((T, N)) < 0.5
    rewards = rng.normal(size=(T, N)).astype(np.float32)
    values = rng.normal(size=(T, N)).astype(np.float32)
    next_values = rng.normal(size=(T, N)).astype(np.float32)
    terms = rng.random((T, N)) < 0.1
    truncs = rng.random((T, N)) < 0.05
    adv, targets = compute_gae(rewards=rewards, values=values, next_values=next_values,
                               terminateds=terms, truncateds=truncs, gamma=0.97, lam=0.9,
                               valid=valid)
    for n in range(N):
        keep = valid[:, n]
        ref = reference_gae(rewards[keep, n, None], values[keep, n, None],
                            next_values[keep, n, None], terms[keep, n, None],
                            truncs[keep, n, None], 0.97, 0.9)[:, 0]
        np.testing.assert_allclose(adv[keep, n], ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(targets[keep, n], ref + values[keep, n], rtol=1e-5,
                                   atol=1e-5)
        assert (adv[~keep, n] == 0).all()
