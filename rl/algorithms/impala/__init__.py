"""IMPALA with V-trace: config, loss, learner (thread, queue, lag), algorithm."""

from rl.algorithms.impala.config import IMPALAConfig
from rl.algorithms.impala.impala import IMPALA

__all__ = ["IMPALA", "IMPALAConfig"]
