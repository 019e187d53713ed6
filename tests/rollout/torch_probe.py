"""A rollout worker that reports whether its process has imported torch (for
test_torch_free_workers; this module itself must not import torch)."""

from __future__ import annotations

import sys

from rl.rollout import RolloutWorker


class ProbedWorker(RolloutWorker):
    """``RolloutWorker`` plus ``torch_loaded()``."""

    def torch_loaded(self) -> bool:
        return "torch" in sys.modules
