"""SAC's losses: soft Q targets, the twin-critic loss, the actor loss, the alpha loss.

Near-pure functions of tensors (and the modules they evaluate); the learner owns the
optimizers, target updates and devices. Haarnoja et al. 2018 (arXiv:1812.05905),
equations 5, 7 and 18, over the n-step transitions ``(s, a, R, s', d, gamma^k)`` of
``rl.data.nstep.NStepAccumulator``::

    y            = R + gamma^k * (1 - d) * (min_i Q'_i(s', a') - alpha * log pi(a'|s')),
                   a' ~ pi(.|s')                                       (soft Q target)
    critic_loss  = mean_B(w * sum_i 0.5 * (Q_i(s, a) - y)^2)
    actor_loss   = mean_B(alpha * log pi(a~|s) - min_i Q_i(s, a~)),    a~ ~ pi(.|s)
    alpha_loss   = -mean_B(log(alpha) * (log pi(a~|s) + target_entropy))

``d`` is ``terminateds`` (a truncated window still bootstraps), ``w`` the replay
importance weights (ones for uniform replay). Actions are in the actor's (-1, 1) scale.
"""

from __future__ import annotations

import torch

__all__ = ["actor_loss", "alpha_loss", "critic_loss", "soft_q_targets"]


def soft_q_targets(*, rewards: torch.Tensor, discounts: torch.Tensor,
                   terminateds: torch.Tensor, next_q1: torch.Tensor, next_q2: torch.Tensor,
                   next_log_prob: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
    """Soft Bellman targets ``[B]``, detached.

    Args:
        rewards: float ``[B]``, n-step discounted reward sums.
        discounts: float ``[B]``, ``gamma^k`` for the k steps of each window.
        terminateds: bool or float ``[B]``, the window ended in a terminal state.
        next_q1, next_q2: float ``[B]``, the target critics at ``(s', a')``.
        next_log_prob: float ``[B]``, ``log pi(a'|s')`` of the sampled next action.
        alpha: the temperature (scalar).
    """
    soft_value = torch.minimum(next_q1, next_q2) - alpha * next_log_prob
    return (rewards + discounts * (1.0 - terminateds.float()) * soft_value).detach()


def critic_loss(q1: torch.Tensor, q2: torch.Tensor, targets: torch.Tensor,
                weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, td_errors [B])``: both critics' importance-weighted squared errors and the
    mean of their TD errors ``Q_i(s, a) - y`` (detached; replay priorities)."""
    td1, td2 = q1 - targets, q2 - targets
    loss = (weights * 0.5 * (td1.pow(2) + td2.pow(2))).mean()
    return loss, (0.5 * (td1 + td2)).detach()


def actor_loss(log_prob: torch.Tensor, q1: torch.Tensor, q2: torch.Tensor,
               alpha: torch.Tensor | float) -> torch.Tensor:
    """The policy loss on reparameterised actions ``a~``: ``log_prob``, ``q1``, ``q2``
    float ``[B]`` (the critics evaluated at ``a~``, differentiable in ``a~`` only)."""
    return (alpha * log_prob - torch.minimum(q1, q2)).mean()


def alpha_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor,
               target_entropy: float) -> torch.Tensor:
    """The temperature loss: its gradient raises alpha while the policy's entropy
    ``-log_prob`` is below ``target_entropy`` and lowers it above."""
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()
