"""DQNLearner: online and target Q-networks, one gradient step per sampled batch.

The online network is ``self.module``: its flat weights are what the workers'
``QPolicy`` runs (the same ``QNetwork`` layout), so ``get_weights`` publishes the
online network only. The target network is a frozen copy, refreshed by
``update_target`` (hard copy, or Polyak averaging after every step when ``tau`` is
set) and saved with the learner's state.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from rl.algorithms.dqn.loss import DQNLossSettings, dqn_loss
from rl.data import SampleBatch
from rl.data import columns as C
from rl.learner import Learner
from rl.learner.optim import Adam
from rl.policies import flat_params

__all__ = ["DQNLearner"]

_COLUMNS = (C.OBS, C.ACTIONS, C.REWARDS, C.NEXT_OBS, C.TERMINATEDS, C.DISCOUNTS, C.WEIGHTS)

#: Key of ``update()``'s output that holds the per-row TD errors (a numpy array, not
#: a metric): the algorithm pops it to update replay priorities.
TD_ERRORS = C.TD_ERRORS


class DQNLearner(Learner):
    """Trains the online Q-network on batches sampled from replay."""

    def __init__(self, model, config, device: str = "cpu"):
        super().__init__(model, config, device)
        self.target = copy.deepcopy(self.module)
        self.target.requires_grad_(False)
        self.settings = DQNLossSettings(double_q=config.double_q,
                                        loss_fn=config.td_error_loss_fn)
        self._params = list(self.module.parameters())

    def make_optimizer(self) -> Adam:
        # Fused Adam: one kernel per step instead of ~10 per parameter, which is most
        # of an update's cost for the small networks DQN often trains.
        return Adam(self.module.parameters(), lr=self.config.lr, eps=1e-5, fused=True)

    def update(self, batch: SampleBatch, *, lr: float | None = None,
               sync_target: bool = False) -> dict[str, Any]:
        """One gradient step on ``batch`` (see ``dqn_loss`` for its columns).

        Args:
            batch: a batch sampled from replay.
            lr: the learning rate for this step (None keeps the current one).
            sync_target: hard-copy the online network into the target network
                before the step (the algorithm decides when, by env steps).

        Returns:
            Scalar metrics (``loss``, ``q_mean``, ``target_mean``, ``td_error_mean``,
            ``grad_norm``, ``lr``) and ``td_errors``: float32 ``[B]`` numpy array.
        """
        if lr is not None:
            self.set_lr(lr)
        if sync_target:
            self.update_target(1.0)
        tensors = batch.to_torch(self.device, keys=_COLUMNS)
        loss, metrics, td = dqn_loss(self.module, self.target, tensors, self.settings)
        # One conversion for all metrics: each float() of a tensor has a fixed cost.
        out: dict[str, Any] = dict(zip(metrics, torch.stack(list(metrics.values())).tolist()))
        out["grad_norm"] = self.apply_loss(loss, self._params)
        if self.config.tau is not None:
            self.update_target(self.config.tau)
        out["lr"] = self.optimizer.param_groups[0]["lr"]
        out[TD_ERRORS] = td.cpu().numpy()
        return out

    @torch.no_grad()
    def set_weights(self, vector: np.ndarray) -> None:
        """New online weights (the run's first ones, or a user's); the target network
        copies them, as it copied the freshly built network."""
        super().set_weights(vector)
        self.update_target(1.0)

    def update_target(self, tau: float = 1.0) -> None:
        """``target <- tau * online + (1 - tau) * target``; ``tau=1`` is a hard copy."""
        for t, o in zip(self.target.state_dict().values(), self.module.state_dict().values()):
            if tau >= 1.0 or not t.is_floating_point():
                t.copy_(o)
            else:
                t.lerp_(o, tau)

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        state = super().state()
        state["target"] = {k: v.detach().cpu() for k, v in self.target.state_dict().items()}
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.target.load_state_dict(state["target"])

    def target_weights(self) -> np.ndarray:
        """The target network's flat weights (tests, debugging)."""
        return flat_params(self.target)
