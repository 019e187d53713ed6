"""IMPALA: asynchronous sampling, a concurrent learner behind a bounded queue, V-trace.

Espeholt et al. 2018, "IMPALA: Scalable Distributed Deep-RL with Importance Weighted
Actor-Learner Architectures" (arXiv:1802.01561). Workers never wait for the learner
and the learner never waits for a particular worker:

1. every worker keeps ``max_requests_in_flight_per_env_runner`` sample requests
   queued; the driver takes whichever fragments are ready and re-issues a request to
   that worker at once;
2. fragments (``[T, n_envs]``, with the behaviour log-probs and the weights version
   that produced them) are grouped into train batches of ``train_batch_size`` env
   steps and put on a bounded ``LearnerQueue``: when it is full the oldest batch is
   dropped and counted (``learner/dropped_env_steps``);
3. a learner thread (``LearnerRunner``) trains on the batches with the V-trace loss
   while sampling goes on, and snapshots its weights every ``broadcast_interval``
   updates; the driver publishes them on the weights board.

One ``train()`` iteration lasts until ``train_batch_size`` new env steps were sampled
and reports the learner metrics of the updates completed meanwhile, the policy lag
(learner updates between the behaviour weights and the weights trained on), the
queue depth, and updates/s.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rl.algorithms.algorithm import Algorithm
from rl.algorithms.impala.config import IMPALAConfig
from rl.algorithms.impala.learner import IMPALALearner, LearnerRunner, LockedLearnerGroup
from rl.algorithms.impala.queue import LearnerQueue, PolicyLag, QueuedBatch
from rl.data import columns as C
from rl.learner import LearnerGroup
from rl.policies import ActorCritic
from rl.rollout import WorkerSpec

__all__ = ["IMPALA"]

_POLL_S = 0.05
"""Longest wait for a fragment before the driver looks at the learner again (to
publish fresh weights or surface a learner error); not a spin: it blocks in ``wait``."""


class IMPALA(Algorithm):
    """Importance-weighted actor-learner architecture."""

    config_class = IMPALAConfig
    config: IMPALAConfig
    learner_group: LockedLearnerGroup

    def make_learner_group(self) -> LearnerGroup:
        cfg = self.config
        obs_space, action_space, model = self.obs_space, self.action_space, self.model_config

        def learner():
            return IMPALALearner(lambda: ActorCritic(obs_space, action_space, model), cfg,
                                 cfg.device)

        # Learners split a time-major batch by env columns (whole unrolls).
        return LockedLearnerGroup(learner, cfg, self.runtime, shard_axis=1)

    def worker_spec(self, num_envs: int | None = None, fragment: int | None = None) -> WorkerSpec:
        spec = super().worker_spec(num_envs, fragment)
        # The learner recomputes V(x_T) and V(final obs) with its own value function.
        spec.needs_next_obs = True
        return spec

    def setup(self) -> None:
        cfg = self.config
        self.queue = LearnerQueue(cfg.learner_queue_size)
        self.lag = PolicyLag()
        self.lag.record_publish(self.board.version, 0)
        self.runner = LearnerRunner(self.learner_group, self.queue, self.lag, self._hyper,
                                    cfg.broadcast_interval)
        # The learner runs beside sampling except on the inline backend, which stays
        # serial so that runs there are exactly reproducible.
        self.concurrent = cfg.backend != "inline"
        self._pending: list[dict[str, Any]] = []
        self._pending_versions: list[int] = []
        self._pending_steps = 0

    def _hyper(self) -> dict[str, float]:
        cfg = self.config
        return {"lr": self.schedule(cfg.lr, 0.0, cfg.lr_schedule),
                "entropy_coeff": self.schedule(cfg.entropy_coeff, cfg.entropy_coeff_final)}

    # ------------------------------------------------------------------ weights
    def sync_weights(self, snapshot: tuple[np.ndarray, int] | None = None) -> None:
        """Publish learner weights (and the observation filter); record their version.

        Args:
            snapshot: ``(weights, learner updates)`` taken by the learner; None reads
                the learner's current weights (e.g. after a restore).
        """
        with self.timers("sync"):
            if snapshot is None:
                with self.learner_group.lock:
                    snapshot = (self.learner_group.get_weights(), self.runner.updates)
            weights, updates = snapshot
            if self.obs_filter is not None:
                weights = np.concatenate([weights, self.obs_filter.to_vector()])
            self.lag.record_publish(self.board.publish(weights), updates)

    # ------------------------------------------------------------------ the loop
    def _fill_requests(self) -> None:
        """Top every worker up to its in-flight quota of sample requests."""
        quota = self.config.max_requests_in_flight_per_env_runner
        for i in range(self.workers.num_workers):
            for _ in range(quota - self.workers.num_in_flight(i)):
                self.workers.submit(i)

    def _enqueue(self, result: dict[str, Any]) -> None:
        """Group a fragment into the pending train batch; queue the batch when full."""
        self._pending.append(result["batch"])
        self._pending_versions.append(int(result["weights_version"]))
        self._pending_steps += int(result["batch"][C.REWARDS].size)
        if self._pending_steps >= self.config.train_batch_size:
            self.queue.put(QueuedBatch(self._pending, self._pending_steps,
                                       self._pending_versions))
            self._pending, self._pending_versions, self._pending_steps = [], [], 0

    def training_step(self) -> dict[str, float]:
        cfg = self.config
        if self.concurrent:
            self.runner.start()
        sampled = 0
        while sampled < cfg.train_batch_size:
            with self.timers("sample"):
                self._fill_requests()
                ready = self.workers.collect_ready(timeout=_POLL_S)
                self._fill_requests()  # re-issue to the workers that just delivered
                fresh = [result for _, result in ready if result is not None]
                sampled += self.ingest_fragments(fresh)
                for result in fresh:
                    self._enqueue(result)
            if not self.concurrent:
                with self.timers("learn"):
                    self.runner.drain()
            self.runner.check()
            if (snapshot := self.runner.pop_weights()) is not None:
                self.sync_weights(snapshot)
        return self._learner_metrics()

    def _learner_metrics(self) -> dict[str, float]:
        out = self.runner.metrics.pop()
        out.update(
            num_updates=float(self.runner.updates),
            weights_version=float(self.board.version),
            queue_depth=float(len(self.queue)),
            dropped_env_steps=float(self.queue.dropped_env_steps),
            env_steps_trained=float(self.runner.env_steps_trained),
        )
        return out

    # ------------------------------------------------------------------ checkpoints
    def extra_state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict]]:
        return ({"learner_updates": self.runner.updates,
                 "env_steps_trained": self.runner.env_steps_trained}, {}, {})

    def load_extra_state(self, path: str, state: dict[str, Any]) -> None:
        self.runner.updates = int(state.get("learner_updates", 0))
        self.runner.env_steps_trained = int(state.get("env_steps_trained", 0))

    # ------------------------------------------------------------------ shutdown
    def stop(self) -> None:
        """Join the learner thread, then stop workers and release shared memory."""
        runner = getattr(self, "runner", None)
        if runner is not None:
            runner.stop()
        super().stop()
