"""WorkerSet: the fleet of rollout workers, with restarts of failed ones.

The set spawns ``num_env_runners`` ``RolloutWorker`` actors through the runtime (or,
for ``num_env_runners=0``, one worker in the driver through the inline runtime), and
offers two ways to sample:

* ``sample()``: one fragment from every worker, in parallel (PPO, DQN);
* ``submit(i)`` / ``collect_ready()``: asynchronous requests (IMPALA).

Failure semantics:

* A worker that dies (any signal), raises, or stays silent past ``sample_timeout_s``
  is killed and replaced by a new actor with the same index, whose first ``sample``
  loads the current weights and observation filter from their boards. Its in-flight
  fragment is dropped and counted (``dropped_fragments``); the other workers' fragments
  are used meanwhile. Each failure is logged once, as one line.
* Past ``max_restarts_per_env_runner`` restarts of one worker (or at its first failure
  with restarts off), sampling raises ``WorkerFailedError`` naming it and its last error.
* A user's episode callback that raises in a worker is not a failure of the worker:
  sampling raises its ``CallbackError`` at once, never restarting or retrying.
* Sub-env errors that a worker survived (``restart_failed_sub_environments``) arrive
  with its fragments: they are counted in ``env_errors`` and each distinct error text
  is logged once.

Waiting for workers is where Ctrl-C may abandon an iteration (``rl.interrupts``).

``get_state()``/``set_state()`` carry the counters and every worker's state through a
checkpoint (see ``RolloutWorker.get_state``), so that a resumed run continues the saved
run's episodes.

Start-up: ``prefetch()`` sends the first sample request as soon as the workers exist
(the algorithm does so before it builds its learners), and the first ``sample()``
collects those fragments. With ``RL_STARTUP_TRACE=<file>`` in the environment, the
first worker to finish a fragment writes the wall-clock time into that file
(``benchmarks/startup.py`` reports it as the time to first sample).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from rl.callbacks import CallbackError
from rl.interrupts import INTERRUPTS
from rl.rollout.worker import Boards, RolloutWorker, WorkerSpec
from rl.runtime import ActorDiedError, GetTimeoutError, ObjectRef, RemoteError, Runtime, shared
from rl.runtime.base import ActorHandle
from rl.runtime.blocks import BlockHandle

__all__ = ["WorkerFailedError", "WorkerSet"]

log = logging.getLogger(__name__)

_FAILURES = (ActorDiedError, RemoteError, GetTimeoutError)


class WorkerFailedError(RuntimeError):
    """A worker failed more often than the restart budget allows.

    Attributes:
        worker: the worker's name, e.g. ``"RolloutWorker-1"``.
        last_error: the error of its last failure (also ``__cause__``).
    """

    def __init__(self, message: str, worker: str, last_error: BaseException):
        super().__init__(message)
        self.worker = worker
        self.last_error = last_error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class WorkerSet:
    """Spawns, samples from, and heals the rollout workers.

    Attributes:
        restarts: per worker index, how many times it was replaced.
        dropped_fragments: fragments lost to failures.
        env_errors: sub-env errors the workers survived.
    """

    def __init__(self, runtime: Runtime, spec: WorkerSpec, num_workers: int,
                 boards: Boards | None, *, restart: bool = True, max_restarts: int = 3,
                 sample_timeout_s: float = 60.0):
        self.spec = spec
        self.boards = boards
        self.restart = restart
        self.max_restarts = max_restarts
        self.sample_timeout_s = sample_timeout_s or None
        self.local = num_workers == 0
        if self.local:
            from rl.runtime.inline import InlineRuntime

            self.runtime: Runtime = InlineRuntime()
            self._owns_runtime = True
        else:
            self.runtime = runtime
            self._owns_runtime = False
        self.num_workers = max(1, num_workers)
        self.restarts = [0] * self.num_workers
        self.dropped_fragments = 0
        self.env_errors = 0
        self._logged_env_errors: set[str] = set()
        # True from the start of a sync sample() until it returns: if it never returned
        # (Ctrl-C), the workers are mid-fragment and their state is not worth saving.
        self._sampling = False
        self.workers: list[ActorHandle] = [self._spawn(i) for i in range(self.num_workers)]
        self.in_flight: dict[ObjectRef, tuple[int, float]] = {}
        # Requests sent by prefetch(): ({ref: worker index}, the request).
        self._prefetched: tuple[dict[ObjectRef, int], dict[str, Any]] | None = None

    def _spawn(self, index: int) -> ActorHandle:
        return self.runtime.spawn(RolloutWorker, self.spec, index, self.boards,
                                  self.restarts[index], num_cpus=1,
                                  name=f"RolloutWorker-{index}")

    # ------------------------------------------------------------------ health
    @property
    def num_healthy(self) -> int:
        return sum(1 for w in self.workers if w.is_alive())

    @property
    def total_restarts(self) -> int:
        return sum(self.restarts)

    def _replace(self, index: int, error: BaseException) -> None:
        """Kill worker ``index`` and start a new one, or raise past the budget. A user's
        callback that raised is not a worker failure: it raises ``CallbackError``."""
        _raise_callback_error(error)
        self.restarts[index] += 1
        name = self.workers[index].name
        if not self.restart or self.restarts[index] > self.max_restarts:
            self.workers[index].kill()
            budget = (f"max_restarts_per_env_runner={self.max_restarts}" if self.restart
                      else "restart_failed_env_runners=False")
            raise WorkerFailedError(
                f"{name} failed {self.restarts[index]} time(s), past its restart budget "
                f"({budget}); last error: {_first_line(error)}", name, error) from error
        log.warning("%s failed (%s); restarting it (%d/%d)", name, _first_line(error),
                    self.restarts[index], self.max_restarts)
        self.workers[index].kill()
        self.workers[index] = self._spawn(index)

    def _lose(self, index: int, error: BaseException) -> None:
        """Worker ``index``'s request failed or timed out: drop (and count) that fragment
        and any other the worker has in flight, and replace the worker."""
        self.dropped_fragments += 1
        self._drop_requests_of(index)
        self._replace(index, error)

    def _timeout_error(self) -> GetTimeoutError:
        return GetTimeoutError(f"no fragment within sample_timeout_s={self.sample_timeout_s}")

    def _ingest(self, result: dict[str, Any]) -> dict[str, Any]:
        """Count (and log once) the sub-env errors a fragment reports; a fragment in a
        worker's block (``rl.runtime.blocks``) gets its columns as read-only views of
        the block as ``batch`` and the handle as ``block``: the caller releases it once
        it copied what it needs (``release_blocks``)."""
        if isinstance(result.get("batch"), BlockHandle):
            handle = result["block"] = result["batch"]
            try:
                result["batch"] = handle.resolve()
            except RuntimeError as e:  # swept with a worker that died since
                raise ActorDiedError(f"RolloutWorker-{result['worker_index']}", None,
                                     str(e)) from None
        for env_index, method, error in result.get("env_errors") or ():
            self.env_errors += 1
            if error not in self._logged_env_errors:
                self._logged_env_errors.add(error)
                log.warning("sub-env %d of RolloutWorker-%d: %s() raised %s; recreated it and "
                            "discarded its episode (repeats are counted in env/errors)",
                            env_index, result["worker_index"], method, error)
        return result

    @staticmethod
    def release_blocks(results: list[dict[str, Any]]) -> None:
        """Hand the blocks of ``results`` back to their workers: call it once nothing
        reads those results' ``batch`` views any more (their train batch is built)."""
        shared.release_all(r.get("block") for r in results)

    # ------------------------------------------------------------------ sync sampling
    def prefetch(self, **request: Any) -> None:
        """Send every worker ``sample(**request)`` now; the next ``sample()`` with the
        same request collects these fragments instead of asking again (so the workers
        sample while the driver is busy, e.g. building its learners at start-up)."""
        self.drop_prefetch()
        self._prefetched = ({w.call("sample", **request): i
                             for i, w in enumerate(self.workers)}, dict(request))

    def drop_prefetch(self) -> None:
        """Discard prefetched fragments not yet collected (their inputs changed: new
        weights, a restore, a checkpoint of the workers' state). It waits for them, up
        to ``sample_timeout_s``, to release what they share; a failed one is left to
        the next sample to notice."""
        if self._prefetched is None:
            return
        refs, self._prefetched = self._prefetched[0], None
        for ref in refs:
            try:
                with INTERRUPTS.abandonable():
                    result = self.runtime.get(ref, timeout=self.sample_timeout_s)
                shared.release_all(result.values() if isinstance(result, dict) else ())
            except _FAILURES:
                pass

    def sample(self, **request: Any) -> list[dict[str, Any]]:
        """One fragment from every healthy worker; failed ones are replaced and their
        fragments dropped. Retries until at least one fragment arrives. Fragments a
        ``prefetch`` with the same request asked for are collected first."""
        self._sampling = True
        early = None
        if self._prefetched is not None and self._prefetched[1] == request:
            early, self._prefetched = self._prefetched[0], None
        self.drop_prefetch()
        while True:
            refs = early or {w.call("sample", **request): i for i, w in enumerate(self.workers)}
            early = None
            results = []
            deadline = None if self.sample_timeout_s is None else \
                time.monotonic() + self.sample_timeout_s
            pending = list(refs)
            while pending:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                with INTERRUPTS.abandonable():
                    ready, pending = self.runtime.wait(pending, num_returns=len(pending),
                                                       timeout=timeout)
                for ref in ready:
                    try:
                        results.append(self._ingest(self.runtime.get(ref)))
                    except (ActorDiedError, RemoteError) as e:
                        self._lose(refs[ref], e)
                if pending and deadline is not None and time.monotonic() >= deadline:
                    for ref in pending:
                        self._lose(refs[ref], self._timeout_error())
                    pending = []
            if results:
                self._sampling = False
                return results

    # ------------------------------------------------------------------ async sampling
    def submit(self, index: int, **request: Any) -> ObjectRef:
        ref = self.workers[index].call("sample", **request)
        self.in_flight[ref] = (index, time.monotonic())
        return ref

    def collect_ready(self, timeout: float | None) -> list[tuple[int, dict[str, Any] | None]]:
        """Results of in-flight requests that are ready within ``timeout``, as
        ``(worker_index, result)``; a failed request gives ``(index, None)`` after the
        worker was replaced."""
        if not self.in_flight:
            return []
        with INTERRUPTS.abandonable():
            ready, _ = self.runtime.wait(list(self.in_flight), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            if ref not in self.in_flight:
                continue  # dropped with its worker's other requests below
            index, _ = self.in_flight.pop(ref)
            try:
                out.append((index, self._ingest(self.runtime.get(ref))))
            except (ActorDiedError, RemoteError) as e:
                self._lose(index, e)
                out.append((index, None))
        now = time.monotonic()
        for ref, (index, started) in list(self.in_flight.items()):
            if ref not in self.in_flight:
                continue  # dropped with its worker's other requests
            if self.sample_timeout_s is not None and now - started > self.sample_timeout_s:
                self.in_flight.pop(ref)
                self._lose(index, self._timeout_error())
                out.append((index, None))
        return out

    def _drop_requests_of(self, index: int) -> None:
        for ref, (i, _) in list(self.in_flight.items()):
            if i == index:
                self.in_flight.pop(ref)
                self.dropped_fragments += 1
                self._release_result(ref)

    def _release_result(self, ref: ObjectRef) -> None:
        """Release what a dropped request's result shared, if it already arrived."""
        try:
            if self.runtime.wait([ref], num_returns=1, timeout=0)[0]:
                result = self.runtime.get(ref, timeout=0)
                shared.release_all(result.values() if isinstance(result, dict) else ())
        except _FAILURES:
            pass

    def num_in_flight(self, index: int) -> int:
        return sum(1 for i, _ in self.in_flight.values() if i == index)

    def in_flight_results(self) -> list[tuple[int, dict[str, Any]]]:
        """The in-flight requests' results, in submission order, as ``(worker_index,
        result)``, waiting up to ``sample_timeout_s`` in all; the requests stay in
        flight (for checkpoints). A request that fails or does not answer in time is
        left out, with a warning (its worker's failure surfaces at the next collect)."""
        deadline = None if self.sample_timeout_s is None else \
            time.monotonic() + self.sample_timeout_s
        out = []
        for ref, (index, _) in list(self.in_flight.items()):
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                with INTERRUPTS.abandonable():
                    out.append((index, self.runtime.get(ref, timeout=timeout)))
            except _FAILURES as e:
                log.warning("an in-flight fragment of RolloutWorker-%d is not saved (%s)",
                            index, _first_line(e))
        return out

    def restore_in_flight(self, results: list[tuple[int, dict[str, Any]]]) -> None:
        """Make saved ``in_flight_results()`` in flight again, ready at once, ahead of
        any new request (the workers' restored state already follows them)."""
        now = time.monotonic()
        for index, result in results:  # a smaller set takes over the extra ones' share
            self.in_flight[self.runtime.put(result)] = (index % self.num_workers, now)

    # ------------------------------------------------------------------ state
    @property
    def _replays_episodes(self) -> bool:
        """Whether the workers record their running games, so that states are worth saving."""
        return self.spec.seed is not None and self.spec.exact_resume

    def get_state(self) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
        """The counters (JSON) and each worker's state (arrays, ``worker_<i>``).

        Worker states are left out when the workers do not record their games (no seed,
        or ``exact_resume=False``), and, with a warning, when a worker cannot give one
        (it died, or does not answer within ``sample_timeout_s``) or when the last
        ``sample()`` was interrupted; a run resumed from such a checkpoint starts fresh
        episodes.
        """
        counters = {"restarts": list(self.restarts), "dropped_fragments": self.dropped_fragments,
                    "env_errors": self.env_errors, "num_workers": self.num_workers,
                    "num_envs": self.spec.num_envs}
        if not self._replays_episodes:
            return counters, {}
        self.drop_prefetch()  # the saved state must be the one the next sample starts from
        if self._sampling:
            log.warning("worker states not saved: the last sample() did not complete; a "
                        "resumed run starts fresh episodes")
            return counters, {}
        try:
            with INTERRUPTS.abandonable():  # a save may be abandoned: it is atomic
                states = self.runtime.get([w.call("get_state") for w in self.workers],
                                          timeout=self.sample_timeout_s)
        except _FAILURES as e:
            log.warning("worker states not saved (%s); a resumed run starts fresh episodes",
                        _first_line(e))
            return counters, {}
        return counters, {f"worker_{i}": s for i, s in enumerate(states)}

    def set_state(self, counters: dict[str, Any],
                  states: dict[str, dict[str, np.ndarray]]) -> list[int]:
        """Restore ``get_state()``'s output into a set with the same number of workers
        and envs (otherwise only the totals are kept and the workers start afresh).

        Returns:
            The indexes of the workers whose running episodes continue exactly where
            the checkpoint left them (the others start fresh episodes).
        """
        same_shape = (counters.get("num_workers") == self.num_workers
                      and counters.get("num_envs") == self.spec.num_envs)
        restarts = [int(r) for r in counters.get("restarts", [])]
        if same_shape and len(restarts) == self.num_workers:
            self.restarts = restarts
        else:
            # Totals survive a change of shape; they are reported summed anyway.
            self.restarts[0] += sum(restarts)
        self.dropped_fragments = int(counters.get("dropped_fragments", 0))
        self.env_errors = int(counters.get("env_errors", 0))
        self.drop_prefetch()  # sampled from the state the restore replaces
        if not states or not self._replays_episodes:
            return []  # unseeded or unrecorded episodes cannot be replayed: fresh ones start
        if not same_shape or len(states) != self.num_workers:
            log.warning("checkpoint holds %s workers x %s envs, this run %d x %d: the workers "
                        "start fresh episodes", counters.get("num_workers"),
                        counters.get("num_envs"), self.num_workers, self.spec.num_envs)
            return []
        resumed = []
        refs = [w.call("set_state", states[f"worker_{i}"]) for i, w in enumerate(self.workers)]
        for i, ref in enumerate(refs):
            try:
                differ = self.runtime.get(ref, timeout=self.sample_timeout_s)
            except _FAILURES as e:
                self._replace(i, e)
                continue
            if differ:
                log.warning("sub-envs %s did not replay their saved episode exactly (the env "
                            "is not deterministic given its seed and actions)", differ)
            else:
                resumed.append(i)
        return resumed

    # ------------------------------------------------------------------ misc
    def call_one(self, index: int, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.runtime.get(self.workers[index].call(method, *args, **kwargs))

    def stop(self) -> None:
        if self._prefetched is not None:  # release what already arrived; kill the rest
            for ref in self._prefetched[0]:
                self._release_result(ref)
            self._prefetched = None
        for w in self.workers:
            w.kill()
        if self._owns_runtime:
            self.runtime.shutdown()


def _raise_callback_error(error: BaseException) -> None:
    """Re-raise a ``CallbackError`` that reached the driver as a worker's ``RemoteError``."""
    if isinstance(error, CallbackError):
        raise error
    if isinstance(error, RemoteError) and error.remote_type == CallbackError.__name__:
        if isinstance(error.cause, CallbackError):
            raise error.cause from None
        raise CallbackError(f"(in {error.actor_name})", error.message,
                            error.remote_traceback) from None
