"""LearnerGroup: the algorithm's view of its learner(s).

With ``num_learners=0`` one ``Learner`` lives in the driver and ``update`` is a
plain call. The group is the seam where learner processes plug in: algorithms only
call ``update``, ``get_weights``, ``state`` and ``load_state`` on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rl.data import SampleBatch
from rl.learner.learner import Learner

__all__ = ["LearnerGroup"]


class LearnerGroup:
    """One local learner (``num_learners=0``)."""

    def __init__(self, learner_factory: Callable[[], Learner], num_learners: int = 0):
        if num_learners != 0:
            raise ValueError(
                f"num_learners={num_learners} is not available in this release: learners "
                "run in the driver (num_learners=0)"
            )
        self.local = learner_factory()

    @property
    def module(self):
        return self.local.module

    def update(self, batch: SampleBatch, **hyper: Any) -> dict[str, float]:
        return self.local.update(batch, **hyper)

    def get_weights(self) -> np.ndarray:
        return self.local.get_weights()

    def set_weights(self, vector: np.ndarray) -> None:
        self.local.set_weights(vector)

    def state(self) -> dict[str, Any]:
        return self.local.state()

    def load_state(self, state: dict[str, Any]) -> None:
        self.local.load_state(state)

    def stop(self) -> None:
        """Release learner resources (nothing to do for a local learner)."""
