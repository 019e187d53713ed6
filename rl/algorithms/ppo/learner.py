"""PPOLearner: epochs of shuffled minibatch SGD on the PPO loss, adaptive KL, early stop.

In a group of N learners each rank trains on its own equal shard with the same
minibatch positions (``epoch_order`` draws from a stream all ranks share), DDP
averages the gradients, and the ranks agree on everything they decide from data:
advantages are normalised with the statistics of the whole N-rank minibatch, the
early stop reads the KL averaged over ranks, and the metrics (hence the adaptive KL
coefficient) are averaged before use. So one update of N learners equals one update
of a single learner whose minibatch ``j`` is the union of the ranks' minibatches ``j``.

A recurrent model trains on sequences (``rl.data.sequences``): the batch's rows are
padded sequences ``[S, L]`` with their start states, shuffled and cut into minibatches
of ``max(1, minibatch_size // max_seq_len)`` sequences, and ranks shard by sequences.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from rl.algorithms.ppo.loss import PPOLossSettings, ppo_loss
from rl.checkpoint import rng_from_plain, rng_to_plain
from rl.data import SampleBatch, minibatches
from rl.data import columns as C
from rl.learner import Learner
from rl.metrics import MetricMeans, explained_variance
from rl.policies.model_spec import PREV_INPUTS

__all__ = ["PPOLearner"]

_COLUMNS = (C.OBS, C.ACTIONS, C.LOGP, C.VF_PREDS, C.ADVANTAGES, C.VALUE_TARGETS)


class PPOLearner(Learner):
    """Runs ``num_epochs`` passes of minibatch SGD over each train batch."""

    def __init__(self, model, config, device: str = "cpu"):
        super().__init__(model, config, device)
        self.kl_coeff = float(config.kl_coeff)

    def update(self, batch: SampleBatch, *, lr: float | None = None,
               entropy_coeff: float | None = None) -> dict[str, float]:
        cfg = self.config
        if lr is not None:
            self.set_lr(lr)
        keys = list(_COLUMNS) + ([C.BEHAVIOUR_LOGITS] if self.kl_coeff > 0 else [])
        recurrent = C.SEQ_MASK in batch
        if recurrent:
            keys += [C.SEQ_MASK] + [k for k in batch if k.startswith(C.STATE_IN)
                                    or k in PREV_INPUTS]
        tensors = batch.to_torch(self.device, keys=keys)
        size = max(1, cfg.minibatch_size // cfg.max_seq_len) if recurrent else cfg.minibatch_size
        settings = PPOLossSettings(
            clip_param=cfg.clip_param,
            vf_clip_param=cfg.vf_clip_param,
            vf_loss_coeff=cfg.vf_loss_coeff,
            entropy_coeff=cfg.entropy_coeff if entropy_coeff is None else entropy_coeff,
            kl_coeff=self.kl_coeff,
            # In a group the loss would see one rank's rows only; see _normalize_across.
            normalize_advantages=cfg.normalize_advantages and self.world_size == 1,
        )
        normalize_across = cfg.normalize_advantages and self.world_size > 1
        means = MetricMeans()
        epochs_run = 0
        for _ in range(cfg.num_epochs):
            order = torch.from_numpy(self.epoch_order(len(batch))).to(self.device)
            epoch_kl = []
            for mb in minibatches(tensors, order, size):
                if normalize_across:
                    mb[C.ADVANTAGES] = self._normalize_across(mb[C.ADVANTAGES],
                                                              mb.get(C.SEQ_MASK))
                loss, metrics = ppo_loss(self.module, self.dist_spec, mb, settings)
                metrics["grad_norm"] = self.apply_loss(loss)
                means.add(metrics)
                epoch_kl.append(float(metrics["approx_kl"]))
            epochs_run += 1
            if cfg.target_kl is not None and \
                    float(self.all_reduce_mean([np.mean(epoch_kl)])[0]) > 1.5 * cfg.target_kl:
                break
        out = means.means()
        if self.world_size > 1 and out:
            # Every rank ran the same minibatches; ranks agree on the averaged means.
            keys = sorted(out)
            out = dict(zip(keys, self.all_reduce_mean([out[k] for k in keys]).tolist()))
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
        real = slice(None) if not recurrent else batch[C.SEQ_MASK] > 0
        out["explained_variance"] = explained_variance(batch[C.VF_PREDS][real],
                                                       batch[C.VALUE_TARGETS][real])
        return out

    def epoch_order(self, n: int) -> np.ndarray:
        """The row order of one epoch over ``n`` rows; minibatches are consecutive slices.

        Ranks of a group draw the same order (same seed, equal shard sizes), so rank r's
        minibatch j holds the same positions of shard r on every rank.
        """
        return self.rng.permutation(n)

    def _normalize_across(self, adv: torch.Tensor, mask: torch.Tensor | None = None
                          ) -> torch.Tensor:
        """Advantages normalised with the mean and (unbiased) std of this minibatch on
        all ranks together, as a single learner would over their union (over the real
        rows of sequences, with ``mask``)."""
        local = adv.double()
        weight = torch.ones_like(local) if mask is None else mask.double()
        count = weight.sum()
        stats = self.all_reduce_mean(torch.stack([count, (local * weight).sum(),
                                                  (local.square() * weight).sum()]))
        n, total, squares = (stats * self.world_size).tolist()
        if n <= 1:
            return adv
        mean = total / n
        std = math.sqrt(max(squares - n * mean * mean, 0.0) / (n - 1))
        return ((local - mean) / (std + 1e-8)).to(adv.dtype)

    def extra_state(self) -> dict[str, Any]:
        return {"num_updates": self.num_updates, "kl_coeff": self.kl_coeff,
                "rng": rng_to_plain(self.rng)}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        super().load_extra_state(extra)
        self.kl_coeff = float(extra.get("kl_coeff", self.kl_coeff))
        if "rng" in extra:
            rng_from_plain(self.rng, extra["rng"])

