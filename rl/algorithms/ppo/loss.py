"""The PPO loss: clipped surrogate + (optionally clipped) value loss - entropy + KL penalty.

A pure function of (module, action distribution, minibatch tensors, settings) ->
(loss, metrics); the learner owns optimisation. The module is any actor-critic model
of the model contract (``forward(obs) -> (dist_inputs, values)``). Metric names follow the PPO implementation details:
policy_loss, vf_loss, entropy, approx_kl (``(ratio - 1) - log ratio``), clip_frac.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rl.data import columns as C
from rl.policies import DistributionSpec

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
            ``behaviour_logits [B, D]`` when ``s.kl_coeff > 0``.
        s: loss settings.

    Returns:
        ``(loss, metrics)``; metrics are detached scalars.
    """
    dist_inputs, values = module(mb[C.OBS])
    dist = dist_spec(dist_inputs)
    logp = dist.log_prob(mb[C.ACTIONS])
    log_ratio = logp - mb[C.LOGP]
    ratio = log_ratio.exp()

    adv = mb[C.ADVANTAGES]
    if s.normalize_advantages and adv.numel() > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    surrogate = torch.min(ratio * adv, ratio.clamp(1 - s.clip_param, 1 + s.clip_param) * adv)
    policy_loss = -surrogate.mean()

    targets = mb[C.VALUE_TARGETS]
    vf_err = (values - targets).pow(2)
    if s.vf_clip_param is not None:
        clipped = mb[C.VF_PREDS] + (values - mb[C.VF_PREDS]).clamp(-s.vf_clip_param, s.vf_clip_param)
        vf_err = torch.max(vf_err, (clipped - targets).pow(2))
    vf_loss = 0.5 * vf_err.mean()

    entropy = dist.entropy().mean()
    loss = policy_loss + s.vf_loss_coeff * vf_loss - s.entropy_coeff * entropy

    metrics = {}
    if s.kl_coeff > 0:
        old = dist_spec(mb[C.BEHAVIOUR_LOGITS])
        kl = old.kl(dist).mean()
        loss = loss + s.kl_coeff * kl
        metrics["kl"] = kl.detach()
    with torch.no_grad():
        metrics.update(
            policy_loss=policy_loss.detach(),
            vf_loss=vf_loss.detach(),
            entropy=entropy.detach(),
            approx_kl=((ratio - 1) - log_ratio).mean(),
            clip_frac=((ratio - 1).abs() > s.clip_param).float().mean(),
        )
    return loss, metrics
