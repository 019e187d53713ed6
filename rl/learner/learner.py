"""Learner: owns a module, its optimizer and device; applies an algorithm's loss.

An algorithm subclasses ``Learner`` and implements ``update(batch, **hyper)``; the
loss itself is a near-pure function of (module, batch tensors, settings) that knows
nothing about optimizers or devices. ``apply_loss`` does backward, global grad-norm
clipping and the optimizer step.

In a group of learner processes (``rl.learner.group``), ``distribute`` wraps the
module in DDP, so every backward averages the gradients of all ranks, and
``all_reduce_mean`` lets an ``update`` agree with its peers on anything it decides
from data (early stopping, adaptive coefficients, reported metrics). Alone, both are
no-ops and the learner behaves exactly as it does in the driver.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from rl.data import SampleBatch
from rl.learner.optim import Adam
from rl.policies import DistributionSpec, ModelSpec, flat_params, load_flat_params

__all__ = ["Learner", "clip_grad_norm", "resolve_device"]


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; ``cuda[:i]`` must exist."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available on this "
                         "machine; use device=cpu or auto")
    return torch.device(device)


@torch.no_grad()
def clip_grad_norm(params: list[nn.Parameter], max_norm: float | None) -> torch.Tensor:
    """Scale the gradients of ``params`` to a global 2-norm of at most ``max_norm``
    (None: no clipping); returns the norm before clipping.

    The ops of ``torch.nn.utils.clip_grad_norm_``, bit for bit, without its per-call
    grouping by device and dtype when every gradient shares one (a small network's
    update spends more time in that bookkeeping than in the arithmetic).
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    kind = (grads[0].device, grads[0].dtype)
    if kind[0].type not in ("cpu", "cuda") or any((g.device, g.dtype) != kind or g.is_sparse
                                                   for g in grads):
        return torch.nn.utils.clip_grad_norm_(
            params, max_norm if max_norm is not None else float("inf"))
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    if max_norm is not None:  # (x * 1.0 is x: unclipped, torch's multiply changes nothing)
        torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))
    return total


class Learner(abc.ABC):
    """Model + optimizer + loss for one algorithm.

    Args:
        model: the model to build and train (``ModelSpec``; the rollout workers build
            the same one). ``self.dist_spec`` is its action space's distribution.
        config: the algorithm config (read-only).
        device: torch device string (``auto|cpu|cuda[:i]``).
    """

    def __init__(self, model: ModelSpec, config: Any, device: str = "cpu"):
        self.config = config
        self.device = resolve_device(device)
        self.model_spec = model
        self.module = model.build().to(self.device)
        self.dist_spec = DistributionSpec(model.action_space)
        self.optimizer = self.make_optimizer()
        seed = 0 if config.seed is None else config.seed
        # Every rank of a group draws from the same stream: shards have equal sizes, so
        # all ranks take the same minibatch positions in the same order.
        self.rng = np.random.default_rng(seed + 12345)
        self.num_updates = 0
        self.world_size = 1
        """Learners training together (1: alone); set by ``distribute``."""

    def make_optimizer(self) -> Adam:
        """The optimizer of ``self.module`` (default: ``rl.learner.optim.Adam``, which
        steps as ``torch.optim.Adam`` does without importing ``torch._dynamo``); override
        it to return any ``torch.optim`` optimizer."""
        return Adam(self.module.parameters(), lr=self.config.lr, eps=1e-5)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def apply_loss(self, loss: torch.Tensor, params: list[nn.Parameter] | None = None,
                   optimizer: Adam | torch.optim.Optimizer | None = None) -> float:
        """Backward, clip the global gradient norm, step; returns the pre-clip norm.

        Args:
            loss: the scalar to minimise.
            params: the parameters whose gradient norm is clipped (default: the
                module's).
            optimizer: the one to step (default: ``self.optimizer``, and only that one
                counts in ``num_updates``); a learner with several (SAC's critics and
                temperature) owns the others and saves them in ``state()``.
        """
        optimizer = self.optimizer if optimizer is None else optimizer
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = params if params is not None else list(self.module.parameters())
        norm = clip_grad_norm(params, self.config.grad_clip)
        optimizer.step()
        if optimizer is self.optimizer:
            self.num_updates += 1
        return float(norm)

    # ------------------------------------------------------------------ groups
    def distribute(self, world_size: int) -> None:
        """Train as one of ``world_size`` ranks of the (initialised) default process group.

        The module is wrapped in DDP for the forward passes of the loss; state dicts,
        flat weights and attributes still read as the plain module's.
        """
        from rl.learner.distributed import wrap_module

        self.world_size = world_size
        self.module = wrap_module(self.module, self.device)

    def all_reduce_mean(self, values: list[float] | torch.Tensor) -> torch.Tensor:
        """The mean of ``values`` (float64 on this learner's device) over the group's ranks.

        Every rank must call it at the same point of its update, as with any collective.
        """
        tensor = torch.as_tensor(values, dtype=torch.float64, device=self.device)
        if self.world_size > 1:
            dist.all_reduce(tensor)
            tensor /= self.world_size
        return tensor

    @abc.abstractmethod
    def update(self, batch: SampleBatch, **hyper: Any) -> dict[str, float]:
        """One training update on ``batch``; returns metrics (without prefix)."""

    # ------------------------------------------------------------------ weights & state
    def get_weights(self) -> np.ndarray:
        """The module's parameters and buffers as one float32 vector."""
        return flat_params(self.module)

    def set_weights(self, vector: np.ndarray) -> None:
        load_flat_params(self.module, vector)

    def state(self) -> dict[str, Any]:
        """Tensors-only state: ``{"module": state_dict, "optimizer": state_dict, ...}``."""
        return {
            "module": {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "extra": self.extra_state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.load_extra_state(state.get("extra", {}))

    def extra_state(self) -> dict[str, Any]:
        """Algorithm-specific learner state (tensors or plain numbers)."""
        return {"num_updates": self.num_updates}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        self.num_updates = int(extra.get("num_updates", 0))
