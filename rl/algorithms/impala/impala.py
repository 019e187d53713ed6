"""IMPALA: asynchronous sampling, a concurrent learner behind a bounded queue, V-trace.

Espeholt et al. 2018, "IMPALA: Scalable Distributed Deep-RL with Importance Weighted
Actor-Learner Architectures" (arXiv:1802.01561). Workers never wait for the learner
and the learner never waits for a particular worker:

1. every worker keeps ``max_requests_in_flight_per_env_runner`` sample requests
   queued; the driver takes whichever fragments are ready and re-issues a request to
   that worker at once;
2. fragments (``[T, n_envs]``, or ``[T, n_envs x agents]`` slots of a multi-agent env,
   with the behaviour log-probs and the weights version
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

Multi-agent envs: each (game, agent) slot is a column of the fragment, V-trace runs
along its valid rows (the agent's own trajectory, padding skipped:
``vtrace(valid=...)``) and padding rows count in no loss term or metric.
``train_batch_size`` counts env steps, as for PPO. With several policies
(``rl.algorithms.policy_map``) the one learner thread trains every trainable policy on
each train batch, each on its own agents' slot columns, with its own learner, board,
board version and policy lag (fragments carry one behaviour version per policy); a
frozen policy (not in ``policies_to_train``) is never updated nor republished.

With learner processes (``num_learners >= 1``) workers share their fragments through
the object store (``rl.runtime.shared``) and the queue holds handles: the learners read
the data, the driver never does. (With several policies the learner thread cuts each
policy's columns out of the fragments and sends those to its learner processes.)
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from rl import checkpoint as ckpt
from rl.algorithms.algorithm import Algorithm
from rl.algorithms.impala.config import IMPALAConfig
from rl.algorithms.impala.queue import LearnerQueue, PolicyLag, QueuedBatch
from rl.data import columns as C
from rl.imports import LazyClass
from rl.policies.model_spec import ACTOR_CRITIC, RECURRENT
from rl.resume import pack_impala_state, unpack_impala_state
from rl.runtime import shared

if TYPE_CHECKING:
    from rl.algorithms.impala.learner import LockedLearnerGroup

__all__ = ["IMPALA"]

log = logging.getLogger(__name__)

_STATE_ARRAYS = "impala"
_POLL_S = 0.05
"""Longest wait for a fragment before the driver looks at the learner again (to
publish fresh weights or surface a learner error); not a spin: it blocks in ``wait``."""


class IMPALA(Algorithm):
    """Importance-weighted actor-learner architecture."""

    config_class = IMPALAConfig
    config: IMPALAConfig
    learner_class = LazyClass("rl.algorithms.impala.learner:IMPALALearner")
    learner_group: LockedLearnerGroup
    model_kinds = (ACTOR_CRITIC, RECURRENT)
    # The learner recomputes V(x_T) and V(final obs) with its own value function.
    needs_next_obs = True
    # V-trace runs along each (game, agent) slot, skipping padding.
    multi_agent = True

    def make_learner_group(self, pid: str | None = None) -> LockedLearnerGroup:
        # Learners split a time-major batch by env columns (whole unrolls).
        cfg = self.config if pid is None else self.policy_config(pid)
        factory = self.learner_factory() if pid is None else \
            self.learner_factory(cfg, self.model_specs[pid])
        from rl.algorithms.impala.learner import LockedLearnerGroup  # torch: after the workers

        return LockedLearnerGroup(factory, cfg, self.runtime, shard_axis=1)

    def setup(self) -> None:
        from rl.algorithms.impala.learner import LearnerRunner, PolicyTrainer

        cfg = self.config
        self.queue = LearnerQueue(cfg.learner_queue_size)
        pm = self.policy_map
        self.lags = {pid: PolicyLag() for pid in pm.ids}
        for pid, lag in self.lags.items():
            lag.record_publish(self.weight_boards[pid].version, 0)
        # A fragment's columns: sub-envs, or (game, agent) slots of a multi-agent env.
        self.agents_per_env = 1 if self.agents is None else len(self.agents)
        self.fragment_shape = (cfg.rollout_fragment_length,
                               cfg.num_envs_per_env_runner * self.agents_per_env)
        # Several policies: each trains on its own agents' slot columns of every batch.
        self.several = len(pm.ids) > 1
        trainers = [PolicyTrainer(
            pid, self.learner_groups[pid], self.lags[pid], functools.partial(self._hyper, pid),
            columns=cfg.num_envs_per_env_runner * len(pm.positions(k)) if self.several
            else self.fragment_shape[1],
            index=k, select=functools.partial(self.policy_columns, k) if self.several else None)
            for k, pid in enumerate(pm.ids) if pid in pm.trainable]
        self.runner = LearnerRunner(trainers, self.queue, cfg.broadcast_interval)
        # The learner runs beside sampling, except where actors run in the driver: that
        # backend stays serial so that runs there are exactly reproducible.
        self.concurrent = not self.runtime.capabilities.actors_in_driver
        self._pending: list[dict[str, Any]] = []
        self._pending_versions: list[int] = []
        self._pending_steps = 0
        # Learner processes read fragments straight from the object store: the workers
        # share them (rl.runtime.shared) and the driver moves only the handles.
        # (Several policies: the learner thread cuts each policy's columns out of the
        # fragments, so it reads them.)
        self.share_batches = cfg.num_learners >= 1 and not self.several
        # What the boards hold (it lags the learner by up to broadcast_interval updates,
        # and the filter by as much): checkpoints save these, not the current ones.
        self._published = {pid: group.get_weights() for pid, group in self.learner_groups.items()}
        self._published_filter = None if self.obs_filter is None else self.obs_filter.to_vector()
        # Restored from a checkpoint, until published: {policy: (weights, version)}.
        self._restored_boards: dict[str, tuple[np.ndarray, int]] | None = None
        self._restored_filter: np.ndarray | None = None

    def _hyper(self, pid: str) -> dict[str, float]:
        cfg, pcfg = self.config, self.policy_config(pid)
        return {"lr": self.schedule(pcfg.lr, 0.0, cfg.lr_schedule),
                "entropy_coeff": self.schedule(pcfg.entropy_coeff, cfg.entropy_coeff_final)}

    # ------------------------------------------------------------------ weights
    def sync_weights(self, snapshot: dict[str, tuple[np.ndarray, int]] | None = None,
                     version: int | None = None) -> None:
        """Publish learner weights and the observation filter; record the weights' versions.

        Args:
            snapshot: ``{policy: (weights, learner updates)}`` taken by the learner; None
                reads every trainable policy's current weights (e.g. after a restore).
            version: the board version to publish under (default: the next one).
        """
        with self.timers("sync"):
            if snapshot is None:
                snapshot = {}
                for t in self.runner.trainers:
                    with t.group.lock:
                        snapshot[t.pid] = (t.group.get_weights(), self.runner.updates)
            self._published_filter = self.publish_obs_filter()
            for pid, (weights, updates) in snapshot.items():
                self._publish(pid, weights, updates, version)

    def _publish(self, pid: str, weights: np.ndarray, updates: int,
                 version: int | None = None) -> None:
        """Policy ``pid``'s weights on its board; its lag learns the version's updates."""
        self.lags[pid].record_publish(self.weight_boards[pid].publish(weights, version=version),
                                      updates)
        self._published[pid] = weights

    # ------------------------------------------------------------------ the loop
    def _fill_requests(self) -> None:
        """Top every worker up to its in-flight quota of sample requests."""
        quota = self.config.max_requests_in_flight_per_env_runner
        for i in range(self.workers.num_workers):
            for _ in range(quota - self.workers.num_in_flight(i)):
                self.workers.submit(i, share_batch=self.share_batches)

    def _enqueue(self, result: dict[str, Any]) -> None:
        """Group a fragment into the pending train batch; queue the batch when full."""
        # A fragment in a worker's block travels as its handle, like a shared one, so
        # that whoever drops or trains on it hands the block back (``release_all``).
        self._pending.append(result.get("block", result["batch"]))
        if self.several:  # one behaviour version per policy
            versions = result.get("weights_versions") or \
                [result["weights_version"]] * len(self.policy_map.ids)
            self._pending_versions.append([int(v) for v in versions])
        else:
            self._pending_versions.append(int(result["weights_version"]))
        self._pending_steps += int(result["env_steps"])
        if self._pending_steps >= self.config.train_batch_size:
            dropped = self.queue.put(QueuedBatch(self._pending, self._pending_steps,
                                                 self._pending_versions))
            if dropped is not None:  # nobody will read its fragments now
                shared.release_all(dropped.fragments)
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
        """Each trainable policy's learner metrics (multi-agent: ``<policy>/<metric>``,
        as PPO's; a frozen policy reports none)."""
        out: dict[str, float] = {}
        updates, trained, popped = self.runner.pop_metrics()
        for t, metrics in zip(self.runner.trainers, popped):
            metrics.update(
                num_updates=float(updates),
                weights_version=float(self.weight_boards[t.pid].version),
                queue_depth=float(len(self.queue)),
                dropped_env_steps=float(self.queue.dropped_env_steps),
                env_steps_trained=float(trained),
            )
            if self.agents is None:
                return metrics
            out.update({f"{t.pid}/{k}": v for k, v in metrics.items()})
        return out

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | None = None) -> str:
        """Write a checkpoint while the learner thread is paused, so that every batch
        is either in the saved queue or in the saved weights, never both or neither."""
        with self.runner.paused():
            return super().save(path)

    def extra_state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict]]:
        """Learner counters, plus every sampled step not yet trained on (in-flight
        fragments, the partial batch, queued batches) and the board (see rl.resume)."""
        counters = {"learner_updates": self.runner.updates,
                    "env_steps_trained": self.runner.env_steps_trained}
        in_flight = self.workers.in_flight_results()
        first = self.policy_map.ids[0]
        packed, arrays = pack_impala_state(
            board=self._published[first], board_version=self.board.version,
            obs_filter_board=self._published_filter, updates_at=self.lags[first].state(),
            pending=[shared.resolve(f) for f in self._pending],
            pending_versions=self._pending_versions,
            queued=[([shared.resolve(f) for f in b.fragments], b.env_steps,
                     b.behaviour_versions) for b in self.queue.snapshot()],
            in_flight=[(i, {**r, "batch": shared.resolve(r["batch"])}) for i, r in in_flight])
        counters.update(dropped_batches=self.queue.dropped_batches,
                        dropped_env_steps=self.queue.dropped_env_steps, **packed)
        # The other policies' boards: learner_<id>.pt holds their learners.
        counters["policy_boards"] = {
            pid: {"board_version": self.weight_boards[pid].version,
                  "updates_at": self.lags[pid].state()} for pid in self.policy_map.ids[1:]}
        for pid in self.policy_map.ids[1:]:
            arrays[f"policy_board/{pid}"] = np.asarray(self._published[pid])
        return counters, {}, {_STATE_ARRAYS: arrays}

    def load_extra_state(self, path: str, state: dict[str, Any]) -> None:
        with self.runner.paused():
            self._load_extra_state(path, state)

    def _load_extra_state(self, path: str, state: dict[str, Any]) -> None:
        # Whatever this instance sampled before is replaced by the checkpoint's.
        shared.release_all([f for b in self.queue.snapshot() for f in b.fragments]
                           + self._pending)
        self.queue.clear()
        self._pending, self._pending_versions, self._pending_steps = [], [], 0
        self.runner.updates = int(state.get("learner_updates", 0))
        self.runner.env_steps_trained = int(state.get("env_steps_trained", 0))
        self.queue.dropped_batches = int(state.get("dropped_batches", 0))
        self.queue.dropped_env_steps = int(state.get("dropped_env_steps", 0))
        arrays = ckpt.load_arrays(path, _STATE_ARRAYS)
        if arrays is None or "board_version" not in state:
            return
        saved = unpack_impala_state(state, arrays)
        first = self.policy_map.ids[0]
        self.lags[first].load_state(saved["updates_at"])
        boards = {first: (saved["board"], saved["board_version"])}
        for pid, board in (state.get("policy_boards") or {}).items():
            if pid in self.lags and f"policy_board/{pid}" in arrays:
                self.lags[pid].load_state(board["updates_at"])
                boards[pid] = (arrays[f"policy_board/{pid}"], int(board["board_version"]))
        # Fragments of another layout (the run resumes with other settings) cannot
        # join this run's batches: they are dropped and counted.
        shape = self.fragment_shape

        def steps_of(f: dict[str, np.ndarray]) -> int:  # rows = env steps x agents
            return int(f[C.REWARDS].size) // self.agents_per_env

        fits = [f[C.REWARDS].shape == shape for f in saved["pending"]]
        self._pending = [f for f, ok in zip(saved["pending"], fits) if ok]
        self._pending_versions = [v for v, ok in zip(saved["pending_versions"], fits) if ok]
        self._pending_steps = sum(steps_of(f) for f in self._pending)
        lost = sum(steps_of(f) for f, ok in zip(saved["pending"], fits) if not ok)
        for fragments, env_steps, versions in saved["queued"]:
            if all(f[C.REWARDS].shape == shape for f in fragments):
                self.queue.put(QueuedBatch(fragments, env_steps, versions))
            else:
                lost += env_steps
        in_flight = [(i, r) for i, r in saved["in_flight"] or ()
                     if r["batch"][C.REWARDS].shape == shape]
        lost += sum(steps_of(r["batch"]) for _, r in saved["in_flight"] or ()
                    if r["batch"][C.REWARDS].shape != shape)
        self.workers.restore_in_flight(in_flight)
        if lost:
            log.warning("%d saved env steps were sampled with another fragment layout than "
                        "%s and are dropped", lost, shape)
            self.queue.dropped_env_steps += int(lost)
        self._restored_boards = boards
        self._restored_filter = saved["obs_filter_board"]

    def publish_restored_weights(self) -> None:
        """Each board's saved weights under their saved version: they may be older than
        the learner's (``broadcast_interval``), and fragments in flight name them."""
        restored, self._restored_boards = self._restored_boards, None
        if restored is None:
            super().publish_restored_weights()
            return
        first = self.policy_map.ids[0]
        weights, _ = restored[first]
        filt = self._restored_filter
        if filt is None and self.filter_board is not None \
                and weights.shape == (self.board.size + self.filter_board.size,):
            # Written before the filter had its own board: it rode on the weights.
            filt = weights[self.board.size :]
            restored[first] = (weights[: self.board.size], restored[first][1])
        if filt is not None and (self.filter_board is None
                                 or filt.shape != (self.filter_board.size,)):
            filt = None
        with self.timers("sync"):
            self._published_filter = self.publish_obs_filter(filt)
            for pid in self.policy_map.ids:
                self._publish_restored(pid, *restored.get(pid, (None, 0)))

    def _publish_restored(self, pid: str, weights: np.ndarray | None, version: int) -> None:
        board, lag = self.weight_boards[pid], self.lags[pid]
        if weights is None or weights.shape != (board.size,):
            if weights is not None:
                log.warning("the checkpoint's published weights of policy %r (%d values) do "
                            "not fit this model (%d): the workers start from the learner's",
                            pid, weights.size, board.size)
            # The learner's weights, numbered after the saved versions the lags know.
            self._publish(pid, self.learner_groups[pid].get_weights(), self.runner.updates,
                          version=max(version, board.version) + 1)
            return
        new = board.publish(weights, version=max(version, board.version + 1))
        if new != version:  # the fresh board is already past it: alias the version
            lag.record_publish(new, lag.updates_at(version))
        self._published[pid] = weights

    # ------------------------------------------------------------------ shutdown
    def stop(self) -> None:
        """Join the learner thread, then stop workers and release shared memory."""
        runner = getattr(self, "runner", None)
        if runner is not None:
            leftovers = [f for b in self.queue.snapshot() for f in b.fragments] + self._pending
            runner.stop()
            # Handles nobody will resolve now (the runtime's shutdown sweeps any others).
            shared.release_all(leftovers)
            self._pending = []
        super().stop()
