"""Learners: model + optimizer + loss, and the group that runs one or more of them."""

from rl.learner.group import LearnerFailedError, LearnerGroup, merge_metrics, shard_batch
from rl.learner.learner import Learner, resolve_device

__all__ = ["Learner", "LearnerFailedError", "LearnerGroup", "merge_metrics", "resolve_device",
           "shard_batch"]
