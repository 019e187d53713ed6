"""V-trace (rl.data.returns.vtrace / vtrace_torch) against the paper's equations.

The reference below evaluates Espeholt et al. 2018, eq. (1), as an explicit sum
over each step's own episode, one env and one start step at a time, in float64:
an implementation independent of the reverse scan under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rl.data.returns import compute_gae, vtrace, vtrace_torch


def _clip(ratio: float, threshold: float | None) -> float:
    return ratio if threshold is None else min(threshold, ratio)


def reference_vtrace(
    blogp, tlogp, rewards, values, bootstrap, terms, truncs, final_values, gamma,
    rho_bar=1.0, c_bar=1.0, pg_rho_bar=1.0, lam=1.0,
):  # fmt: skip
    T, N = rewards.shape
    vs = np.zeros((T, N))
    pg = np.zeros((T, N))
    for i in range(N):
        ratio = [math.exp(tlogp[t, i] - blogp[t, i]) for t in range(T)]

        def ends(t, i=i):
            return bool(terms[t, i] or truncs[t, i] or t == T - 1)

        def next_value(t, i=i):
            # V of the state after step t: inside the episode, at a cut, at the end.
            if terms[t, i]:
                return 0.0
            if truncs[t, i]:
                return final_values[t, i]
            return bootstrap[i] if t == T - 1 else values[t + 1, i]

        def delta(t, i=i, ratio=ratio):
            disc = 0.0 if terms[t, i] else gamma
            return _clip(ratio[t], rho_bar) * (rewards[t, i] + disc * next_value(t) - values[t, i])

        for s in range(T):
            # v_s = V(x_s) + sum_{t>=s} gamma^{t-s} (prod_{s<=j<t} c_j) delta_t, in-episode.
            total, coeff, t = 0.0, 1.0, s
            while True:
                total += coeff * delta(t)
                if ends(t):
                    break
                coeff *= gamma * lam * _clip(ratio[t], c_bar)
                t += 1
            vs[s, i] = values[s, i] + total
        for s in range(T):
            disc = 0.0 if terms[s, i] else gamma
            v_next = next_value(s) if ends(s) else vs[s + 1, i]
            pg[s, i] = _clip(ratio[s], pg_rho_bar) * (rewards[s, i] + disc * v_next - values[s, i])
    return vs, pg


def _unroll(rng: np.random.Generator, T: int = 12, N: int = 5, log_ratio_scale: float = 1.0):
    terms = rng.random((T, N)) < 0.12
    truncs = (rng.random((T, N)) < 0.12) & ~terms
    return dict(
        behaviour_logp=rng.normal(-1.0, 0.5, (T, N)),
        target_logp=rng.normal(-1.0, 0.5, (T, N)) + rng.normal(0, log_ratio_scale, (T, N)),
        rewards=rng.normal(size=(T, N)),
        values=rng.normal(size=(T, N)),
        bootstrap_value=rng.normal(size=N),
        terminateds=terms,
        truncateds=truncs,
        final_values=rng.normal(size=(T, N)),
    )


def _ref(u, gamma, **kw):
    return reference_vtrace(
        u["behaviour_logp"], u["target_logp"], u["rewards"], u["values"], u["bootstrap_value"],
        u["terminateds"], u["truncateds"], u["final_values"], gamma, **kw,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("rho_bar", "c_bar", "pg_rho_bar", "lam"),
    [(1.0, 1.0, 1.0, 1.0), (2.0, 0.5, 1.5, 1.0), (None, None, None, 1.0), (1.0, 1.0, 1.0, 0.9)],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vtrace_matches_reference_with_episode_ends_inside_the_unroll(
    seed, rho_bar, c_bar, pg_rho_bar, lam
):
    rng = np.random.default_rng(seed)
    u = _unroll(rng)
    ratios = np.exp(u["target_logp"] - u["behaviour_logp"])
    # The draw must exercise both sides of the clip and both kinds of episode end.
    assert (ratios > 2.0).any() and (ratios < 0.5).any()
    assert u["terminateds"].any() and u["truncateds"].any()
    vs, pg = vtrace(
        **u, gamma=0.9, lam=lam, clip_rho_threshold=rho_bar, clip_c_threshold=c_bar,
        clip_pg_rho_threshold=pg_rho_bar,
    )  # fmt: skip
    ref_vs, ref_pg = _ref(u, 0.9, rho_bar=rho_bar, c_bar=c_bar, pg_rho_bar=pg_rho_bar, lam=lam)
    assert vs.dtype == np.float32 and vs.shape == (12, 5)
    np.testing.assert_allclose(vs, ref_vs, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pg, ref_pg, rtol=1e-4, atol=1e-4)


def test_vtrace_hand_computed():
    # gamma 0.5, V = [1, 2], V(x_2) = 4, r = [1, 1], pi/mu = [2, 0.5]:
    # rho = c = [1, 0.5]; delta_1 = 0.5 (1 + 2 - 2) = 0.5, v_1 = 2.5;
    # delta_0 = 1 + 1 - 1 = 1, v_0 = 1 + 1 + 0.5 * 1 * 0.5 = 2.25;
    # pg_0 = 1 * (1 + 0.5 * 2.5 - 1) = 1.25, pg_1 = 0.5 * (1 + 2 - 2) = 0.5.
    vs, pg = vtrace(
        behaviour_logp=np.log([[0.25], [0.5]]),
        target_logp=np.log([[0.5], [0.25]]),
        rewards=np.array([[1.0], [1.0]]),
        values=np.array([[1.0], [2.0]]),
        bootstrap_value=np.array([4.0]),
        terminateds=np.zeros((2, 1), bool),
        gamma=0.5,
    )
    np.testing.assert_allclose(vs[:, 0], [2.25, 2.5], rtol=1e-6)
    np.testing.assert_allclose(pg[:, 0], [1.25, 0.5], rtol=1e-6)


def _td1_returns(u, gamma):
    """Discounted return to each step's episode end, bootstrapped where it was cut."""
    rewards, terms, truncs = u["rewards"], u["terminateds"], u["truncateds"]
    T, N = rewards.shape
    out = np.zeros((T, N))
    for i in range(N):
        for s in range(T):
            g, disc, t = 0.0, 1.0, s
            while True:
                g += disc * rewards[t, i]
                disc *= gamma
                if terms[t, i]:
                    break
                if truncs[t, i]:
                    g += disc * u["final_values"][t, i]
                    break
                if t == T - 1:
                    g += disc * u["bootstrap_value"][i]
                    break
                t += 1
            out[s, i] = g
    return out


def test_on_policy_vtrace_is_the_bootstrapped_td1_return():
    u = _unroll(np.random.default_rng(7), T=15, N=4)
    u["target_logp"] = u["behaviour_logp"].copy()
    vs, pg = vtrace(**u, gamma=0.95)
    returns = _td1_returns(u, 0.95)
    np.testing.assert_allclose(vs, returns, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pg, returns - u["values"], rtol=1e-4, atol=1e-4)
    # ... and GAE with lambda = 1 agrees, given the same next-state values.
    next_values = np.concatenate([u["values"][1:], u["bootstrap_value"][None]])
    next_values = np.where(u["truncateds"], u["final_values"], next_values)
    adv, targets = compute_gae(
        rewards=u["rewards"], values=u["values"], next_values=next_values,
        terminateds=u["terminateds"], truncateds=u["truncateds"], gamma=0.95, lam=1.0,
    )  # fmt: skip
    np.testing.assert_allclose(vs, targets, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pg, adv, rtol=1e-4, atol=1e-4)


def test_nothing_leaks_back_across_a_truncation():
    u = _unroll(np.random.default_rng(3), T=10, N=1)
    u["terminateds"][:] = False
    u["truncateds"][:] = False
    u["truncateds"][4, 0] = True
    vs, pg = vtrace(**u, gamma=0.9)
    # Rewrite everything of the next episode: steps 0..4 must not move.
    v = {k: (x.copy() if isinstance(x, np.ndarray) else x) for k, x in u.items()}
    for key in ("rewards", "values", "behaviour_logp", "target_logp"):
        v[key][5:] += 10.0
    v["bootstrap_value"] += 10.0
    vs2, pg2 = vtrace(**v, gamma=0.9)
    np.testing.assert_array_equal(vs[:5], vs2[:5])
    np.testing.assert_array_equal(pg[:5], pg2[:5])
    # The truncated step bootstraps from V(final obs), not V(next episode's first obs).
    rho = min(1.0, math.exp(u["target_logp"][4, 0] - u["behaviour_logp"][4, 0]))
    want = u["values"][4, 0] + rho * (
        u["rewards"][4, 0] + 0.9 * u["final_values"][4, 0] - u["values"][4, 0]
    )
    assert vs[4, 0] == pytest.approx(want, rel=1e-5)


def test_extreme_log_ratios_stay_finite():
    u = _unroll(np.random.default_rng(4))
    u["target_logp"][0] += 500.0  # e^500 overflows float32 and float64 before the clip
    vs, pg = vtrace(**u, gamma=0.9)
    assert np.isfinite(vs).all() and np.isfinite(pg).all()


def test_vtrace_requires_final_values_with_truncations():
    u = _unroll(np.random.default_rng(5))
    del u["final_values"]
    with pytest.raises(ValueError, match="together"):
        vtrace(**u, gamma=0.9)


def test_torch_version_is_detached_and_keeps_dtype():
    u = _unroll(np.random.default_rng(6))
    t = {k: torch.as_tensor(v) for k, v in u.items()}  # float64 / bool tensors
    t["values"].requires_grad_(True)
    t["target_logp"].requires_grad_(True)
    vs, pg = vtrace_torch(**t, gamma=0.9)
    assert not vs.requires_grad and not pg.requires_grad
    assert vs.dtype == torch.float64 and pg.dtype == torch.float64
    ref_vs, ref_pg = _ref(u, 0.9)
    np.testing.assert_allclose(vs.numpy(), ref_vs, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(pg.numpy(), ref_pg, rtol=1e-10, atol=1e-10)


def test_without_truncations_argument():
    u = _unroll(np.random.default_rng(8))
    u["truncateds"][:] = False
    vs, pg = vtrace(**u, gamma=0.9)
    del u["truncateds"], u["final_values"]
    vs2, pg2 = vtrace(**u, gamma=0.9)
    np.testing.assert_array_equal(vs, vs2)
    np.testing.assert_array_equal(pg, pg2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vtrace_with_a_valid_mask_runs_along_each_columns_valid_rows(seed):
    # Multi-agent slots: an agent's moves are a column's valid rows, padding between
    # them; V-trace on the whole unroll must equal V-trace on each compacted column.
    rng = np.random.default_rng(seed)
    T, N = 30, 4
    u = _unroll(rng, T=T, N=N)
    valid = rng.random((T, N)) < 0.5
    valid[-1, 0] = False  # a column whose last rows are padding: it bootstraps after them
    vs, pg = vtrace(**u, gamma=0.9, lam=0.95, clip_rho_threshold=1.5, valid=valid)
    for n in range(N):
        keep = valid[:, n]
        column = {k: (v[keep, n, None] if k != "bootstrap_value" else v[n, None])
                  for k, v in u.items()}
        ref_vs, ref_pg = _ref(column, 0.9, rho_bar=1.5, lam=0.95)
        np.testing.assert_allclose(vs[keep, n], ref_vs[:, 0], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(pg[keep, n], ref_pg[:, 0], rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(vs[~keep, n], u["values"][~keep, n].astype(np.float32))
        assert (pg[~keep, n] == 0).all()
    # All rows valid: the same numbers as without the mask.
    full = vtrace(**u, gamma=0.9, valid=np.ones((T, N), bool))
    np.testing.assert_allclose(full[0], vtrace(**u, gamma=0.9)[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(full[1], vtrace(**u, gamma=0.9)[1], rtol=1e-6, atol=1e-6)
