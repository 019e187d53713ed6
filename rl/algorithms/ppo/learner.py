"""PPOLearner: epochs of shuffled minibatch SGD on the PPO loss, adaptive KL, early stop."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rl.algorithms.ppo.loss import PPOLossSettings, ppo_loss
from rl.checkpoint import rng_from_plain, rng_to_plain
from rl.data import SampleBatch
from rl.data import columns as C
from rl.learner import Learner

__all__ = ["PPOLearner", "explained_variance"]

_COLUMNS = (C.OBS, C.ACTIONS, C.LOGP, C.VF_PREDS, C.ADVANTAGES, C.VALUE_TARGETS)


def explained_variance(pred: np.ndarray, target: np.ndarray) -> float:
    """``1 - Var(target - pred) / Var(target)``; nan when the target is constant."""
    var = float(np.var(target))
    return float("nan") if var == 0 else 1.0 - float(np.var(target - pred)) / var


class PPOLearner(Learner):
    """Runs ``num_epochs`` passes of minibatch SGD over each train batch."""

    def __init__(self, module_factory, config, device: str = "cpu"):
        super().__init__(module_factory, config, device)
        self.kl_coeff = float(config.kl_coeff)

    def update(self, batch: SampleBatch, *, lr: float | None = None,
               entropy_coeff: float | None = None) -> dict[str, float]:
        cfg = self.config
        if lr is not None:
            self.set_lr(lr)
        keys = list(_COLUMNS) + ([C.BEHAVIOUR_LOGITS] if self.kl_coeff > 0 else [])
        tensors = batch.to_torch(self.device, keys=keys)
        settings = PPOLossSettings(
            clip_param=cfg.clip_param,
            vf_clip_param=cfg.vf_clip_param,
            vf_loss_coeff=cfg.vf_loss_coeff,
            entropy_coeff=cfg.entropy_coeff if entropy_coeff is None else entropy_coeff,
            kl_coeff=self.kl_coeff,
            normalize_advantages=cfg.normalize_advantages,
        )
        n, mbs = len(batch), cfg.minibatch_size
        sums: dict[str, float] = {}
        count = 0
        epochs_run = 0
        for _ in range(cfg.num_epochs):
            perm = torch.from_numpy(self.rng.permutation(n)).to(self.device)
            epoch_kl = []
            for start in range(0, n, mbs):
                idx = perm[start : start + mbs]
                mb = {k: v[idx] for k, v in tensors.items()}
                loss, metrics = ppo_loss(self.module, mb, settings)
                metrics["grad_norm"] = self.apply_loss(loss)
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                count += 1
                epoch_kl.append(float(metrics["approx_kl"]))
            epochs_run += 1
            if cfg.target_kl is not None and np.mean(epoch_kl) > 1.5 * cfg.target_kl:
                break
        out = {k: v / max(count, 1) for k, v in sums.items()}
        if self.kl_coeff > 0:
            # Adaptive KL penalty (Schulman et al. 2017, sec. 4).
            if out["kl"] > 2.0 * cfg.kl_target:
                self.kl_coeff *= 1.5
            elif out["kl"] < 0.5 * cfg.kl_target:
                self.kl_coeff *= 0.5
        out["kl_coeff"] = self.kl_coeff
        out["lr"] = self.optimizer.param_groups[0]["lr"]
        out["entropy_coeff"] = settings.entropy_coeff
        out["epochs"] = float(epochs_run)
        out["explained_variance"] = explained_variance(batch[C.VF_PREDS], batch[C.VALUE_TARGETS])
        return out

    def extra_state(self) -> dict[str, Any]:
        return {"num_updates": self.num_updates, "kl_coeff": self.kl_coeff,
                "rng": rng_to_plain(self.rng)}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        super().load_extra_state(extra)
        self.kl_coeff = float(extra.get("kl_coeff", self.kl_coeff))
        if "rng" in extra:
            rng_from_plain(self.rng, extra["rng"])

