"""Rollout workers: vector env + policy inference -> time-major SampleBatch fragments."""

from rl.rollout.policy import ActorCriticPolicy, QPolicy, build_inference_policy
from rl.rollout.worker import Boards, RolloutWorker, WorkerSpec
from rl.rollout.worker_set import WorkerFailedError, WorkerSet

__all__ = [
    "ActorCriticPolicy",
    "Boards",
    "QPolicy",
    "RolloutWorker",
    "WorkerFailedError",
    "WorkerSet",
    "WorkerSpec",
    "build_inference_policy",
]
