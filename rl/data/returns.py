"""Return estimators: GAE, n-step returns, V-trace. Pure functions, one home.

Every estimator is keyword-only and works on time-major arrays ``[T, N]`` (T steps
of N parallel envs). Terminations and truncations are separate inputs: a
terminated step has no future (its bootstrap value is 0), while a truncated step
(time limit, or the end of a rollout fragment) bootstraps from the value of its
true final observation.

- ``compute_gae``: advantages and value targets for PPO.
- ``nstep_returns``: n-step transitions for replay (DQN), computed at insert time.
- ``vtrace`` / ``vtrace_torch``: off-policy corrected targets for IMPALA.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:  # torch loads on the first V-trace call: rollout workers never need it
    import torch

__all__ = ["NStepReturns", "compute_gae", "nstep_returns", "vtrace", "vtrace_torch"]


def compute_gae(
    *,
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminateds: np.ndarray,
    truncateds: np.ndarray,
    gamma: float,
    lam: float,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation (Schulman et al. 2016, arXiv:1506.02438).

    Args:
        rewards: float ``[T, N]``, reward of the transition at step t.
        values: float ``[T, N]``, V(s_t) under the behaviour policy's value function.
        next_values: float ``[T, N]``, V(s_{t+1}) for the transition at t: the next
            step's value inside an episode, V(final obs) at a truncation, V(obs_T) for
            the last step of the fragment. Ignored where ``terminateds`` is set.
        terminateds: bool ``[T, N]``, the episode ended in a terminal state at t.
        truncateds: bool ``[T, N]``, the episode was cut at t (time limit); the
            recursion stops there but the step still bootstraps. The fragment's last
            row is always treated as a cut.
        gamma: discount factor.
        lam: GAE lambda.
        valid: bool ``[T, N]`` or None: rows that are transitions; the others (padding
            between an agent's turns) are skipped, so the recursion runs along each
            column's valid rows (their ``next_values`` must be the next valid row's
            value); their advantages are 0.

    Returns:
        ``(advantages, value_targets)``, both float32 ``[T, N]``, with
        ``value_targets = advantages + values``.
    """
    rewards = np.asarray(rewards, dtype=np.float32)
    values = np.asarray(values, dtype=np.float32)
    next_values = np.asarray(next_values, dtype=np.float32)
    if not (rewards.shape == values.shape == next_values.shape):
        raise ValueError(
            f"rewards {rewards.shape}, values {values.shape} and next_values "
            f"{next_values.shape} must have the same [T, N] shape"
        )
    nonterminal = 1.0 - np.asarray(terminateds, dtype=np.float32)
    cont = nonterminal * (1.0 - np.asarray(truncateds, dtype=np.float32))
    deltas = rewards + gamma * nonterminal * next_values - values
    advantages = np.empty_like(deltas)
    last = np.zeros(deltas.shape[1:], dtype=np.float32)
    glam = np.float32(gamma * lam)
    if valid is not None:
        valid = np.asarray(valid, dtype=np.bool_)
        for t in range(deltas.shape[0] - 1, -1, -1):
            last = np.where(valid[t], deltas[t] + glam * cont[t] * last, last)
            advantages[t] = np.where(valid[t], last, 0.0)
        return advantages, advantages + np.where(valid, values, 0.0)
    for t in range(deltas.shape[0] - 1, -1, -1):
        last = deltas[t] + glam * cont[t] * last
        advantages[t] = last
    return advantages, advantages + values


class NStepReturns(NamedTuple):
    """n-step transitions for every start step of a ``[T, N]`` fragment.

    The transition that starts at ``(t, i)`` covers ``k`` steps, ``1 <= k <= n``, and
    its Q-learning target is
    ``returns + discounts * (1 - terminateds) * max_a Q(next_obs[next_index, i], a)``.

    Attributes:
        returns: float32 ``[T, N]``, ``sum_{j<k} gamma^j r_{t+j}``.
        discounts: float32 ``[T, N]``, ``gamma^k``, the discount of the bootstrap.
        terminateds: bool ``[T, N]``, the window ended in a terminal state (no
            bootstrap).
        next_index: int64 ``[T, N]``, ``t + k - 1``: the step whose next observation
            (the true final observation at an episode end) is the bootstrap state.
        complete: bool ``[T, N]``, the window was closed by ``n`` steps or by the end
            of its episode. False where the fragment ended first: such a window is a
            valid shorter transition (it bootstraps from the fragment's last next
            observation) but would grow to ``n`` steps with the next fragment.
    """

    returns: np.ndarray
    discounts: np.ndarray
    terminateds: np.ndarray
    next_index: np.ndarray
    complete: np.ndarray


def nstep_returns(
    *,
    rewards: np.ndarray,
    terminateds: np.ndarray,
    truncateds: np.ndarray,
    gamma: float,
    n: int,
) -> NStepReturns:
    """n-step discounted returns that stop at episode ends (Sutton & Barto, ch. 7).

    For each start ``t`` the window runs over steps ``t .. t+k-1``, where ``k`` is
    ``n``, or fewer if a step in the window terminated or was truncated, or if the
    fragment ended. A terminated window does not bootstrap; a truncated one (time
    limit, fragment end) bootstraps from the true next observation of its last step
    with discount ``gamma^k``. Windows never cross an episode boundary.

    Vectorised over ``[T, N]`` with a loop over the ``n`` window offsets only, so it
    is cheap enough to run at replay-insert time (see ``rl.data.replay``).

    Args:
        rewards: float ``[T, N]``, reward of the transition at step t.
        terminateds: bool ``[T, N]``, the episode ended in a terminal state at t.
        truncateds: bool ``[T, N]``, the episode was cut at t (time limit).
        gamma: discount factor.
        n: the largest number of steps per transition, ``n >= 1``.

    Returns:
        An ``NStepReturns`` of ``[T, N]`` arrays, one transition per start step.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rewards = np.asarray(rewards, dtype=np.float64)
    terminateds = np.asarray(terminateds, dtype=bool)
    truncateds = np.asarray(truncateds, dtype=bool)
    if not (rewards.shape == terminateds.shape == truncateds.shape) or rewards.ndim != 2:
        raise ValueError(
            f"rewards {rewards.shape}, terminateds {terminateds.shape} and truncateds "
            f"{truncateds.shape} must have the same [T, N] shape"
        )
    num_steps = rewards.shape[0]
    continues = ~(terminateds | truncateds)
    gamma_continues = gamma * continues  # float64 [T, N]: the factor to go on past step t
    returns = np.zeros(rewards.shape, dtype=np.float64)
    weight = np.ones(rewards.shape, dtype=np.float64)  # gamma^k while open, then 0
    lengths = np.zeros(rewards.shape, dtype=np.int64)
    window_terminated = np.zeros(rewards.shape, dtype=bool)
    open_ = np.ones(rewards.shape, dtype=bool)  # the window may still take step t+k
    for k in range(min(n, num_steps)):
        # Offset k reads row t+k for starts t < T-k; later starts ran off the end.
        # In-place ops on views: this runs at every replay insert.
        rows = slice(0, num_steps - k)
        active = open_[rows]
        returns[rows] += weight[rows] * rewards[k:]
        lengths[rows] += active
        window_terminated[rows] |= active & terminateds[k:]
        active &= continues[k:]
        weight[rows] *= gamma_continues[k:]
    # A window still open after k steps is complete if k == n, else the fragment ended.
    complete = ~open_ | (lengths == n)
    next_index = np.arange(num_steps)[:, None] + lengths - 1
    return NStepReturns(
        returns=returns.astype(np.float32),
        discounts=np.power(gamma, lengths, dtype=np.float32),
        terminateds=window_terminated,
        next_index=next_index,
        complete=complete,
    )


def vtrace_torch(
    *,
    behaviour_logp: torch.Tensor,
    target_logp: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    terminateds: torch.Tensor,
    truncateds: torch.Tensor | None = None,
    final_values: torch.Tensor | None = None,
    gamma: float,
    lam: float = 1.0,
    clip_rho_threshold: float | None = 1.0,
    clip_c_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """V-trace targets and policy-gradient advantages (Espeholt et al. 2018, arXiv:1802.01561).

    With ``log_rho_t = target_logp_t - behaviour_logp_t``,
    ``rho_t = min(rho_bar, e^log_rho_t)``, ``c_t = lam * min(c_bar, e^log_rho_t)``
    and ``gamma_t = gamma * (1 - terminated_t)``::

        delta_t = rho_t (r_t + gamma_t V(x_{t+1}) - V(x_t))
        v_t - V(x_t) = delta_t + gamma_t c_t (v_{t+1} - V(x_{t+1}))     (reverse scan)
        pg_adv_t = min(rho_pg_bar, e^log_rho_t) (r_t + gamma_t v_{t+1} - V(x_t))

    Episode boundaries inside the unroll: the next state of step t is ``x_{t+1}``
    inside an episode; at the last row it is the state whose value is
    ``bootstrap_value``; at a truncated step it is the true final observation, whose
    value the caller passes in ``final_values[t]``. The scan is cut after a
    terminated or truncated step, so ``v_{t+1} = V(x_{t+1})`` there and nothing of
    the next episode leaks back. A truncated step still bootstraps: only
    ``terminateds`` zeroes the discount.

    All math runs on the inputs' device without autograd; the outputs are
    detached, as both are regression / advantage targets.

    Args:
        behaviour_logp: float ``[T, N]``, log mu(a_t | x_t) of the acting policy.
        target_logp: float ``[T, N]``, log pi(a_t | x_t) of the learner's policy.
        rewards: float ``[T, N]``, reward of the transition at step t.
        values: float ``[T, N]``, V(x_t) from the learner's value function.
        bootstrap_value: float ``[N]``, V(x_T), the value of the observation after
            the unroll's last step (ignored for envs whose last step terminated or
            was truncated).
        terminateds: bool or float ``[T, N]``, the episode ended in a terminal state
            at step t.
        truncateds: bool or float ``[T, N]`` or None, the episode was cut at step t
            (time limit). None means no truncation inside the unroll.
        final_values: float ``[T, N]`` or None, V(final observation of step t); only
            read where ``truncateds`` is set. Required with ``truncateds``.
        gamma: discount factor.
        lam: the lambda of the traces, scales ``c_t`` (1.0 in the paper).
        clip_rho_threshold: rho_bar, clips the importance weight of the TD error;
            None for no clipping.
        clip_c_threshold: c_bar, clips the trace-cutting coefficient; None for no
            clipping.
        clip_pg_rho_threshold: rho_bar of the policy-gradient advantage; None for
            no clipping.
        valid: bool ``[T, N]`` or None: rows that are transitions; the others (a
            multi-agent slot's padding, between an agent's turns or while it is not in
            the game) are skipped, so the scan runs along each column's valid rows, as
            if they were compacted: the next state of a valid row is the next valid
            row's, and ``bootstrap_value`` is the value after the column's *last valid*
            row. Skipped rows get ``vs = V(x_t)`` and a zero advantage.

    Returns:
        ``(vs, pg_advantages)``, both ``[T, N]`` in ``values``' dtype, detached: the
        V-trace value targets ``v_t`` and the advantages for the policy loss.
    """
    import torch

    if (truncateds is None) != (final_values is None):
        raise ValueError("truncateds and final_values must be given together")
    with torch.no_grad():
        values = values.detach()
        dtype = values.dtype

        def as_float(x: torch.Tensor) -> torch.Tensor:
            return x.detach().to(dtype=dtype, device=values.device)

        rewards = as_float(rewards)
        if rewards.shape != values.shape or bootstrap_value.shape != values.shape[1:]:
            raise ValueError(
                f"rewards {tuple(rewards.shape)} and values {tuple(values.shape)} must be "
                f"[T, N] and bootstrap_value {tuple(bootstrap_value.shape)} must be [N]"
            )
        log_rhos = as_float(target_logp) - as_float(behaviour_logp)
        discounts = gamma * (1.0 - as_float(terminateds))

        next_values = torch.cat([values[1:], as_float(bootstrap_value)[None]], dim=0)
        if truncateds is not None:
            truncated = as_float(truncateds)
            # where, not arithmetic: entries of final_values off truncations may be junk.
            next_values = torch.where(truncated > 0, as_float(final_values), next_values)
            # The scan continues only from a step to the next step of the same episode.
            cont = (1.0 - truncated) * discounts
        else:
            cont = discounts

        def clipped(threshold: float | None) -> torch.Tensor:
            # Clip in log space: exp of a large log-ratio would overflow before the min.
            if threshold is None:
                return torch.exp(log_rhos)
            return torch.exp(torch.clamp(log_rhos, max=float(np.log(threshold))))

        rhos = clipped(clip_rho_threshold)
        cs = lam * clipped(clip_c_threshold)
        if valid is not None:
            return _vtrace_valid(valid.to(device=values.device, dtype=torch.bool), rewards,
                                 values, as_float(bootstrap_value), discounts,
                                 None if truncateds is None else truncated,
                                 None if final_values is None else as_float(final_values),
                                 rhos, cs, clipped(clip_pg_rho_threshold))
        deltas = rhos * (rewards + discounts * next_values - values)

        # The scan is sequential in t: one fused multiply-add over the N envs per step.
        coeffs = cont * cs
        acc = torch.zeros_like(values[0])
        vs_minus_v = torch.empty_like(values)
        for t in range(values.shape[0] - 1, -1, -1):
            acc = torch.addcmul(deltas[t], coeffs[t], acc)
            vs_minus_v[t] = acc
        vs = values + vs_minus_v

        # v_{t+1} of step t's own episode: V(next state) plus its correction, which is
        # zero past a truncation (final obs) and after the last row (bootstrap).
        next_correction = torch.zeros_like(vs_minus_v)
        next_correction[:-1] = vs_minus_v[1:]
        if truncateds is not None:
            next_correction = next_correction * (1.0 - truncated)
        next_vs = next_values + next_correction
        pg_advantages = clipped(clip_pg_rho_threshold) * (rewards + discounts * next_vs - values)
    return vs, pg_advantages


def _vtrace_valid(valid: torch.Tensor, rewards: torch.Tensor, values: torch.Tensor,
                  bootstrap_value: torch.Tensor, discounts: torch.Tensor,
                  truncated: torch.Tensor | None, final_values: torch.Tensor | None,
                  rhos: torch.Tensor, cs: torch.Tensor,
                  pg_rhos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``vtrace_torch``'s scan along each column's valid rows (see its ``valid``).

    One reverse pass carries, per column, the value of the next valid row (the
    bootstrap value past the last one) and its correction ``v - V``; a skipped row
    leaves both as they are."""
    import torch

    next_v = bootstrap_value.clone()
    acc = torch.zeros_like(next_v)
    vs_minus_v = torch.zeros_like(values)
    next_vs = torch.empty_like(values)
    for t in range(values.shape[0] - 1, -1, -1):
        nv, correction, cont = next_v, acc, discounts[t]
        if truncated is not None:
            cut = truncated[t] > 0
            # where, not arithmetic: entries of final_values off truncations may be junk.
            nv = torch.where(cut, final_values[t], nv)
            correction = torch.where(cut, torch.zeros_like(acc), acc)
            cont = cont * (1.0 - truncated[t])
        step = rhos[t] * (rewards[t] + discounts[t] * nv - values[t]) + cont * cs[t] * acc
        vs_minus_v[t] = torch.where(valid[t], step, vs_minus_v[t])
        next_vs[t] = nv + correction
        acc = torch.where(valid[t], step, acc)
        next_v = torch.where(valid[t], values[t], next_v)
    pg_advantages = pg_rhos * (rewards + discounts * next_vs - values)
    return values + vs_minus_v, torch.where(valid, pg_advantages, torch.zeros_like(values))


def vtrace(
    *,
    behaviour_logp: np.ndarray,
    target_logp: np.ndarray,
    rewards: np.ndarray,
    values: np.ndarray,
    bootstrap_value: np.ndarray,
    terminateds: np.ndarray,
    truncateds: np.ndarray | None = None,
    final_values: np.ndarray | None = None,
    gamma: float,
    lam: float = 1.0,
    clip_rho_threshold: float | None = 1.0,
    clip_c_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """V-trace on numpy arrays: ``vtrace_torch`` on zero-copy CPU tensors.

    Same arguments and math as ``vtrace_torch`` (one implementation, so the two
    cannot drift apart); float inputs are cast to float32.

    Returns:
        ``(vs, pg_advantages)``, both float32 ``[T, N]`` numpy arrays.
    """
    import torch


    def tensor(x: np.ndarray | None) -> torch.Tensor | None:
        if x is None:
            return None
        x = np.asarray(x)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    vs, pg_advantages = vtrace_torch(
        behaviour_logp=tensor(behaviour_logp),
        target_logp=tensor(target_logp),
        rewards=tensor(rewards),
        values=tensor(values),
        bootstrap_value=tensor(bootstrap_value),
        terminateds=tensor(terminateds),
        truncateds=tensor(truncateds),
        final_values=tensor(final_values),
        gamma=gamma,
        lam=lam,
        clip_rho_threshold=clip_rho_threshold,
        clip_c_threshold=clip_c_threshold,
        clip_pg_rho_threshold=clip_pg_rho_threshold,
        valid=None if valid is None else torch.from_numpy(np.asarray(valid, dtype=np.bool_)),
    )
    return vs.numpy(), pg_advantages.numpy()
