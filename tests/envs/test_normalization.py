"""Running statistics against numpy, and reward scaling against a plain reference loop."""

from __future__ import annotations

import numpy as np
import pytest

from rl.envs.normalization import RewardScaler, RunningMeanStd


@pytest.mark.parametrize("shape", [(), (3,), (2, 4)])
def test_updates_in_batches_of_any_size_give_numpy_mean_and_var(shape):
    rng = np.random.default_rng(0)
    # Different sizes (a single row among them) and scales: the streaming result must
    # equal the statistics of the concatenated data.
    batches = [rng.normal(loc, scale, (n, *shape))
               for n, loc, scale in [(1, 5.0, 1.0), (7, -3.0, 0.1), (64, 0.5, 10.0), (2, 0.0, 1.0),
                                     (0, 0.0, 1.0), (300, 100.0, 2.0)]]
    rms = RunningMeanStd(shape)
    for b in batches:
        rms.update(b)
    data = np.concatenate(batches)
    assert rms.count == len(data)
    np.testing.assert_allclose(rms.mean, data.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rms.var, data.var(axis=0), rtol=1e-10)
    assert rms.mean.shape == rms.var.shape == shape


def test_update_flattens_leading_axes():
    # A time-major [T, N, *shape] fragment counts T x N samples.
    x = np.random.default_rng(1).normal(size=(5, 3, 2))
    rms = RunningMeanStd((2,))
    rms.update(x)
    flat = x.reshape(-1, 2)
    assert rms.count == 15
    np.testing.assert_allclose(rms.mean, flat.mean(0), rtol=1e-12)
    np.testing.assert_allclose(rms.var, flat.var(0), rtol=1e-12)


def test_merging_worker_deltas_equals_numpy_over_all_data_in_any_order():
    # The driver merges each worker's (mean, var, count) delta into the global
    # statistics (Chan et al.'s parallel variance update).
    rng = np.random.default_rng(2)
    seen = rng.normal(2.0, 3.0, (50, 3))
    parts = [rng.normal(loc, 1.5, (n, 3)) for n, loc in [(11, -1.0), (1, 4.0), (200, 0.3)]]
    deltas = []
    for part in parts:
        worker = RunningMeanStd((3,))
        worker.update(part)
        deltas.append(worker.state())
    data = np.concatenate([seen, *parts])
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        merged = RunningMeanStd((3,))
        merged.update(seen)
        for i in order:
            merged.merge(deltas[i]["mean"], deltas[i]["var"], float(deltas[i]["count"]))
        assert merged.count == len(data)
        np.testing.assert_allclose(merged.mean, data.mean(0), rtol=1e-12)
        np.testing.assert_allclose(merged.var, data.var(0), rtol=1e-10)


def test_merging_nothing_changes_nothing_and_the_first_merge_replaces_the_prior():
    rms = RunningMeanStd((2,))
    rms.merge(np.full(2, 7.0), np.full(2, 9.0), 0.0)
    assert rms.count == 0
    np.testing.assert_array_equal(rms.var, np.ones(2))  # the prior (var 1) until data
    rms.merge(np.array([1.0, 2.0]), np.array([0.25, 4.0]), 3.0)
    np.testing.assert_array_equal(rms.mean, [1.0, 2.0])
    np.testing.assert_array_equal(rms.var, [0.25, 4.0])
    assert rms.count == 3


def test_normalize_divides_by_the_std_and_clips():
    rms = RunningMeanStd((2,), clip=5.0)
    rms.update(np.array([[0.0, 10.0], [2.0, 30.0]]))  # mean [1, 20], var [1, 100]
    out = rms.normalize(np.array([[3.0, 40.0], [1.0, 1000.0]]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[2.0, 2.0], [0.0, 5.0]], rtol=1e-6)


def reference_scaled_rewards(fragments, gamma, eps=1e-8, clip=10.0):
    """RewardScaler's definition, one step at a time: a discounted return per env
    (``G = gamma * G + r``, reset to 0 after a done step), the variance of every return
    seen so far, and each fragment's rewards divided by its std after the fragment."""
    returns: dict[int, list[float]] = {}
    seen: list[float] = []
    out = []
    for stream, rewards, dones in fragments:
        T, N = rewards.shape
        g = returns.setdefault(stream, [0.0] * N)
        for t in range(T):
            for n in range(N):
                g[n] = gamma * g[n] + float(rewards[t, n])
                seen.append(g[n])
                if dones[t, n]:
                    g[n] = 0.0
        std = float(np.sqrt(np.var(seen) + eps))
        out.append(np.clip(rewards / std, -clip, clip))
    return out


def test_reward_scaler_matches_the_reference_loop_across_streams_and_fragments():
    rng = np.random.default_rng(3)
    fragments = []
    for stream in (0, 1, 0, 0, 1):  # two workers' streams, interleaved
        rewards = rng.normal(1.0, 2.0, (6, 3))
        dones = rng.random((6, 3)) < 0.2
        fragments.append((stream, rewards, dones))
    scaler = RewardScaler(gamma=0.9)
    got = [scaler(stream, rewards, dones) for stream, rewards, dones in fragments]
    for g, expected in zip(got, reference_scaled_rewards(fragments, 0.9)):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, expected, rtol=1e-6)


def test_reward_scaler_by_hand():
    # One env, gamma 0.5, rewards 2, 2 (done), 4: returns 2, 3, then reset: 4.
    scaler = RewardScaler(gamma=0.5)
    out = scaler(0, np.array([[2.0], [2.0], [4.0]]), np.array([[False], [True], [False]]))
    std = np.sqrt(np.var([2.0, 3.0, 4.0]) + 1e-8)
    np.testing.assert_allclose(out[:, 0], np.array([2.0, 2.0, 4.0]) / std, rtol=1e-6)
    np.testing.assert_array_equal(scaler.returns[0], [4.0])  # carried to the next fragment


def test_reward_scaler_state_round_trip_and_stream_reset():
    rng = np.random.default_rng(4)
    a = RewardScaler(gamma=0.99)
    a(0, rng.normal(size=(5, 2)), np.zeros((5, 2), bool))
    a(3, rng.normal(size=(5, 2)), np.zeros((5, 2), bool))
    b = RewardScaler(gamma=0.99)
    b.load_state(a.state())
    rewards, dones = rng.normal(size=(4, 2)), np.zeros((4, 2), bool)
    np.testing.assert_array_equal(a(3, rewards, dones), b(3, rewards, dones))
    # A restarted worker's stream starts again from a zero return.
    a.reset_stream(3)
    fresh = RewardScaler(gamma=0.99)
    fresh.stats.load_state(a.stats.state())
    np.testing.assert_array_equal(a(3, rewards, dones), fresh(3, rewards, dones))
