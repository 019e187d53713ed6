"""SACLearner: the actor, twin critics and their targets, the temperature; three optimizers.

The actor is ``self.module`` (the model kind ``squashed_gaussian``): its flat weights
are all the workers need, so ``get_weights`` publishes the actor alone. The critics are
two models of the ``critic`` contract (``forward(obs, actions) -> q [B]``) built from the
critic's ``ModelSpec``; their Polyak-averaged targets, the critics' and the
temperature's optimizers and ``log_alpha`` are saved with the learner's state. With
``num_learners > 1`` the actor and the critics train under DDP, and the temperature's
gradient is averaged over the ranks by hand (it is one scalar, not a module).

One ``update`` (Haarnoja et al. 2018, algorithm 1): critic step on the soft Q target,
actor step on reparameterised actions with the critics frozen, alpha step, then the
targets move by ``tau``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from rl.algorithms.sac.loss import actor_loss, alpha_loss, critic_loss, soft_q_targets
from rl.data import SampleBatch
from rl.data import columns as C
from rl.learner import Learner
from rl.learner.optim import Adam
from rl.policies import ModelSpec

__all__ = ["TD_ERRORS", "SACLearner", "TwinCritics"]

_COLUMNS = (C.OBS, C.ACTIONS, C.REWARDS, C.NEXT_OBS, C.TERMINATEDS, C.DISCOUNTS, C.WEIGHTS)

#: Key of ``update()``'s output with the per-row TD errors (numpy, for priorities).
TD_ERRORS = C.TD_ERRORS


class TwinCritics(nn.Module):
    """Two independent critics: ``forward(obs, actions) -> (q1 [B], q2 [B])``."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.q1, self.q2 = spec.build(), spec.build()

    def forward(self, obs: torch.Tensor, actions: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q1(obs, actions), self.q2(obs, actions)


def _adam(params, lr: float) -> Adam:
    # Fused Adam: one kernel per step instead of ~10 per parameter, most of an update's
    # cost for SAC's small networks (rl's, which does not import torch._dynamo).
    return Adam(params, lr=lr, fused=True)


class SACLearner(Learner):
    """Trains SAC's actor, critics and temperature on batches sampled from replay.

    Args:
        model: the actor's ``ModelSpec`` (kind ``squashed_gaussian``).
        config: the ``SACConfig``.
        device: torch device string.
        critic: the critics' ``ModelSpec`` (kind ``critic``); two are built.
    """

    def __init__(self, model: ModelSpec, config, device: str = "cpu", *, critic: ModelSpec):
        super().__init__(model, config, device)
        self.dist_spec = model.dist_spec
        self.actor = self.module  # stays the plain module when DDP wraps self.module
        self.critics = TwinCritics(critic).to(self.device)
        self.critic_net = self.critics  # the plain twin critics (DDP wraps self.critics)
        self.target = copy.deepcopy(self.critics)
        self.target.requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(config.initial_alpha), device=self.device,
                                      requires_grad=True)
        self.critic_optimizer = _adam(self.critics.parameters(), config.critic_lr)
        self.alpha_optimizer = Adam([self.log_alpha], lr=config.alpha_lr)
        te = config.target_entropy
        self.target_entropy = -float(self.dist_spec.action_dim) if te == "auto" else float(te)

    def make_optimizer(self) -> Adam:
        return _adam(self.module.parameters(), self.config.actor_lr)

    def distribute(self, world_size: int) -> None:
        from rl.learner.distributed import wrap_module

        super().distribute(world_size)
        self.critics = wrap_module(self.critics, self.device)

    def update(self, batch: SampleBatch, **hyper: Any) -> dict[str, Any]:
        """One SAC update on ``batch`` (columns as in ``rl.algorithms.sac.loss``).

        Returns:
            Scalar metrics (``critic_loss``, ``actor_loss``, ``alpha_loss``, ``alpha``,
            ``q_mean``, ``target_mean``, ``entropy``, ``critic_grad_norm``,
            ``actor_grad_norm``) and ``td_errors``: float32 ``[B]`` numpy array.
        """
        t = batch.to_torch(self.device, keys=_COLUMNS)
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad():
            next_actions, next_logp = self.dist_spec(
                self.actor(t[C.NEXT_OBS])).rsample_with_log_prob()
            next_q1, next_q2 = self.target(t[C.NEXT_OBS], next_actions)
            y = soft_q_targets(rewards=t[C.REWARDS], discounts=t[C.DISCOUNTS],
                               terminateds=t[C.TERMINATEDS], next_q1=next_q1,
                               next_q2=next_q2, next_log_prob=next_logp, alpha=alpha)
        q1, q2 = self.critics(t[C.OBS], t[C.ACTIONS])
        c_loss, td = critic_loss(q1, q2, y, t[C.WEIGHTS])
        critic_norm = self.apply_loss(c_loss, list(self.critic_net.parameters()),
                                      self.critic_optimizer)

        actions, logp = self.dist_spec(self.module(t[C.OBS])).rsample_with_log_prob()
        # The actor's gradient flows through the critics into the actions only.
        self.critic_net.requires_grad_(False)
        pi_q1, pi_q2 = self.critic_net(t[C.OBS], actions)
        a_loss = actor_loss(logp, pi_q1, pi_q2, alpha)
        actor_norm = self.apply_loss(a_loss, list(self.actor.parameters()))
        self.critic_net.requires_grad_(True)

        t_loss = alpha_loss(self.log_alpha, logp, self.target_entropy)
        self.alpha_optimizer.zero_grad(set_to_none=True)
        t_loss.backward()
        if self.world_size > 1:
            self.log_alpha.grad = self.all_reduce_mean(self.log_alpha.grad).to(
                self.log_alpha.dtype)
        self.alpha_optimizer.step()
        self.update_target(self.config.tau)

        metrics = torch.stack([c_loss.detach(), a_loss.detach(), t_loss.detach(), alpha,
                               0.5 * (q1 + q2).detach().mean(), y.mean(), -logp.detach().mean()])
        out: dict[str, Any] = dict(zip(("critic_loss", "actor_loss", "alpha_loss", "alpha",
                                        "q_mean", "target_mean", "entropy"), metrics.tolist()))
        out.update(critic_grad_norm=critic_norm, actor_grad_norm=actor_norm)
        out[TD_ERRORS] = td.cpu().numpy()
        return out

    @torch.no_grad()
    def update_target(self, tau: float) -> None:
        """``target <- tau * critics + (1 - tau) * target``."""
        for t, o in zip(self.target.parameters(), self.critic_net.parameters()):
            t.lerp_(o, tau)

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        state = super().state()

        def cpu(module: nn.Module) -> dict[str, torch.Tensor]:
            return {k: v.detach().cpu() for k, v in module.state_dict().items()}

        state.update(critics=cpu(self.critic_net), target=cpu(self.target),
                     critic_optimizer=self.critic_optimizer.state_dict(),
                     alpha_optimizer=self.alpha_optimizer.state_dict(),
                     log_alpha=self.log_alpha.detach().cpu())
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.critic_net.load_state_dict(state["critics"])
        self.target.load_state_dict(state["target"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])

    def critic_weights(self) -> np.ndarray:
        """The critics' flat weights (tests, debugging)."""
        from rl.policies import flat_params

        return flat_params(self.critic_net)
