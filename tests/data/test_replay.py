"""Replay buffers and the sum tree: ring semantics, sampling laws, checkpoints."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rl.data import columns as C
from rl.data.replay import PrioritizedReplayBuffer, ReplayBuffer
from rl.data.sum_tree import SumTree


def rows(start: int, count: int) -> dict[str, np.ndarray]:
    ids = np.arange(start, start + count)
    return {
        C.OBS: np.stack([ids, -ids], axis=1).astype(np.float32),
        C.ACTIONS: ids.astype(np.int64),
        C.REWARDS: ids.astype(np.float32) / 10,
        C.TERMINATEDS: ids % 3 == 0,
    }


# --- uniform ring buffer ----------------------------------------------------------


def test_ring_wraparound_keeps_the_newest_rows():
    buf = ReplayBuffer(5)
    buf.add(rows(0, 3))
    assert len(buf) == 3
    buf.add(rows(3, 4))  # wraps: rows 5, 6 overwrite slots 0, 1
    assert len(buf) == 5
    state = buf.state_dict()
    assert state["pos"] == 2
    assert state["column/actions"].tolist() == [5, 6, 2, 3, 4]
    assert state["column/obs"][:, 1].tolist() == [-5, -6, -2, -3, -4]
    buf.add(rows(100, 12))  # larger than capacity: only the last 5 survive
    state = buf.state_dict()
    assert sorted(state["column/actions"].tolist()) == [107, 108, 109, 110, 111]
    assert state["pos"] == (2 + 12) % 5
    # The slot after the write position holds the oldest row.
    assert state["column/actions"][state["pos"]] == 107


def test_columns_take_the_first_batch_dtypes_and_shapes():
    buf = ReplayBuffer(10)
    buf.add(rows(0, 2))
    batch = buf.sample(4, np.random.default_rng(0))
    assert batch[C.OBS].dtype == np.float32 and batch[C.OBS].shape == (4, 2)
    assert batch[C.TERMINATEDS].dtype == np.bool_ and batch[C.ACTIONS].dtype == np.int64
    buf.add(
        {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in rows(2, 2).items()}
    )
    assert buf.sample(4, np.random.default_rng(0))[C.OBS].dtype == np.float32
    with pytest.raises(ValueError, match="columns"):
        buf.add({C.OBS: np.zeros((1, 2), np.float32)})
    with pytest.raises(ValueError, match="shape"):
        buf.add({**rows(0, 1), C.OBS: np.zeros((1, 3), np.float32)})
    with pytest.raises(TypeError, match="cannot store"):
        buf.add({**rows(0, 1), C.ACTIONS: np.zeros(1, np.float32)})
    with pytest.raises(ValueError, match="lengths"):
        buf.add({**rows(0, 2), C.ACTIONS: np.zeros(1, np.int64)})
    with pytest.raises(ValueError, match="reserved"):
        ReplayBuffer(3).add({C.WEIGHTS: np.ones(2)})
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(3).sample(1, np.random.default_rng(0))


def test_uniform_sampling_covers_filled_rows_evenly():
    buf = ReplayBuffer(100)
    buf.add(rows(0, 10))  # only 10 of 100 slots filled
    rng = np.random.default_rng(123)
    batch = buf.sample(20_000, rng)
    idx = batch[C.BATCH_INDEXES]
    assert idx.min() >= 0 and idx.max() < 10
    np.testing.assert_array_equal(batch[C.ACTIONS], idx)  # columns stay row-aligned
    np.testing.assert_array_equal(batch[C.WEIGHTS], np.ones(20_000, np.float32))
    counts = np.bincount(idx, minlength=10)
    chi2 = ((counts - 2000) ** 2 / 2000).sum()
    assert chi2 < 27.9  # chi-square, 9 dof, p = 0.001


# --- sum tree ---------------------------------------------------------------------


def assert_tree_invariants(tree: SumTree, leaves: np.ndarray) -> None:
    np.testing.assert_array_equal(tree.leaves, leaves)
    t = tree._tree
    first = tree._first_leaf
    # Every internal node is exactly the sum of its children (recomputed, never patched).
    np.testing.assert_array_equal(t[1:first], t[2 : 2 * first : 2] + t[3 : 2 * first : 2])
    assert tree.total == pytest.approx(math.fsum(leaves), rel=1e-12, abs=1e-300)


ops = st.lists(
    st.tuples(
        st.booleans(),
        st.lists(st.integers(0, 10_000), min_size=1, max_size=20),
        st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=20),
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(capacity=st.integers(1, 70), operations=ops)
def test_sum_tree_root_is_the_sum_of_leaves_after_any_updates(capacity, operations):
    tree = SumTree(capacity)
    leaves = np.zeros(capacity)
    for contiguous, positions, values in operations:
        values = np.array(values)
        if contiguous:  # a ring write: a run of leaves from some start
            values = values[:capacity]
            start = positions[0] % (capacity - len(values) + 1)
            tree.set_range(start, values)
            leaves[start : start + len(values)] = values
        else:  # a priority update: scattered leaves, possibly repeated
            idx = np.array(positions[: len(values)]) % capacity
            values = values[: len(idx)]
            tree.set(idx, values)
            for i, v in zip(idx, values):  # sequential semantics: the last write wins
                leaves[i] = v
        assert_tree_invariants(tree, leaves)


@settings(max_examples=150, deadline=None)
@given(
    leaves=st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 1e3)), min_size=1, max_size=70).filter(
        lambda xs: sum(xs) > 0
    ),
    fractions=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=50),
)
def test_prefix_sum_search_returns_the_leaf_holding_the_target(leaves, fractions):
    tree = SumTree(len(leaves))
    tree.set(np.arange(len(leaves)), np.array(leaves))
    targets = np.array(fractions) * tree.total
    found = tree.find_prefix_sum(targets)
    cum = np.cumsum(leaves)
    for u, i in zip(targets, found):
        assert leaves[i] > 0, "a zero leaf can never be drawn"
        lo = cum[i] - leaves[i]
        tol = 1e-9 * tree.total
        assert lo - tol <= u < cum[i] + tol


def test_prefix_sum_search_at_and_beyond_the_total_stays_on_positive_leaves():
    tree = SumTree(6)  # padded to 8 leaves
    tree.set(np.arange(6), np.array([1.0, 0.0, 2.0, 3.0, 0.0, 0.0]))
    found = tree.find_prefix_sum(np.array([0.0, 1.0, 2.999, 3.0, 6.0, 6.0 + 1e-9, 1e9]))
    assert found.tolist() == [0, 2, 2, 3, 3, 3, 3]


def test_sum_tree_rejects_bad_values():
    tree = SumTree(4)
    with pytest.raises(ValueError, match="finite"):
        tree.set(np.array([0]), np.array([np.nan]))
    with pytest.raises(ValueError, match="finite"):
        tree.set(np.array([0]), np.array([-1.0]))
    with pytest.raises(IndexError):
        tree.set(np.array([4]), np.array([1.0]))
    with pytest.raises(IndexError):
        tree.set_range(3, np.ones(2))
    with pytest.raises(ValueError, match="total"):
        tree.sample_stratified(4, np.random.default_rng(0))


# --- prioritised replay -----------------------------------------------------------


def test_new_rows_get_the_max_priority_and_updates_set_td_plus_eps_to_alpha():
    buf = PrioritizedReplayBuffer(8, alpha=0.5, beta=0.4, eps=0.01)
    buf.add(rows(0, 4))
    np.testing.assert_allclose(buf.state_dict()["priorities"], np.ones(4))  # max starts at 1
    buf.update_priorities(np.array([0, 2]), np.array([-3.0, 0.5]))
    np.testing.assert_allclose(
        buf.state_dict()["priorities"], [3.01**0.5, 1.0, 0.51**0.5, 1.0], rtol=1e-12
    )
    buf.add(rows(4, 2))  # newcomers get the largest priority seen: 3.01
    np.testing.assert_allclose(buf.state_dict()["priorities"][4:], [3.01**0.5] * 2)
    buf.add(rows(6, 4))  # wraps onto rows 0, 1: they lose their old priority
    np.testing.assert_allclose(buf.state_dict()["priorities"][:2], [3.01**0.5] * 2)
    with pytest.raises(IndexError):
        PrioritizedReplayBuffer(8).update_priorities(np.array([0]), np.array([1.0]))
    with pytest.raises(ValueError, match="finite"):
        buf.update_priorities(np.array([1]), np.array([np.inf]))


def test_prioritised_sampling_frequencies_match_p_alpha():
    buf = PrioritizedReplayBuffer(16, alpha=0.6)
    buf.add(rows(0, 10))
    td = np.array([0.0, 0.1, 0.5, 1.0, 2.0, 3.0, 0.05, 7.0, 0.3, 1.5])
    buf.update_priorities(np.arange(10), td)
    p = (np.abs(td) + 1e-6) ** 0.6
    expected = p / p.sum()
    rng = np.random.default_rng(2024)
    counts = np.zeros(10)
    for _ in range(200):
        counts += np.bincount(buf.sample(500, rng)[C.BATCH_INDEXES], minlength=10)
    total = counts.sum()
    assert counts.sum() == 100_000 and counts[10:].sum() == 0
    chi2 = ((counts - total * expected) ** 2 / (total * expected)).sum()
    assert chi2 < 27.9  # 9 dof, p = 0.001 (stratification only lowers the variance)
    np.testing.assert_allclose(counts / total, expected, atol=0.005)


def test_importance_weights_hand_computed():
    # alpha 1, priorities 1, 1, 2, 4 (eps negligible): P = [1, 1, 2, 4] / 8, size 4.
    # (size * P)^-0.5 = [sqrt 2, sqrt 2, 1, 1/sqrt 2]; normalised by the max (sqrt 2).
    buf = PrioritizedReplayBuffer(4, alpha=1.0, beta=0.5, eps=1e-12)
    buf.add(rows(0, 4))
    buf.update_priorities(np.arange(4), np.array([1.0, 1.0, 2.0, 4.0]))
    # 8 strata of mass 1 each hit rows [0, 1, 2, 2, 3, 3, 3, 3].
    batch = buf.sample(8, np.random.default_rng(0))
    assert batch[C.BATCH_INDEXES].tolist() == [0, 1, 2, 2, 3, 3, 3, 3]
    want = {0: 1.0, 1: 1.0, 2: 1 / math.sqrt(2), 3: 0.5}
    np.testing.assert_allclose(
        batch[C.WEIGHTS], [want[i] for i in batch[C.BATCH_INDEXES]], rtol=1e-6
    )
    assert batch[C.WEIGHTS].dtype == np.float32
    # beta = 0 turns the correction off; beta passed per call overrides self.beta.
    np.testing.assert_array_equal(buf.sample(8, np.random.default_rng(0), beta=0.0)[C.WEIGHTS], 1)


# --- checkpoints ------------------------------------------------------------------


def _filled(cls, **kw):
    buf = cls(7, **kw)
    buf.add(rows(0, 5))
    buf.add(rows(5, 4))  # wrapped
    if isinstance(buf, PrioritizedReplayBuffer):
        buf.update_priorities(np.array([1, 3, 4]), np.array([0.5, 4.0, 0.0]))
    return buf


@pytest.mark.parametrize("cls", [ReplayBuffer, PrioritizedReplayBuffer])
def test_state_dict_round_trip_without_pickle(cls):
    buf = _filled(cls)
    state = buf.state_dict()
    assert all(isinstance(v, np.ndarray | int | float) for v in state.values())

    # numpy: np.savez / np.load without pickle.
    f = io.BytesIO()
    np.savez(f, **state)
    f.seek(0)
    with np.load(f, allow_pickle=False) as loaded:
        restored_np = cls(7)
        restored_np.load_state_dict({k: loaded[k] for k in loaded.files})

    # torch: tensors, loaded with weights_only=True.
    f = io.BytesIO()
    tensors = {k: torch.from_numpy(np.array(v)) for k, v in state.items()}
    torch.save(tensors, f)
    f.seek(0)
    restored_pt = cls(7)
    restored_pt.load_state_dict(torch.load(f, weights_only=True))

    for restored in (restored_np, restored_pt):
        assert len(restored) == len(buf) == 7
        for key, value in state.items():
            np.testing.assert_array_equal(restored.state_dict()[key], value)
        a = buf.sample(32, np.random.default_rng(5))
        b = restored.sample(32, np.random.default_rng(5))
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
            assert a[key].dtype == b[key].dtype
        # And it keeps working: the next add goes to the same slot.
        buf2, restored2 = _filled(cls), restored
        buf2.add(rows(50, 1))
        restored2.add(rows(50, 1))
        assert buf2.state_dict()["pos"] == restored2.state_dict()["pos"]


def test_load_rejects_a_different_capacity():
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(8).load_state_dict(_filled(ReplayBuffer).state_dict())


def test_empty_buffer_state_round_trip():
    state = PrioritizedReplayBuffer(3).state_dict()
    restored = PrioritizedReplayBuffer(3)
    restored.load_state_dict(state)
    assert len(restored) == 0
    restored.add(rows(0, 2))
    assert len(restored.sample(4, np.random.default_rng(0))) == 4
