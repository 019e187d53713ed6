"""n-step returns and the NStepAccumulator against a straightforward reference loop."""

from __future__ import annotations

import numpy as np
import pytest

from rl.data import columns as C
from rl.data.nstep import NStepAccumulator
from rl.data.returns import nstep_returns


def reference_window(rewards, terms, truncs, t, i, gamma, n):
    """(return, discount, terminated, next index, complete) of the window starting at t."""
    g, disc = 0.0, 1.0
    for k in range(n):
        s = t + k
        if s >= len(rewards):  # fragment ended before the window closed
            return g, disc, False, s - 1, False
        g += disc * rewards[s, i]
        disc *= gamma
        if terms[s, i]:
            return g, disc, True, s, True
        if truncs[s, i]:
            return g, disc, False, s, True
    return g, disc, False, t + n - 1, True


def random_stream(rng, T, N, p_end=0.15):
    terms = rng.random((T, N)) < p_end
    truncs = (rng.random((T, N)) < p_end) & ~terms
    return rng.normal(size=(T, N)), terms, truncs


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_nstep_returns_matches_reference(n, seed):
    rng = np.random.default_rng(seed)
    rewards, terms, truncs = random_stream(rng, 17, 4)
    res = nstep_returns(rewards=rewards, terminateds=terms, truncateds=truncs, gamma=0.9, n=n)
    for t in range(17):
        for i in range(4):
            g, disc, term, nxt, complete = reference_window(rewards, terms, truncs, t, i, 0.9, n)
            assert res.returns[t, i] == pytest.approx(g, rel=1e-5, abs=1e-5)
            assert res.discounts[t, i] == pytest.approx(disc, rel=1e-6)
            assert res.terminateds[t, i] == term
            assert res.next_index[t, i] == nxt
            assert res.complete[t, i] == complete
    assert res.returns.dtype == np.float32 and res.next_index.dtype == np.int64


def test_nstep_hand_computed():
    # One env, n = 3, gamma 0.5: r = [1, 2, 4, 8, 16]; step 1 truncates, step 3 terminates.
    res = nstep_returns(
        rewards=np.array([[1.0], [2.0], [4.0], [8.0], [16.0]]),
        terminateds=np.array([[0], [0], [0], [1], [0]], bool),
        truncateds=np.array([[0], [1], [0], [0], [0]], bool),
        gamma=0.5,
        n=3,
    )
    np.testing.assert_allclose(res.returns[:, 0], [1 + 1, 2, 4 + 4, 8, 16])
    np.testing.assert_allclose(res.discounts[:, 0], [0.25, 0.5, 0.25, 0.5, 0.5])
    assert res.terminateds[:, 0].tolist() == [False, False, True, True, False]
    assert res.next_index[:, 0].tolist() == [1, 1, 3, 3, 4]
    assert res.complete[:, 0].tolist() == [True, True, True, True, False]


def make_stream(rng, T, N):
    rewards, terms, truncs = random_stream(rng, T, N)
    ids = np.arange(T)[:, None] * 100 + np.arange(N)[None, :]  # obs identifies (t, env)
    return {
        C.OBS: ids.astype(np.int64)[..., None].repeat(2, axis=-1),  # [T, N, 2]
        C.ACTIONS: ids % 7,
        C.REWARDS: rewards.astype(np.float32),
        C.TERMINATEDS: terms,
        C.TRUNCATEDS: truncs,
        C.NEXT_OBS: -ids.astype(np.int64)[..., None].repeat(2, axis=-1) - 1,
    }


def split_fragments(stream, lengths):
    start = 0
    for length in lengths:
        yield {k: v[start : start + length] for k, v in stream.items()}
        start += length


@pytest.mark.parametrize("n", [1, 3, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accumulator_over_fragments_equals_reference_on_the_whole_stream(n, seed):
    rng = np.random.default_rng(seed)
    T, N, gamma = 40, 3, 0.9
    stream = make_stream(rng, T, N)
    lengths = []
    while sum(lengths) < T:  # fragments shorter and longer than n, including length 1
        lengths.append(int(min(rng.integers(1, 2 * n + 2), T - sum(lengths))))
    acc = NStepAccumulator(n=n, gamma=gamma)
    parts = [acc.add(frag) for frag in split_fragments(stream, lengths)]
    assert acc.num_pending <= (n - 1) * N
    parts.append(acc.flush())
    parts = [p for p in parts if len(p)]
    got = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    assert set(got) == {C.OBS, C.ACTIONS, C.REWARDS, C.TERMINATEDS, C.NEXT_OBS, C.DISCOUNTS}

    # Every step exactly once: obs ids are unique per (t, env).
    starts = got[C.OBS][:, 0]
    assert len(starts) == T * N and len(np.unique(starts)) == T * N
    args = (stream[C.REWARDS], stream[C.TERMINATEDS], stream[C.TRUNCATEDS])
    for row, start in enumerate(starts):
        t, i = divmod(int(start), 100)
        g, disc, term, nxt, _ = reference_window(*args, t, i, gamma, n)
        assert got[C.REWARDS][row] == pytest.approx(g, rel=1e-5, abs=1e-5)
        assert got[C.DISCOUNTS][row] == pytest.approx(disc, rel=1e-6)
        assert got[C.TERMINATEDS][row] == term
        assert got[C.NEXT_OBS][row].tolist() == [-(nxt * 100 + i) - 1] * 2
        assert got[C.ACTIONS][row] == (t * 100 + i) % 7
    assert got[C.REWARDS].dtype == np.float32 and got[C.DISCOUNTS].dtype == np.float32


def test_accumulator_holds_back_only_windows_cut_by_the_fragment_end():
    acc = NStepAccumulator(n=3, gamma=0.5)
    T = 4
    frag = {
        C.OBS: np.arange(T)[:, None].astype(np.float32),
        C.REWARDS: np.ones((T, 1), np.float32),
        C.TERMINATEDS: np.zeros((T, 1), bool),
        C.TRUNCATEDS: np.array([[0], [0], [1], [0]], bool),  # step 2 truncated
        C.NEXT_OBS: 10 + np.arange(T)[:, None].astype(np.float32),
    }
    out = acc.add(frag)
    # Starts 0, 1, 2 end at the truncation; start 3 waits for more steps.
    assert out[C.OBS].tolist() == [0, 1, 2]
    assert out[C.NEXT_OBS].tolist() == [12, 12, 12]
    np.testing.assert_allclose(out[C.REWARDS], [1.75, 1.5, 1.0])
    np.testing.assert_allclose(out[C.DISCOUNTS], [0.125, 0.25, 0.5])
    assert acc.num_pending == 1
    out = acc.add({k: v + 100 if v.dtype != bool else v for k, v in frag.items()})
    assert out[C.OBS].tolist() == [3, 100, 101, 102]  # 3 completed with 2 new steps
    assert out[C.NEXT_OBS][0] == 111
    assert out[C.REWARDS][0] == pytest.approx(1 + 0.5 * 101 + 0.25 * 101)


def test_accumulator_mask_drops_reset_steps():
    acc = NStepAccumulator(n=2, gamma=0.9)
    frag = {
        C.OBS: np.arange(4)[:, None],
        C.REWARDS: np.array([[1.0], [1.0], [0.0], [1.0]], np.float32),
        C.TERMINATEDS: np.array([[0], [1], [0], [0]], bool),
        C.TRUNCATEDS: np.zeros((4, 1), bool),
        C.NEXT_OBS: np.arange(1, 5)[:, None],
    }
    mask = np.array([[1], [1], [0], [1]], bool)  # NEXT_STEP reset row after the terminal step
    out = acc.add(frag, mask=mask)
    assert out[C.OBS].tolist() == [0, 1]
    assert acc.flush()[C.OBS].tolist() == [3]


def test_accumulator_rejects_inconsistent_fragments():
    rng = np.random.default_rng(0)
    acc = NStepAccumulator(n=3, gamma=0.9)
    stream = make_stream(rng, 6, 2)
    acc.add(stream)
    with pytest.raises(ValueError, match="envs"):
        acc.add({k: v[:, :1] for k, v in stream.items()})
    with pytest.raises(ValueError, match="columns"):
        acc.add({k: v for k, v in stream.items() if k != C.ACTIONS})
    with pytest.raises(KeyError, match="next_obs"):
        NStepAccumulator(n=3, gamma=0.9).add({k: v for k, v in stream.items() if k != C.NEXT_OBS})


def test_accumulator_copies_what_it_keeps():
    rng = np.random.default_rng(1)
    stream = make_stream(rng, 5, 2)
    stream[C.TERMINATEDS][:] = False
    stream[C.TRUNCATEDS][:] = False
    shared = {k: v.copy() for k, v in stream.items()}
    acc = NStepAccumulator(n=3, gamma=0.9)
    acc.add(shared)
    for v in shared.values():  # the worker overwrites its buffer in place
        v[...] = 0
    out = acc.flush()
    assert sorted(out[C.OBS][:, 0].tolist()) == [300, 301, 400, 401]


def test_empty_fragments_and_repeated_flush_are_harmless():
    rng = np.random.default_rng(3)
    stream = make_stream(rng, 6, 2)
    stream[C.TERMINATEDS][:] = False
    stream[C.TRUNCATEDS][:] = False
    acc = NStepAccumulator(n=4, gamma=0.9)
    assert len(acc.add({k: v[:0] for k, v in stream.items()})) == 0
    first = acc.add({k: v[:4] for k, v in stream.items()})
    assert len(acc.add({k: v[4:4] for k, v in stream.items()})) == 0
    rest = acc.add({k: v[4:] for k, v in stream.items()})
    assert len(first) + len(rest) == 3 * 2  # starts 0..2 complete with 4 steps
    assert len(acc.flush()) == 3 * 2 and len(acc.flush()) == 0 and acc.num_pending == 0


@pytest.mark.parametrize("n", [1, 3])
def test_accumulator_state_round_trips_through_an_npz_file(tmp_path, n):
    # A checkpoint between two fragments: a fresh accumulator loaded from the saved
    # state emits exactly what the original does, for the next add and for a flush.
    rng = np.random.default_rng(5)
    stream = make_stream(rng, 12, 3)
    first, second = split_fragments(stream, [7, 5])
    acc = NStepAccumulator(n=n, gamma=0.9)
    acc.add(first)
    path = tmp_path / "acc.npz"
    np.savez(path, **acc.state_dict())
    with np.load(path, allow_pickle=False) as data:
        state = {k: data[k] for k in data.files}
    restored = NStepAccumulator(n=n, gamma=0.9)
    restored.load_state_dict(state)
    assert restored.num_pending == acc.num_pending
    assert (acc.num_pending > 0) == (n > 1)  # windows really are open across the save
    for a, b in ((acc.add(second), restored.add(second)), (acc.flush(), restored.flush())):
        assert sorted(a) == sorted(b)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    with pytest.raises(ValueError, match="differ from the stream's"):
        again = NStepAccumulator(n=n, gamma=0.9)
        again.load_state_dict(state)
        again.add({k: v for k, v in second.items() if k != C.ACTIONS})


def test_flush_after_a_fragment_whose_windows_all_closed():
    # Episodes end on the last two steps: the kept rows hold no open window, and the
    # accumulator never saw a next_obs to bootstrap from; flush() has nothing to emit.
    acc = NStepAccumulator(n=3, gamma=0.9)
    frag = {C.OBS: np.zeros((3, 1, 2)), C.REWARDS: np.ones((3, 1), np.float32),
            C.TERMINATEDS: np.array([[False], [True], [True]]),
            C.TRUNCATEDS: np.zeros((3, 1), bool), C.NEXT_OBS: np.zeros((3, 1, 2))}
    assert len(acc.add(frag)) == 3 and acc.num_pending == 0
    restored = NStepAccumulator(n=3, gamma=0.9)
    restored.load_state_dict(acc.state_dict())
    assert len(acc.flush()) == 0 and len(restored.flush()) == 0
