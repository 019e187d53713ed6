"""Learners: model + optimizer + loss, and the group that runs one or more of them."""

from rl.learner.group import LearnerGroup
from rl.learner.learner import Learner, resolve_device

__all__ = ["Learner", "LearnerGroup", "resolve_device"]
