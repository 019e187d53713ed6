"""WorkerSet: the fleet of rollout workers, with restarts of failed ones.

The set spawns ``num_env_runners`` ``RolloutWorker`` actors through the runtime (or,
for ``num_env_runners=0``, one worker in the driver through the inline runtime), and
offers two ways to sample:

* ``sample()``: one fragment from every worker, in parallel (PPO, DQN);
* ``submit(i)`` / ``collect_ready()``: asynchronous requests (IMPALA).

A worker that dies, raises, or stays silent past ``sample_timeout_s`` is killed and
replaced by a new actor with the same index (its first ``sample`` loads the current
weights and observation filter from the board); its in-flight fragment is dropped
and counted. Past ``max_restarts_per_env_runner`` restarts of one worker, sampling
raises ``WorkerFailedError`` naming it and its last error.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from rl.rollout.worker import RolloutWorker, WorkerSpec
from rl.runtime import ActorDiedError, GetTimeoutError, ObjectRef, RemoteError, Runtime
from rl.runtime.base import ActorHandle, BoardReader

__all__ = ["WorkerFailedError", "WorkerSet"]

log = logging.getLogger(__name__)


class WorkerFailedError(RuntimeError):
    """A worker failed more often than the restart budget allows."""


class WorkerSet:
    """Spawns, samples from, and heals the rollout workers."""

    def __init__(self, runtime: Runtime, spec: WorkerSpec, num_workers: int,
                 board: BoardReader | None, *, restart: bool = True, max_restarts: int = 3,
                 sample_timeout_s: float = 60.0):
        self.spec = spec
        self.board = board
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
        self.workers: list[ActorHandle] = [self._spawn(i) for i in range(self.num_workers)]
        self.in_flight: dict[ObjectRef, tuple[int, float]] = {}

    def _spawn(self, index: int) -> ActorHandle:
        return self.runtime.spawn(RolloutWorker, self.spec, index, self.board, num_cpus=1,
                                  name=f"RolloutWorker-{index}")

    # ------------------------------------------------------------------ health
    @property
    def num_healthy(self) -> int:
        return sum(1 for w in self.workers if w.is_alive())

    @property
    def total_restarts(self) -> int:
        return sum(self.restarts)

    def _replace(self, index: int, error: BaseException) -> None:
        """Kill worker ``index`` and start a new one, or raise past the budget."""
        self.restarts[index] += 1
        name = self.workers[index].name
        if not self.restart or self.restarts[index] > self.max_restarts:
            raise WorkerFailedError(
                f"{name} failed {self.restarts[index]} time(s) (restart budget "
                f"max_restarts_per_env_runner={self.max_restarts}, restarts "
                f"{'on' if self.restart else 'off'}); last error: {error}"
            ) from error
        log.warning("%s failed (%s); restarting it (%d/%d)", name,
                    str(error).splitlines()[0], self.restarts[index], self.max_restarts)
        self.workers[index].kill()
        self.workers[index] = self._spawn(index)

    # ------------------------------------------------------------------ sync sampling
    def sample(self, **request: Any) -> list[dict[str, Any]]:
        """One fragment from every healthy worker; failed ones are replaced and their
        fragments dropped. Retries until at least one fragment arrives."""
        while True:
            refs = {w.call("sample", **request): i for i, w in enumerate(self.workers)}
            results = []
            deadline = None if self.sample_timeout_s is None else time.monotonic() + self.sample_timeout_s
            pending = list(refs)
            while pending:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                ready, pending = self.runtime.wait(pending, num_returns=len(pending), timeout=timeout)
                for ref in ready:
                    try:
                        results.append(self.runtime.get(ref))
                    except (ActorDiedError, RemoteError) as e:
                        self.dropped_fragments += 1
                        self._replace(refs[ref], e)
                if pending and deadline is not None and time.monotonic() >= deadline:
                    for ref in pending:
                        self.dropped_fragments += 1
                        self._replace(refs[ref], GetTimeoutError(
                            f"no fragment within sample_timeout_s={self.sample_timeout_s}"))
                    pending = []
            if results:
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
        ready, _ = self.runtime.wait(list(self.in_flight), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            index, _ = self.in_flight.pop(ref)
            try:
                out.append((index, self.runtime.get(ref)))
            except (ActorDiedError, RemoteError) as e:
                self.dropped_fragments += 1
                self._drop_requests_of(index)
                self._replace(index, e)
                out.append((index, None))
        now = time.monotonic()
        for ref, (index, started) in list(self.in_flight.items()):
            if self.sample_timeout_s is not None and now - started > self.sample_timeout_s:
                self.in_flight.pop(ref, None)
                self.dropped_fragments += 1
                self._drop_requests_of(index)
                self._replace(index, GetTimeoutError(
                    f"no fragment within sample_timeout_s={self.sample_timeout_s}"))
                out.append((index, None))
        return out

    def _drop_requests_of(self, index: int) -> None:
        for ref, (i, _) in list(self.in_flight.items()):
            if i == index:
                self.in_flight.pop(ref)
                self.dropped_fragments += 1

    def num_in_flight(self, index: int) -> int:
        return sum(1 for i, _ in self.in_flight.values() if i == index)

    # ------------------------------------------------------------------ misc
    def call_all(self, method: str, *args: Any) -> list[Any]:
        return self.runtime.get([w.call(method, *args) for w in self.workers])

    def call_one(self, index: int, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.runtime.get(self.workers[index].call(method, *args, **kwargs))

    def stop(self) -> None:
        for w in self.workers:
            w.kill()
        if self._owns_runtime:
            self.runtime.shutdown()
