"""The PPO loss: clipped surrogate + (optionally clipped) value loss - entropy + KL penalty.

A pure function of (module, action distribution, minibatch tensors, settings) ->
(loss, metrics); the learner owns optimisation. The module is any actor-critic model
of the model contract (``forward(obs) -> (dist_inputs, values)``), or a recurrent one
(``forward(obs, state) -> (dist_inputs, values, state)``) on a minibatch of padded
sequences ``[S, L, ...]`` with their start states, where every term is a mean over the
rows ``seq_mask`` marks as real steps. Metric names follow the PPO implementation details:
policy_loss, vf_loss, entropy, approx_kl (``(ratio - 1) - log ratio``), clip_frac.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rl.data import columns as C
from rl.policies import DistributionSpec
from rl.policies.recurrent import prev_inputs

__all__ = ["PPOLossSettings", "ppo_loss"]


@dataclass(frozen=True, slots=True)
class PPOLossSettings:
    clip_param: float
    vf_clip_param: float | None
    vf_loss_coeff: float
    entropy_coeff: float
    kl_coeff: float
    normalize_advantages: bool


def ppo_loss(module: torch.nn.Module, dist_spec: DistributionSpec, mb: dict[str, torch.Tensor],
             s: PPOLossSettings) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO-clip loss on one minibatch.

    Args:
        module: the actor-critic model being trained.
        dist_spec: the action space's distribution (``dist_inputs`` -> distribution).
        mb: tensors ``obs [B, ...]``, ``actions [B, ...]``, ``logp [B]`` (behaviour),
            ``vf_preds [B]``, ``advantages [B]``, ``value_targets [B]``, and
            ``behaviour_logits [B, D]`` when ``s.kl_coeff > 0``. Recurrent: each of
            those ``[S, L, ...]``, plus ``state_in_<k> [S, ...]`` and ``seq_mask [S, L]`` (and
            ``prev_actions`` / ``prev_rewards`` ``[S, L, ...]`` for a model that reads them).
        s: loss settings.

    Returns:
        ``(loss, metrics)``; metrics are detached scalars.
    """
    mask = None
    if C.SEQ_MASK in mb:
        mb, dist_inputs, values, mask = recurrent_forward(module, mb)
    else:
        dist_inputs, values = module(mb[C.OBS])

    def mean(x: torch.Tensor) -> torch.Tensor:
        return x.mean() if mask is None else (x * mask).sum() / mask.sum().clamp_min(1.0)

    dist = dist_spec(dist_inputs)
    logp = dist.log_prob(mb[C.ACTIONS])
    log_ratio = logp - mb[C.LOGP]
    ratio = log_ratio.exp()

    adv = mb[C.ADVANTAGES]
    count = adv.numel() if mask is None else float(mask.sum())
    if s.normalize_advantages and count > 1:
        if mask is None:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        else:  # the unbiased std of the real rows
            centred = adv - mean(adv)
            std = (mean(centred.pow(2)) * count / (count - 1)).sqrt()
            adv = centred / (std + 1e-8)
    surrogate = torch.min(ratio * adv, ratio.clamp(1 - s.clip_param, 1 + s.clip_param) * adv)
    policy_loss = -mean(surrogate)

    targets = mb[C.VALUE_TARGETS]
    vf_err = (values - targets).pow(2)
    if s.vf_clip_param is not None:
        clipped = mb[C.VF_PREDS] + (values - mb[C.VF_PREDS]).clamp(-s.vf_clip_param, s.vf_clip_param)
        vf_err = torch.max(vf_err, (clipped - targets).pow(2))
    vf_loss = 0.5 * mean(vf_err)

    entropy = mean(dist.entropy())
    loss = policy_loss + s.vf_loss_coeff * vf_loss - s.entropy_coeff * entropy

    metrics = {}
    if s.kl_coeff > 0:
        old = dist_spec(mb[C.BEHAVIOUR_LOGITS])
        kl = mean(old.kl(dist))
        loss = loss + s.kl_coeff * kl
        metrics["kl"] = kl.detach()
    with torch.no_grad():
        metrics.update(
            policy_loss=policy_loss.detach(),
            vf_loss=vf_loss.detach(),
            entropy=entropy.detach(),
            approx_kl=mean((ratio - 1) - log_ratio),
            clip_frac=mean(((ratio - 1).abs() > s.clip_param).float()),
        )
    return loss, metrics


def recurrent_forward(module: torch.nn.Module, mb: dict[str, torch.Tensor]):
    """A recurrent model over a minibatch of sequences, flattened to rows.

    Returns:
        ``(rows, dist_inputs [S*L, D], values [S*L], mask [S*L])``: ``rows`` holds the
        per-step columns of ``mb`` flattened to ``[S*L, ...]``.
    """
    state = tuple(mb[C.state_column(k)] for k in range(_num_states(mb)))
    dist_inputs, values, _ = module(mb[C.OBS], state, **prev_inputs(mb))
    S, L = mb[C.SEQ_MASK].shape
    rows = {k: v.reshape(S * L, *v.shape[2:]) for k, v in mb.items()
            if not k.startswith(C.STATE_IN)}
    return (rows, dist_inputs.reshape(S * L, -1), values.reshape(S * L),
            rows.pop(C.SEQ_MASK))


def _num_states(mb: dict[str, torch.Tensor]) -> int:
    return sum(1 for k in mb if k.startswith(C.STATE_IN))
