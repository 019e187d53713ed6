"""``torch``, imported on first attribute access.

Modules on the start-up path (the algorithm's constructor, checkpoints, the rollout
worker's policy) use ``from rl.lazy_torch import torch`` instead of ``import torch``:
importing torch takes over a second, and a rollout worker whose policies all run in
numpy never needs it, nor does the driver before its first learner is built.
"""

from __future__ import annotations

from typing import Any

__all__ = ["torch"]


class _LazyTorch:
    """Stands for the ``torch`` module; the first attribute read imports it."""

    def __getattr__(self, name: str) -> Any:
        import torch as module

        return getattr(module, name)


torch = _LazyTorch()
