"""The IMPALA loss: V-trace policy gradient + value regression to v_s - entropy bonus.

A pure function of (module, action distribution, time-major batch tensors, settings)
-> (loss, metrics); the learner owns the optimizer, clipping and device. The module is
any actor-critic model of the model contract. The learner's module recomputes
the target policy's logits and the values over the whole unroll, including the
bootstrap value V(x_T) and, at truncations inside the unroll, V(final obs); V-trace
(``rl.data.returns.vtrace_torch``) then runs on the same device (Espeholt et al.
2018, arXiv:1802.01561, eq. 1 and sec. 4.2)::

    loss = -mean(log pi(a_s|x_s) * pg_adv_s)
           + vf_loss_coeff * 0.5 * mean((v_s - V(x_s))^2)
           - entropy_coeff * mean(H(pi(.|x_s)))

Means rather than the paper's sums, so that the learning rate does not depend on
the batch size; in a multi-agent batch, means over the rows that are not padding.

A recurrent model runs over each unroll from the state the worker had at the unroll's
start (``state_in_<k>`` row 0), from its initial state again where an episode starts
(``rl.policies.recurrent.unroll``); V(x_T) and V(final obs) come from the state the
target model reaches there (``states_after``). A model that reads the previous action
and reward gets the worker's ``prev_actions`` / ``prev_rewards`` columns, and, for
V(x_T) and V(final obs), the action and reward of the row before.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rl.data import columns as C
from rl.data.returns import vtrace_torch
from rl.metrics import explained_variance
from rl.policies import DistributionSpec
from rl.policies.recurrent import prev_inputs, states_after, unroll

__all__ = ["BOOTSTRAP_OBS", "FINAL_INDEX", "FINAL_OBS", "IMPALALossSettings", "impala_loss"]

# Learner-side inputs derived from the fragments' ``next_obs`` (see IMPALALearner).
BOOTSTRAP_OBS = "bootstrap_obs"
FINAL_OBS = "final_obs"
FINAL_INDEX = "final_index"


@dataclass(frozen=True, slots=True)
class IMPALALossSettings:
    gamma: float
    vf_loss_coeff: float
    entropy_coeff: float
    clip_rho_threshold: float
    clip_c_threshold: float
    clip_pg_rho_threshold: float
    vtrace_lambda: float = 1.0


def impala_loss(module: torch.nn.Module, dist_spec: DistributionSpec,
                batch: dict[str, torch.Tensor],
                s: IMPALALossSettings) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """IMPALA's V-trace actor-critic loss on one time-major batch of unrolls.

    Args:
        module: the actor-critic model being trained (the target policy pi).
        dist_spec: the action space's distribution (``dist_inputs`` -> distribution).
        batch: tensors on the module's device: ``obs [T, N, ...]``, ``actions [T, N,
            ...]``, ``logp [T, N]`` (behaviour log mu(a_t|x_t)), ``rewards [T, N]``,
            ``terminateds [T, N]`` and ``truncateds [T, N]`` (float 0/1),
            ``bootstrap_obs [N, ...]`` (the observation after each env's last step),
            ``final_obs [K, ...]`` and ``final_index [K]`` (int64 flat ``t * N + n``):
            the true final observations of the K truncated steps. Multi-agent: also
            ``valid [T, N]`` (bool, False on padding rows), then V-trace runs along
            each column's valid rows (``bootstrap_obs`` is the observation after a
            column's last valid row) and padding counts in no term or metric. Recurrent: also
            ``state_in_<k> [1, N, ...]`` and, for a model that reads them,
            ``prev_actions`` / ``prev_rewards`` ``[T, N, ...]``.
        s: loss settings.

    Returns:
        ``(loss, metrics)``; metrics are detached scalars.
    """
    rewards = batch[C.REWARDS]
    T, N = rewards.shape
    obs = batch[C.OBS]
    valid = batch.get(C.VALID)
    recurrent = C.state_column(0) in batch
    if recurrent:
        inner = getattr(module, "module", module)  # DDP's wrapped model, for the targets
        start = tuple(batch[C.state_column(k)][0] for k in range(_num_states(batch)))
        initial = tuple(s[:1] for s in inner.initial_state(1))
        initial = tuple(s.to(obs.device) for s in initial)
        starts = torch.zeros(T, N, dtype=torch.bool, device=obs.device)
        starts[1:] = (batch[C.TERMINATEDS] + batch[C.TRUNCATEDS])[:-1] > 0
        prev = prev_inputs(batch)
        dist_inputs, values_flat = unroll(module, obs, start, initial, starts, prev)
    else:
        dist_inputs, values_flat = module(obs.reshape(T * N, *obs.shape[2:]))
    dist = dist_spec(dist_inputs)
    actions = batch[C.ACTIONS]
    target_logp_flat = dist.log_prob(actions.reshape(T * N, *actions.shape[2:]))
    target_logp = target_logp_flat.reshape(T, N)
    values = values_flat.reshape(T, N)

    with torch.no_grad():
        # Values of states outside the unroll's rows: targets only, never trained on.
        extra = torch.cat([batch[BOOTSTRAP_OBS], batch[FINAL_OBS]], dim=0)
        if recurrent:  # from the state after the last row / the truncated step
            after = states_after(inner, obs, start, initial, starts, prev)
            t_idx, n_idx = batch[FINAL_INDEX] // N, batch[FINAL_INDEX] % N
            state = tuple(torch.cat([after[T - 1][k]] + [after[int(t)][k][int(n)][None]
                                                        for t, n in zip(t_idx, n_idx)])
                          for k in range(len(start)))
            # After row t the previous action and reward are row t's own.
            last = {C.PREV_ACTIONS: batch[C.ACTIONS], C.PREV_REWARDS: rewards}
            extra_prev = {k: torch.cat([last[k][T - 1], last[k][t_idx, n_idx]])
                          .to(torch.float32)[:, None] for k in prev}
            extra_values = inner(extra[:, None], state, **extra_prev)[1][:, 0]
        else:
            extra_values = module(extra)[1]
        final_values = torch.zeros(T * N, dtype=values.dtype, device=values.device)
        final_values[batch[FINAL_INDEX]] = extra_values[N:]

    vs, pg_adv = vtrace_torch(
        behaviour_logp=batch[C.LOGP],
        target_logp=target_logp,
        rewards=rewards,
        values=values,
        bootstrap_value=extra_values[:N],
        terminateds=batch[C.TERMINATEDS],
        truncateds=batch[C.TRUNCATEDS],
        final_values=final_values.reshape(T, N),
        gamma=s.gamma,
        lam=s.vtrace_lambda,
        clip_rho_threshold=s.clip_rho_threshold,
        clip_c_threshold=s.clip_c_threshold,
        clip_pg_rho_threshold=s.clip_pg_rho_threshold,
        valid=valid,
    )
    if valid is None:
        def mean(x: torch.Tensor) -> torch.Tensor:
            return x.mean()
    else:  # multi-agent padding rows count in no term and no statistic
        weight = valid.to(values.dtype)
        count = weight.sum().clamp(min=1.0)

        def mean(x: torch.Tensor) -> torch.Tensor:
            return (x.reshape(T, N) * weight).sum() / count
    policy_loss = -mean(target_logp * pg_adv)
    vf_loss = 0.5 * mean((vs - values).pow(2))
    entropy = mean(dist.entropy())
    loss = policy_loss + s.vf_loss_coeff * vf_loss - s.entropy_coeff * entropy

    with torch.no_grad():
        log_rho = target_logp - batch[C.LOGP]
        rows = (values, vs) if valid is None else (values[valid], vs[valid])
        metrics = {
            "policy_loss": policy_loss.detach(),
            "vf_loss": vf_loss.detach(),
            "entropy": entropy.detach(),
            # E_mu[log mu - log pi]: a sampled estimate of KL(mu || pi).
            "approx_kl": mean(-log_rho),
            "mean_is_ratio": mean(log_rho.exp()),
            "rho_clip_frac": mean((log_rho.exp() > s.clip_rho_threshold).float()),
            "explained_variance": explained_variance(*rows),
            "value_mean": mean(values),
        }
    return loss, metrics


def _num_states(batch: dict[str, torch.Tensor]) -> int:
    return sum(1 for k in batch if k.startswith(C.STATE_IN))
