"""IMPALA's learner side: the V-trace learner, its lock, and the thread that runs it.

Data flow in the driver process::

    driver thread (IMPALA.training_step)          learner thread (LearnerRunner._run)
    ────────────────────────────────────          ──────────────────────────────────
    collect ready fragments, re-issue requests
    group n fragments ── QueuedBatch ──▶ LearnerQueue (bounded; full: drop oldest)
                                                │ get()
                                                ▼
                                         per trainable policy (its slot columns),
                                         with group.lock: update_fragments: stack along
                                         N, V-trace loss, SGD step(s); every
                                         broadcast_interval updates snapshot the weights
    boards[policy].publish(snapshot [+ filter]) ◀── pop_weights() ◀──┘

The learner thread only touches the learners (each under its
``LockedLearnerGroup.lock``, which the driver also takes for checkpoints and
evaluation) and the thread-safe queue, lag and metrics objects; the weights boards,
workers, observation filter and timers stay in the driver thread. torch releases the
GIL inside its kernels, so sampling and learning overlap. With ``num_learners >= 1``
and one policy the fragments are ``Shared`` handles (``rl.runtime.shared``): the
thread's ``group.update_fragments`` hands each learner process the handles of its env
columns, the learners read the data from the object store, and the driver only ever
moves handles (several policies: the thread cuts each policy's columns out and sends
those). ``paused()`` holds the thread between two updates (checkpoints use it). On the inline backend ``drain()`` runs the same updates synchronously in the driver, which
keeps that backend serial and reproducible.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from rl.algorithms.impala.loss import (
    BOOTSTRAP_OBS,
    FINAL_INDEX,
    FINAL_OBS,
    IMPALALossSettings,
    impala_loss,
)
from rl.algorithms.impala.queue import LearnerQueue, MetricsWindow, PolicyLag, QueuedBatch
from rl.data import SampleBatch
from rl.data import columns as C
from rl.learner import Learner, LearnerGroup
from rl.learner.optim import Adam
from rl.metrics import MetricMeans
from rl.policies.model_spec import PREV_INPUTS
from rl.runtime import shared

__all__ = ["IMPALALearner", "LearnerRunner", "LockedLearnerGroup", "PolicyTrainer",
           "stack_fragments"]

log = logging.getLogger(__name__)

_IDLE_POLL_S = 0.1
"""How often an idle learner thread looks at its stop flag (it wakes at once on a batch)."""

TRAIN_COLUMNS = (C.OBS, C.ACTIONS, C.LOGP, C.REWARDS, C.TERMINATEDS, C.TRUNCATEDS, C.NEXT_OBS)
"""Fragment columns the learner reads; ``next_obs`` only at truncations and the last row."""


def stack_fragments(fragments: list[dict[str, np.ndarray]]) -> SampleBatch:
    """Time-major fragments ``[T, n_i, ...]`` -> one time-major batch ``[T, sum n_i, ...]``.

    A recurrent policy's unrolls start from the state the worker had at row 0: its
    ``state_in_<k>`` columns keep that row only, repeated along T as a read-only view
    (so the batch's columns share their first dimension)."""
    def take(f: dict[str, np.ndarray], k: str) -> np.ndarray:
        if not k.startswith(C.STATE_IN):
            return f[k]
        return np.broadcast_to(f[k][:1], (f[C.REWARDS].shape[0], *f[k].shape[1:]))

    keys = TRAIN_COLUMNS + tuple(k for k in fragments[0] if k.startswith(C.STATE_IN)
                                 or k in PREV_INPUTS or k == C.VALID)
    if len(fragments) == 1:
        return SampleBatch({k: take(fragments[0], k) for k in keys})
    return SampleBatch({k: np.concatenate([take(f, k) for f in fragments], axis=1)
                        for k in keys})


def loss_inputs(batch: SampleBatch, device: torch.device) -> dict[str, torch.Tensor]:
    """The tensors ``impala_loss`` reads, from a time-major batch with ``next_obs``.

    Only the observations the values are needed for move to the device: the
    bootstrap observation of each env and the true final observation of each
    truncated (not terminated) step. A multi-agent batch's ``valid`` column (padding
    rows are False) goes along; each column then bootstraps after its last valid row.
    """
    T, N = batch[C.REWARDS].shape
    next_obs = batch[C.NEXT_OBS]
    valid = batch.get(C.VALID)
    truncated = batch[C.TRUNCATEDS] & ~batch[C.TERMINATEDS]
    if valid is None:
        bootstrap = next_obs[-1]
    else:
        truncated = truncated & valid
        # The last valid row of each column (row T-1 where a column has none).
        last = T - 1 - np.argmax(valid[::-1], axis=0)
        bootstrap = next_obs[last, np.arange(N)]
    t_idx, n_idx = np.nonzero(truncated)
    arrays = {
        **{k: batch[k] for k in (C.OBS, C.ACTIONS, C.LOGP, C.REWARDS, *PREV_INPUTS)
           if k in batch},
        **{k: np.array(v[:1]) for k, v in batch.items() if k.startswith(C.STATE_IN)},
        C.TERMINATEDS: batch[C.TERMINATEDS].astype(np.float32),
        C.TRUNCATEDS: batch[C.TRUNCATEDS].astype(np.float32),
        **({} if valid is None else {C.VALID: valid}),
        BOOTSTRAP_OBS: bootstrap,
        FINAL_OBS: next_obs[t_idx, n_idx],
        FINAL_INDEX: (t_idx * N + n_idx).astype(np.int64),
    }
    out = {}
    for k, v in arrays.items():
        t = torch.from_numpy(np.ascontiguousarray(v))
        out[k] = t.to(device, non_blocking=True) if device.type != "cpu" else t
    return out


class IMPALALearner(Learner):
    """V-trace actor-critic updates on time-major batches; Adam or RMSProp."""

    def make_optimizer(self) -> torch.optim.Optimizer | Adam:
        cfg = self.config
        params = self.module.parameters()
        if cfg.optimizer == "rmsprop":
            eps = 0.01 if cfg.optimizer_eps is None else cfg.optimizer_eps
            return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.rmsprop_decay, eps=eps,
                                       momentum=cfg.momentum)
        eps = 1e-5 if cfg.optimizer_eps is None else cfg.optimizer_eps
        return Adam(params, lr=cfg.lr, eps=eps)

    def update(self, batch: SampleBatch, *, lr: float | None = None,
               entropy_coeff: float | None = None) -> dict[str, float]:
        """``num_epochs`` passes over ``batch`` (time-major ``[T, N]``, see
        ``TRAIN_COLUMNS``), in minibatches of whole unrolls (env columns)."""
        cfg = self.config
        if lr is not None:
            self.set_lr(lr)
        settings = IMPALALossSettings(
            gamma=cfg.gamma, vf_loss_coeff=cfg.vf_loss_coeff,
            entropy_coeff=cfg.entropy_coeff if entropy_coeff is None else entropy_coeff,
            clip_rho_threshold=cfg.clip_rho_threshold, clip_c_threshold=cfg.clip_c_threshold,
            clip_pg_rho_threshold=cfg.clip_pg_rho_threshold, vtrace_lambda=cfg.vtrace_lambda)
        T, N = batch[C.REWARDS].shape
        widest = self._widest_uneven_shard(N)
        if widest is not None:
            means = self._update_uneven(batch, widest, settings)
        else:
            cols = N if cfg.minibatch_size is None else max(1, cfg.minibatch_size // T)
            whole = loss_inputs(batch, self.device) if cols >= N else None
            means = MetricMeans()
            for _ in range(cfg.num_epochs):
                if whole is not None:
                    parts = [whole]
                else:
                    perm = self.rng.permutation(N)
                    parts = (loss_inputs(SampleBatch({k: v[:, perm[i : i + cols]]
                                                      for k, v in batch.items()}),
                                         self.device)
                             for i in range(0, N, cols))
                for tensors in parts:
                    loss, metrics = impala_loss(self.module, self.dist_spec, tensors, settings)
                    metrics["grad_norm"] = self.apply_loss(loss)
                    means.add(metrics)
        out = means.means()
        out["lr"] = self.optimizer.param_groups[0]["lr"]
        out["entropy_coeff"] = settings.entropy_coeff
        return out

    def _widest_uneven_shard(self, columns: int) -> int | None:
        """The most env columns any rank of the group trains in this update, when the
        ranks' shares differ (None alone or with equal shares)."""
        if self.world_size == 1:
            return None
        extremes = torch.tensor([columns, -columns], dtype=torch.int64, device=self.device)
        dist.all_reduce(extremes, op=dist.ReduceOp.MAX)
        widest, narrowest = int(extremes[0]), -int(extremes[1])
        return None if widest == narrowest else widest

    def _update_uneven(self, batch: SampleBatch, widest: int,
                       settings: IMPALALossSettings) -> MetricMeans:
        """The epochs of an update whose ranks hold different numbers of env columns
        (the group's columns do not divide by its learners).

        Every rank takes as many SGD steps as the widest shard needs, so the gradient
        all-reduces stay in lockstep, each step on a near-equal part of its columns;
        its loss is scaled by its share of the step's trained rows (valid rows of a
        multi-agent batch) over the mean share, so DDP's average of the ranks'
        gradients is the gradient of the mean loss over every rank's rows. A rank
        left with no column for a step runs one column with weight 0.
        """
        cfg = self.config
        T, N = batch[C.REWARDS].shape
        cols = widest if cfg.minibatch_size is None else max(1, cfg.minibatch_size // T)
        steps = -(-widest // cols)
        valid = batch.get(C.VALID)
        means = MetricMeans()
        for _ in range(cfg.num_epochs):
            perm = self.rng.permutation(N)
            for idx in np.array_split(perm, steps):
                rows = T * len(idx) if valid is None else int(valid[:, idx].sum())
                if len(idx) == 0:
                    idx, rows = perm[:1], 0
                mean_rows = float(self.all_reduce_mean([rows])[0])
                weight = rows / mean_rows if mean_rows > 0 else 0.0
                tensors = loss_inputs(SampleBatch({k: v[:, idx] for k, v in batch.items()}),
                                      self.device)
                loss, metrics = impala_loss(self.module, self.dist_spec, tensors, settings)
                metrics["grad_norm"] = self.apply_loss(loss * weight)
                means.add(metrics)
        return means

    def update_fragments(self, fragments: list[dict[str, np.ndarray]], *,
                         lr: float | None = None,
                         entropy_coeff: float | None = None) -> dict[str, float]:
        """``update`` on worker fragments, stacked along the env axis: a train batch, or
        a learner process's share of one read from the object store."""
        batch = stack_fragments(fragments)
        # Views of the object store are read-only, and torch wants writable arrays.
        batch = SampleBatch({k: v if v.flags.writeable else v.copy() for k, v in batch.items()})
        return self.update(batch, lr=lr, entropy_coeff=entropy_coeff)


class LockedLearnerGroup(LearnerGroup):
    """A ``LearnerGroup`` whose learner may be trained from another thread.

    Every access goes through ``lock``, so that a checkpoint or an evaluation in the
    driver never reads weights or optimizer state halfway through an SGD step.
    """

    def __init__(self, learner_factory: Callable[[], Learner], config: Any, runtime: Any = None,
                 *, shard_axis: int = 0):
        super().__init__(learner_factory, config, runtime, shard_axis=shard_axis)
        self.lock = threading.RLock()

    def update(self, batch: SampleBatch, **hyper: Any) -> dict[str, float]:
        with self.lock:
            return super().update(batch, **hyper)

    def update_fragments(self, fragments: list[Any], columns: int,
                         **hyper: Any) -> dict[str, float]:
        with self.lock:
            return super().update_fragments(fragments, columns, **hyper)

    def get_weights(self) -> np.ndarray:
        with self.lock:
            return super().get_weights()

    def set_weights(self, vector: np.ndarray) -> None:
        with self.lock:
            super().set_weights(vector)

    def state(self) -> dict[str, Any]:
        with self.lock:
            # Clone: the learner thread goes on updating the tensors after we return.
            return _clone(super().state())

    def load_state(self, state: dict[str, Any]) -> None:
        with self.lock:
            super().load_state(state)


def _clone(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_clone(v) for v in obj)
    return obj


def _version_of(version: int | list[int], index: int) -> int:
    """A fragment's behaviour version of policy ``index``: one int (one policy), or one
    per policy (several)."""
    return int(version) if isinstance(version, int | np.integer) else int(version[index])


@dataclass(slots=True)
class PolicyTrainer:
    """One trainable policy as the learner thread sees it.

    Attributes:
        pid: the policy id.
        group: its learner, with its lock.
        lag: its policy-lag bookkeeping (fed here, published to by the driver).
        hyper: returns its per-update hyper-parameters (``lr``, ``entropy_coeff``).
        columns: its columns per fragment (every env column with one policy; its
            (game, agent) slots with several).
        index: its position among the policies (its entry in a fragment's behaviour
            versions, when they are one per policy).
        select: its slot columns of a fragment (None: the whole fragment).
        metrics: its learner metrics since the driver last reported.
    """

    pid: str
    group: LockedLearnerGroup
    lag: PolicyLag
    hyper: Callable[[], dict[str, float]]
    columns: int
    index: int = 0
    select: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None
    metrics: MetricsWindow = field(default_factory=MetricsWindow)


class LearnerRunner:
    """Takes train batches off the queue and runs the learners on them.

    ``start()`` runs it in a daemon thread (process and ray backends); without a
    thread, ``drain()`` trains on every queued batch in the calling thread (inline
    backend). Either way each batch is one *update* (``num_epochs`` passes) of every
    trainable policy, each on its own columns of the batch (its agents' slots); the
    learners' weights version is the number of updates, and after every
    ``broadcast_interval`` updates a weight snapshot of each policy waits in
    ``pop_weights()``.

    Args:
        trainers: the trainable policies (one for a single-agent run).
        queue: where train batches arrive.
        broadcast_interval: updates between weight snapshots.
    """

    def __init__(self, trainers: list[PolicyTrainer], queue: LearnerQueue,
                 broadcast_interval: int):
        self.trainers = trainers
        self.queue = queue
        self.broadcast_interval = broadcast_interval
        self.updates = 0
        self.env_steps_trained = 0
        self._snapshot: dict[str, tuple[np.ndarray, int]] = {}
        self._snapshot_lock = threading.Lock()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        # Held by the thread from taking a batch off the queue to the end of its update,
        # and by paused(): a checkpoint sees every batch either queued or trained.
        self._step = threading.Lock()
        # Held while an update's metrics and counts land, and while the driver pops them.
        self._counted = threading.Lock()

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="impala-learner", daemon=True)
            self._thread.start()

    @property
    def threaded(self) -> bool:
        return self._thread is not None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self.queue.wait_ready(timeout=_IDLE_POLL_S):
                    continue
                with self._step:
                    item = self.queue.get_nowait()
                    if item is not None:
                        self.train_on(item)
        except BaseException as e:  # handed to the driver by check()
            self._error = e

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No update runs inside: the one in progress finishes first, and no batch
        leaves the queue until the block ends (for consistent checkpoints)."""
        with self._step:
            yield

    def drain(self) -> None:
        """Train on every queued batch now, in this thread."""
        while (item := self.queue.get_nowait()) is not None:
            self.train_on(item)

    def train_on(self, item: QueuedBatch) -> None:
        """One update of every trainable policy on a queued batch; snapshots weights at
        broadcast time."""
        done: list[tuple[PolicyTrainer, dict[str, float], float, list[int]]] = []
        snapshot = {}
        try:
            for t in self.trainers:
                start = time.perf_counter()
                hyper = t.hyper()
                versions = [_version_of(v, t.index) for v in item.behaviour_versions]
                with t.group.lock:
                    lags = t.lag.observe(versions, self.updates)
                    # Learner processes read the fragments from the object store
                    # themselves; the group releases the handles once they answered.
                    fragments = item.fragments if t.select is None else \
                        [t.select(shared.resolve(f)) for f in item.fragments]
                    metrics = t.group.update_fragments(fragments, t.columns, **hyper)
                done.append((t, metrics, time.perf_counter() - start, lags))
            updates = self.updates + 1
            if updates % self.broadcast_interval == 0:
                for t in self.trainers:
                    snapshot[t.pid] = (t.group.get_weights(), updates)
        finally:
            shared.release_all(item.fragments)
        # An update's metrics and its counts together: whoever reads the counters in
        # ``pop_metrics`` pops exactly the metrics of the updates they count.
        with self._counted:
            for t, metrics, seconds, lags in done:
                t.metrics.add(metrics, seconds, lags)
            self.updates = updates
            self.env_steps_trained += item.env_steps
        if snapshot:
            with self._snapshot_lock:
                self._snapshot = snapshot

    # ------------------------------------------------------------------ driver side
    def pop_metrics(self) -> tuple[int, int, list[dict[str, float]]]:
        """``(updates, env steps trained, each trainer's metrics since the last pop)``,
        read at one instant: no update is counted without its metrics, or the other way."""
        with self._counted:
            return (self.updates, self.env_steps_trained,
                    [t.metrics.pop() for t in self.trainers])

    def pop_weights(self) -> dict[str, tuple[np.ndarray, int]] | None:
        """The newest unpublished weight snapshot of each trainable policy (``{policy:
        (weights, update count)}``), or None."""
        with self._snapshot_lock:
            snapshot, self._snapshot = self._snapshot, {}
        return snapshot or None

    def check(self) -> None:
        """Raise in the driver if the learner thread died."""
        if self._error is not None:
            raise RuntimeError(f"the IMPALA learner thread failed: {self._error!r}") \
                from self._error

    def stop(self, timeout: float = 30.0) -> None:
        """Stop and join the thread; a running update finishes first. Idempotent."""
        self._stop.set()
        self.queue.close()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("IMPALA learner thread did not stop within %.0f s", timeout)
            self._thread = None
