"""The DQN loss: (double-)Q targets over n-step transitions, Huber or squared TD error.

A near-pure function of (online module, target module, batch tensors, settings) ->
(loss, metrics, TD errors); the learner owns the optimizer, clipping and target
updates. The target of the transition ``(s, a, R, s', d, gamma^k)`` built by
``rl.data.nstep.NStepAccumulator`` is

    y = R + gamma^k * (1 - d) * Q_target(s', argmax_a' Q_online(s', a'))   (double Q)
    y = R + gamma^k * (1 - d) * max_a' Q_target(s', a')                     (plain DQN)

where ``d`` is ``terminateds``: a truncated window still bootstraps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rl.data import columns as C

__all__ = ["DQNLossSettings", "dqn_loss", "q_targets"]


@dataclass(frozen=True, slots=True)
class DQNLossSettings:
    double_q: bool
    loss_fn: str  # "huber" (delta 1) or "mse"


@torch.no_grad()
def q_targets(online: nn.Module, target: nn.Module, *, rewards: torch.Tensor,
              next_obs: torch.Tensor, terminateds: torch.Tensor, discounts: torch.Tensor,
              double_q: bool) -> torch.Tensor:
    """Bootstrapped regression targets, detached.

    Args:
        online: the Q-network being trained (selects the next action with ``double_q``).
        target: the target Q-network (evaluates the next action).
        rewards: float ``[B]``, n-step discounted reward sums.
        next_obs: ``[B, *obs_shape]``, the bootstrap observations.
        terminateds: bool or float ``[B]``, the window ended in a terminal state.
        discounts: float ``[B]``, ``gamma^k`` for the k steps of each window.
        double_q: select with the online network and evaluate with the target.

    Returns:
        float ``[B]`` targets.
    """
    next_q_target = target(next_obs)
    if double_q:
        next_actions = online(next_obs).argmax(dim=-1, keepdim=True)
    else:
        next_actions = next_q_target.argmax(dim=-1, keepdim=True)
    next_q = next_q_target.gather(-1, next_actions).squeeze(-1)
    return rewards + discounts * (1.0 - terminateds.float()) * next_q


def dqn_loss(online: nn.Module, target: nn.Module, batch: dict[str, torch.Tensor],
             s: DQNLossSettings) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """Importance-weighted TD loss on one sampled batch.

    Args:
        online: the Q-network being trained, ``obs [B, ...] -> [B, A]``.
        target: the target Q-network, same layout.
        batch: tensors ``obs [B, ...]``, ``actions [B]`` (int), ``rewards [B]``,
            ``next_obs [B, ...]``, ``terminateds [B]``, ``discounts [B]`` and
            ``weights [B]`` (importance weights; ones for uniform replay).
        s: loss settings.

    Returns:
        ``(loss, metrics, td_errors)``: the scalar loss, detached scalar metrics
        (``loss``, ``q_mean``, ``target_mean``, ``td_error_mean`` = mean |TD|), and
        the detached TD errors ``Q(s, a) - y`` ``[B]`` for priority updates.
    """
    q_all = online(batch[C.OBS])
    q = q_all.gather(-1, batch[C.ACTIONS].long().unsqueeze(-1)).squeeze(-1)
    y = q_targets(online, target, rewards=batch[C.REWARDS], next_obs=batch[C.NEXT_OBS],
                  terminateds=batch[C.TERMINATEDS], discounts=batch[C.DISCOUNTS],
                  double_q=s.double_q)
    td = q - y
    if s.loss_fn == "huber":
        per_row = F.smooth_l1_loss(q, y, reduction="none", beta=1.0)
    else:
        per_row = 0.5 * td.pow(2)
    loss = (batch[C.WEIGHTS] * per_row).mean()
    td = td.detach()
    metrics = {
        "loss": loss.detach(),
        "q_mean": q.detach().mean(),
        "target_mean": y.mean(),
        "td_error_mean": td.abs().mean(),
    }
    return loss, metrics, td
