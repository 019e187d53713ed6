"""LearnerGroup: the algorithm's view of its learner(s), in the driver or in N processes.

Algorithms only call ``update`` (or ``update_fragments``), ``get_weights``,
``set_weights``, ``state``, ``load_state`` and ``stop`` on it, whatever ``num_learners``
is:

* ``num_learners=0``: one ``Learner`` in the driver (``group.local``); ``update`` is a
  plain call.
* ``num_learners=N >= 1``: N ``LearnerActor`` ranks spawned through the runtime
  (``num_cpus_per_learner``, ``num_gpus_per_learner`` each), joined in one
  ``torch.distributed`` group when N > 1 (see ``rl.learner.distributed``)::

      start:  rank 0 ── rendezvous() ──▶ tcp://<its reachable host>:<port> ──▶ join on all
      update(batch) ── N equal shards ──▶ rank r: learner.update(shard r)
                                          (DDP averages the gradients of every backward)
      update_fragments(handles) ── rank r's env columns, as handles ──▶ rank r resolves
                                          them from the object store, stacks, updates
                                          (every column: shards differ by at most one)
                    ◀── metrics of every rank, averaged (weighted by shard size);
                        per-row arrays concatenated
      get_weights() ◀── rank 0            state() ◀── rank 0 (model + optimizer)
      set_weights(), load_state() ──▶ every rank

The minibatch size is per learner, so N learners take N times the rows per SGD step.
Checkpoints hold rank 0's state only, the same tensors as a driver learner's: a
checkpoint written with any N loads with any other.

A learner that dies or raises makes the group unusable (its peers may be blocked in a
collective for it): the remaining ranks are killed at once and every call raises
``LearnerFailedError``. Nothing waits without a sentinel: a dead rank fails its call
the moment the runtime notices, and the group stops waiting for the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rl.data import SampleBatch
from rl.learner.distributed import LearnerActor, process_group_backend
from rl.learner.learner import Learner
from rl.runtime import ActorDiedError, RuntimeErrorBase, shared

__all__ = ["LearnerFailedError", "LearnerGroup", "merge_metrics", "shard_batch",
           "shard_bounds"]

log = logging.getLogger("rl")

STOP_TIMEOUT_S = 10.0
"""How long ``stop()`` lets in-flight updates finish before it kills the learners."""

DEATH_GRACE_S = 2.0
"""After a learner raised, how long to wait for its peers to report a death behind it."""


class LearnerFailedError(RuntimeError):
    """A learner process died or raised; the group cannot train any more."""


def shard_batch(batch: SampleBatch, num_shards: int, axis: int = 0) -> list[SampleBatch]:
    """``num_shards`` equal, contiguous shards of ``batch`` along ``axis``.

    Equal sizes keep the ranks in lockstep (the same number of minibatches, so the same
    number of gradient all-reduces) and make the average of their gradients the
    gradient of the whole. The ``size % num_shards`` rows left over are dropped.

    Args:
        batch: columns sharing axis 0; ``axis=1`` shards time-major ``[T, N]`` columns
            by env (whole unrolls).
        num_shards: number of learners.
        axis: 0 (rows) or 1 (env columns).
    """
    if num_shards == 1:
        return [batch]
    size = next(iter(batch.values())).shape[axis] // num_shards
    lead = (slice(None),) * axis
    return [SampleBatch({k: v[(*lead, slice(i * size, (i + 1) * size))]
                         for k, v in batch.items()}) for i in range(num_shards)]


def shard_bounds(size: int, num_shards: int) -> list[tuple[int, int]]:
    """``num_shards`` contiguous ``(start, stop)`` ranges covering ``0 .. size``, whose
    lengths differ by at most one (the first ``size % num_shards`` are one longer).

    For batches that must be trained whole (IMPALA's env columns); each learner then
    weights its gradients by its share (``IMPALALearner.update``)."""
    if not 1 <= num_shards <= size:
        raise ValueError(f"cannot cut {size} items into {num_shards} non-empty shards; "
                         f"num_shards must be between 1 and {size}")
    base, extra = divmod(size, num_shards)
    bounds, start = [], 0
    for r in range(num_shards):
        stop = start + base + (r < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


def merge_metrics(results: Sequence[dict[str, Any]], axis: int = 0,
                  weights: Sequence[float] | None = None) -> dict[str, Any]:
    """One result from every rank's: scalars averaged (weighted by ``weights``, each
    rank's shard size, when given), per-row arrays (e.g. TD errors) concatenated in
    shard order, so they line up with the rows that were trained."""
    if len(results) == 1:
        return results[0]
    out: dict[str, Any] = {}
    for key, first in results[0].items():
        values = [r[key] for r in results]
        if isinstance(first, np.ndarray):
            out[key] = np.concatenate(values, axis=axis)
        else:
            out[key] = float(np.average(values, weights=weights))
    return out


class LearnerGroup:
    """The learner(s) of an algorithm; see the module docstring.

    Args:
        learner_factory: builds one ``Learner`` (picklable for ``num_learners >= 1``:
            it runs in each learner process).
        config: the algorithm config; reads ``num_learners``, ``num_cpus_per_learner``,
            ``num_gpus_per_learner`` and ``seed``.
        runtime: spawns the learner actors (required when ``num_learners >= 1``).
        shard_axis: the batch axis split across learners: 0 for flat batches, 1 for
            time-major ``[T, N]`` batches (each learner gets whole env columns).

    Attributes:
        local: the driver's learner (``num_learners=0``), else ``None``.
        actors: the learner actors, rank order (``num_learners >= 1``).
    """

    def __init__(self, learner_factory: Callable[[], Learner], config: Any,
                 runtime: Any = None, *, shard_axis: int = 0):
        self.num_learners = int(config.num_learners)
        self.shard_axis = shard_axis
        self.local: Learner | None = None
        self.actors: list[Any] = []
        self._runtime = runtime
        self._error: LearnerFailedError | None = None
        if self.num_learners == 0:
            self.local = learner_factory()
            return
        if runtime is None:
            raise ValueError(f"num_learners={self.num_learners} needs a runtime to start "
                             "learner processes")
        try:
            self._start(learner_factory, config)
        except BaseException:
            self.stop()
            raise

    def _start(self, learner_factory: Callable[[], Learner], config: Any) -> None:
        n, rt = self.num_learners, self._runtime
        gpus = float(config.num_gpus_per_learner)
        # A learner actor in the driver process shares the driver's threads.
        threads = (None if rt.capabilities.actors_in_driver
                   else max(1, int(config.num_cpus_per_learner)))
        seed = 0 if config.seed is None else int(config.seed)
        for r in range(n):  # appended one by one: stop() ends those spawned before an error
            self.actors.append(rt.spawn(
                LearnerActor, learner_factory, rank=r, world_size=n, seed=seed,
                num_threads=threads, use_gpu=gpus > 0, num_cpus=config.num_cpus_per_learner,
                num_gpus=gpus, name=f"Learner-{r}"))
        devices = self._call_all("device")
        if n > 1:
            backend = process_group_backend(devices)
            address = self._call_each("rendezvous", [()], {})[0]  # rank 0 hosts it
            self._call_all("join", address, backend)
            log.debug("%d learners joined a %s group at %s on %s", n, backend, address, devices)

    # ------------------------------------------------------------------ the interface
    @property
    def module(self):
        """The driver learner's module (``num_learners=0`` only)."""
        if self.local is None:
            raise AttributeError(f"with num_learners={self.num_learners} the modules live in "
                                 "the learner processes; use get_weights() or state()")
        return self.local.module

    def update(self, batch: SampleBatch, **hyper: Any) -> dict[str, Any]:
        """One training update on ``batch``, split across the learners; returns metrics."""
        if self.local is not None:
            return self.local.update(batch, **hyper)
        shards = shard_batch(batch, self.num_learners, self.shard_axis)
        results = self._call_each("update", [(s,) for s in shards], hyper)
        return merge_metrics(results, self.shard_axis)

    def update_fragments(self, fragments: list[Any], columns: int,
                         **hyper: Any) -> dict[str, Any]:
        """One update on time-major worker fragments ``[T, columns, ...]`` stacked along
        the env axis, for learners that define ``update_fragments`` (IMPALA).

        Fragments may be ``Shared`` handles (``rl.runtime.shared``): with learner
        processes each rank resolves the fragments of its contiguous share of the env
        columns itself, so the driver moves handles only. Every column is trained: when
        the columns do not divide by N the shards differ by one column
        (``shard_bounds``), each rank weights its gradients by its share and the
        metrics are averaged with the same weights (with equal shards these are the
        shards ``update`` cuts from the stacked batch). The handles are released once
        every rank has answered.
        """
        try:
            if self.local is not None:
                return self.local.update_fragments([shared.resolve(f) for f in fragments],
                                                   **hyper)
            bounds = shard_bounds(len(fragments) * columns, self.num_learners)
            pieces = []
            for lo, hi in bounds:
                pieces.append(([(f, max(lo, i * columns) - i * columns,
                                 min(hi, (i + 1) * columns) - i * columns)
                                for i, f in enumerate(fragments)
                                if max(lo, i * columns) < min(hi, (i + 1) * columns)],))
            return merge_metrics(self._call_each("update_fragments", pieces, hyper),
                                 self.shard_axis, weights=[hi - lo for lo, hi in bounds])
        finally:
            shared.release_all(fragments)

    def get_weights(self) -> np.ndarray:
        """Rank 0's parameters and buffers as one float32 vector."""
        if self.local is not None:
            return self.local.get_weights()
        return self._call_each("get_weights", [()], {})[0]

    def set_weights(self, vector: np.ndarray) -> None:
        if self.local is not None:
            self.local.set_weights(vector)
        else:
            self._call_all("set_weights", vector)

    def state(self) -> dict[str, Any]:
        """Rank 0's learner state (module, optimizer, extras), tensors on the CPU."""
        if self.local is not None:
            return self.local.state()
        return self._call_each("state", [()], {})[0]

    def load_state(self, state: dict[str, Any]) -> None:
        """Load ``state`` (from any number of learners) into every learner."""
        if self.local is not None:
            self.local.load_state(state)
        else:
            self._call_all("load_state", state)

    def stop(self) -> None:
        """Let in-flight updates finish, leave the process group and end every learner
        process. Idempotent."""
        actors, self.actors = self.actors, []
        if not actors:
            return
        if self._error is None:
            refs = [a.call("leave") for a in actors]
            try:
                _, pending = self._runtime.wait(refs, num_returns=len(refs),
                                                timeout=STOP_TIMEOUT_S)
                if pending:
                    log.warning("%d learners did not stop within %.0f s; killing them",
                                len(pending), STOP_TIMEOUT_S)
            finally:
                self._kill(actors)
        else:
            self._kill(actors)

    # ------------------------------------------------------------------ calls to the ranks
    def _call_all(self, method: str, *args: Any) -> list[Any]:
        """The same call on every rank."""
        return self._call_each(method, [args] * len(self.actors), {})

    def _call_each(self, method: str, args: list[tuple], kwargs: dict[str, Any]) -> list[Any]:
        """``method(*args[r], **kwargs)`` on ranks ``0 .. len(args) - 1``; their results.

        Returns as soon as every call answered, or raises as soon as one failed.
        """
        if self._error is not None:
            raise LearnerFailedError(str(self._error)) from self._error
        rt = self._runtime
        actors = self.actors[: len(args)]
        # Ctrl-C between two of these calls would leave a rank waiting in a collective
        # for a peer that got no call; fit() defers signals during updates (rl.interrupts).
        refs = [a.call(method, *a_args, **kwargs) for a, a_args in zip(actors, args)]
        try:
            pending = refs
            while pending:
                ready, pending = rt.wait(pending, num_returns=1)
                rt.get(ready)  # raises the first failure without waiting for the rest
            return rt.get(refs)
        except RuntimeErrorBase as e:
            cause = self._root_cause(e, refs)
            raise self._fail(method, cause) from cause

    def _root_cause(self, error: BaseException, refs: list[Any]) -> BaseException:
        """The death behind ``error``, if a rank died: its peers see a closed connection
        and may report that first. Waits up to ``DEATH_GRACE_S`` for the others."""
        if isinstance(error, ActorDiedError):
            return error
        ready, _ = self._runtime.wait(refs, num_returns=len(refs), timeout=DEATH_GRACE_S)
        for ref in ready:
            try:
                self._runtime.get(ref)
            except ActorDiedError as died:
                return died
            except RuntimeErrorBase:
                pass
        return error

    def _fail(self, method: str, cause: BaseException) -> LearnerFailedError:
        name = getattr(cause, "actor_name", "?")
        what = f"process {name!r} died" if isinstance(cause, ActorDiedError) else \
            f"{name!r} raised"
        self._error = LearnerFailedError(
            f"learner {what} during {method}() (num_learners={self.num_learners}): "
            f"{cause}\nThe learner group is stopped and this algorithm cannot train any more; "
            "build a new one, e.g. with Algorithm.from_checkpoint(<last checkpoint>)")
        actors, self.actors = self.actors, []
        self._kill(actors)
        return self._error

    @staticmethod
    def _kill(actors: list[Any]) -> None:
        for actor in actors:
            actor.kill()
