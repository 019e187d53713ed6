"""The process backend: one OS process per actor, started by the forkserver.

Data flow::

    driver process                                     actor process (one per actor)
    ───────────────────────────────────────────        ──────────────────────────────────
    h.call("m", x) ── Call frame ───── socketpair ───▶ serve(): recv, run m(x), reply
       │ opens a slot  arrays >= 64 KiB: export_array ─▶ /dev/shm ─▶ take_array
       │ (in flight)   put refs: payload once per actor ─▶ PUT_CACHE[key] (read-only)
       ▼                                                          │
    slot table  key -> value | error ◀── Result / Failure frame ◀─ Outbox (never blocks)
    (one lock)  (results of other refs        big results: /dev/shm ─▶ take_array
       ▲         are buffered here)
       │
    rt.get / rt.wait: one thread at a time "pumps": poll() over every actor's
    connection, every actor's process sentinel and a wake-up pipe; the other threads
    wait on a Condition. A readable sentinel means the actor is gone: what it sent
    before dying is delivered, every other pending call fails with ActorDiedError.

This module is the driver side: the runtime and the pump. The slot table (keys, slots,
put records, and the refs that point into them) is ``rl.runtime.slots``; the actor
handle, which opens a slot per call and sends the frame, is
``rl.runtime.process_actor``; the frames and their pickling are ``rl.runtime.wire``; the
actor process (its start, init and loop) is ``rl.runtime.actor_loop``.

The poll set is kept across calls (``select.poll``, fds added at spawn and removed at
death) rather than rebuilt per wait as ``multiprocessing.connection.wait`` does; it
watches the same sentinels, with less work on the hot path.

Stop and kill: ``shutdown()`` sends every actor the stop frame, so calls already queued
still get their answers, for up to ``shutdown_timeout`` seconds; then it SIGKILLs what is
left and fails the remaining refs with ``ActorDiedError``. ``h.kill()`` is SIGKILL at
once. Children watch the driver's pid (a pidfd; with forkserver the OS parent is the
forkserver, not the driver) and, if it dies, sweep the driver's segments and exit.

Actors never import the driver's ``__main__`` (see ``rl.runtime.actor_loop``), so a
driver needs no ``if __name__ == "__main__":`` guard and may be fed through stdin.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import multiprocessing as mp
import multiprocessing.util  # noqa: F401  (its atexit hook must be registered before ours)
import os
import select
import signal
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any

from rl.runtime import capabilities as backend_capabilities
from rl.runtime import shm, wire
from rl.runtime.actor_loop import ChildConfig, actor_main, actor_process_class
from rl.runtime.base import (
    ActorDiedError,
    GetTimeoutError,
    ObjectRef,
    RemoteError,
    Runtime,
    WeightsBoard,
)
from rl.runtime.process_actor import DriverPickler, ProcessActor
from rl.runtime.shared import ShmShared
from rl.runtime.slots import CallRef, PutRecord, PutRef, Slot, SlotTable
from rl.runtime.wire import KEY, SHM_THRESHOLD, Init, Result

__all__ = ["DEFAULT_PRELOAD", "SHM_THRESHOLD", "ProcessActor", "ProcessRuntime"]

DEFAULT_PRELOAD = ("numpy", "gymnasium", "cloudpickle", "rl", "rl.runtime.process")
"""What the forkserver imports before forking actors: no torch, so that rollout workers
of the built-in MLP models (which run in numpy) never load it; a learner, or a worker of
a model that runs in torch, imports it itself."""
"""Modules the forkserver imports once, so that each actor starts in milliseconds."""

_session_ids = itertools.count()


class ProcessRuntime(Runtime):
    """Actors as local processes; see the module docstring for the data flow.

    Args:
        start_method: ``"forkserver"`` (default) or ``"spawn"``; never ``"fork"``, which
            is unsafe once torch has started threads.
        preload: modules the forkserver imports once before forking actors.
        shm_threshold: arrays of at least this many bytes travel through shared memory.
        shutdown_timeout: seconds ``shutdown()`` lets actors finish queued calls before
            it kills them.
    """

    name = "process"
    capabilities = backend_capabilities("process")

    def __init__(
        self,
        start_method: str = "forkserver",
        *,
        preload: Sequence[str] = DEFAULT_PRELOAD,
        shm_threshold: int = SHM_THRESHOLD,
        shutdown_timeout: float = 2.0,
    ):
        if start_method not in ("forkserver", "spawn"):
            raise ValueError(
                f"start_method must be 'forkserver' or 'spawn', got {start_method!r}: "
                "plain fork is unsafe once torch has threads"
            )
        self._ctx = mp.get_context(start_method)
        if start_method == "forkserver":
            self._ctx.set_forkserver_preload(list(preload))
        self._process_class = actor_process_class(start_method)
        self.shm_threshold = shm_threshold
        self.shutdown_timeout = shutdown_timeout
        self.prefix = f"{shm.driver_prefix()}{next(_session_ids)}_"
        shm.sweep_stale()
        self._table = SlotTable()
        self._lock = self._table.lock
        self._cond = self._table.cond
        # Serializes every look at a child's exit status, and start(), which polls all
        # children: forkserver reports an exit status once, to whoever reads it first.
        self._proc_lock = threading.Lock()
        self._actors: list[ProcessActor] = []
        self._boards: list[WeightsBoard] = []
        # The thread that pumps (reads the sockets) now, if any. An ident rather than a
        # flag: an exception raised by a signal handler (Ctrl-C) right after a pump can
        # leave the mark set, and a thread that finds its own ident there knows it is
        # stale instead of waiting forever for itself.
        self._pumper: int | None = None
        self._waiting = 0  # threads blocked on the condition, to skip needless notifies
        self._poller = select.poll()
        self._fds: dict[int, tuple[ProcessActor, bool] | None] = {}
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._watch(self._wake_r, None)
        atexit.register(self.shutdown)

    # ------------------------------------------------------------------ public API

    def spawn(
        self,
        cls: type,
        *args: Any,
        num_cpus: float = 1,
        num_gpus: float = 0,
        name: str | None = None,
        resources: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> ProcessActor:
        if self._table.closed:
            raise RuntimeError("spawn() after shutdown()")
        name = self.actor_name(cls, name)
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        cfg = ChildConfig(name, os.getpid(), self.prefix, num_gpus)
        proc = self._process_class(target=actor_main, args=(child_conn, cfg), name=name)
        with self._proc_lock:
            proc.start()
        child_conn.close()
        actor = ProcessActor(self._table, self._proc_lock, proc, parent_conn, name=name,
                             prefix=self.prefix, shm_threshold=self.shm_threshold,
                             num_cpus=num_cpus, num_gpus=num_gpus, resources=resources)
        frame, _ = wire.encode(0, Init(cls, args, kwargs), self.prefix, self.shm_threshold,
                               pickler_cls=DriverPickler)
        with contextlib.suppress(OSError):
            parent_conn.send_bytes(frame)
        with self._lock:
            self._actors.append(actor)
            self._table.add_holder(actor)
            self._watch(parent_conn.fileno(), (actor, False))
            self._watch(proc.sentinel, (actor, True))
            if self._pumper is not None:
                self._wake()  # the pumping thread must poll the new fds too
        return actor

    def get(self, refs: ObjectRef | Sequence[ObjectRef], timeout: float | None = None) -> Any:
        single = isinstance(refs, ObjectRef)
        items = [refs] if single else list(refs)
        slots = [self._slot(r) for r in items]
        if not self._await(slots, len(slots), timeout):
            missing = sum(not s.done for s in slots)
            raise GetTimeoutError(f"{missing} of {len(slots)} refs not ready after {timeout} s")
        values = []
        for ref, slot in zip(items, slots):
            if slot.error is not None:
                raise slot.error.with_traceback(None)
            values.append(self._table.put_value(ref.record) if type(ref) is PutRef
                          else slot.value)
        return values[0] if single else values

    def wait(
        self,
        refs: Sequence[ObjectRef],
        num_returns: int = 1,
        timeout: float | None = None,
    ) -> tuple[list[ObjectRef], list[ObjectRef]]:
        refs = list(refs)
        if not 0 <= num_returns <= len(refs):
            raise ValueError(f"num_returns must be in [0, {len(refs)}], got {num_returns}")
        slots = [self._slot(r) for r in refs]
        self._await(slots, num_returns, timeout)
        ready, pending = [], []
        for ref, slot in zip(refs, slots):
            (ready if slot.done and len(ready) < num_returns else pending).append(ref)
        return ready, pending

    def put(self, value: Any) -> ObjectRef:
        record = PutRecord(ShmShared.store(value, self.prefix, self.shm_threshold,
                                           pickler_cls=DriverPickler))
        with self._lock:
            key = self._table.add_put(record)
        return PutRef(key, record, self._table)

    def weights_board(self, size: int) -> WeightsBoard:
        board = shm.ShmWeightsBoard(size, prefix=self.prefix)
        self._boards.append(board)
        return board

    def shutdown(self) -> None:
        with self._cond:
            if self._table.closed:
                return
            self._table.closed = True
            # Take over the pipes: the pumping thread wakes up, finishes its round and,
            # seeing closed, waits for shutdown to settle its refs instead of pumping.
            self._wake()
            me = threading.get_ident()
            give_up = time.monotonic() + 5.0
            while self._pumper not in (None, me) and time.monotonic() < give_up:
                self._waiting += 1
                self._cond.wait(0.05)
                self._waiting -= 1
            self._pumper = me
        atexit.unregister(self.shutdown)
        live = [a for a in self._actors if not a.dead]
        for actor in live:
            actor.send_stop()
        # Queued calls still get their answers while the actors drain their queues.
        self._pump_until_dead(live, time.monotonic() + self.shutdown_timeout)
        for actor in live:
            if not actor.dead:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(actor.pid, signal.SIGKILL)
        self._pump_until_dead(live, time.monotonic() + 2.0)
        for actor in live:
            if not actor.dead:
                self._mark_dead(actor, "did not exit after SIGKILL")
        for board in self._boards:
            board.close()
        with self._cond:
            for record in self._table.take_puts():
                record.stored.release()
            self._cond.notify_all()
        shm.sweep(self.prefix)
        os.close(self._wake_r)
        os.close(self._wake_w)

    @property
    def actors(self) -> list[ProcessActor]:
        """Every actor spawned by this runtime, dead or alive."""
        return list(self._actors)

    # ------------------------------------------------------------------ internals

    def _slot(self, ref: ObjectRef) -> Slot:
        if type(ref) is CallRef and ref.table is self._table:
            return self._table.slot(ref.key)
        if type(ref) is PutRef and ref.table is self._table:
            return Slot(done=True)
        raise TypeError(f"{ref!r} does not belong to this runtime")

    def _watch(self, fd: int, target: tuple[ProcessActor, bool] | None) -> None:
        self._fds[fd] = target
        self._poller.register(fd, select.POLLIN)

    def _unwatch(self, fd: int) -> None:
        if self._fds.pop(fd, False) is not False:
            self._poller.unregister(fd)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"!")

    def _await(self, slots: list, need: int, timeout: float | None) -> bool:
        """Pump or wait until ``need`` of ``slots`` are done; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pumped = False
        first = 0  # slots[:first] are done; a get of many refs stays linear in their number
        me = threading.get_ident()
        with self._cond:
            while True:
                self._table.reap()
                while first < len(slots) and slots[first].done:
                    first += 1
                if first == len(slots) or (
                    need < len(slots) and first + sum(s.done for s in slots[first:]) >= need
                ):
                    return True
                remaining = None if deadline is None else deadline - time.monotonic()
                other_pumps = self._pumper not in (None, me)
                if remaining is not None and remaining <= 0 and (pumped or other_pumps):
                    return False
                if other_pumps or self._table.closed:
                    self._waiting += 1
                    try:
                        self._cond.wait(remaining)
                    finally:
                        self._waiting -= 1
                    continue
                self._pumper = me
                self._lock.release()
                try:
                    self._pump(remaining)
                finally:
                    self._lock.acquire()
                    self._pumper = None
                    if self._waiting:
                        self._cond.notify_all()
                pumped = True

    def _pump(self, timeout: float | None) -> None:
        """Read whatever is ready, waiting up to ``timeout``. Only the pumping thread."""
        ms = None if timeout is None else max(timeout, 0.0) * 1000.0
        for fd, _ in self._poller.poll(ms):
            target = self._fds.get(fd, False)
            if target is False:
                continue
            if target is None:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.read(self._wake_r, 4096)
                continue
            actor, is_sentinel = target
            if is_sentinel:
                # Return after a death: its fds are closed, and a later event in this
                # batch could name a reused fd number.
                self._on_death(actor)
                return
            try:
                frame = actor.recv()
            except (EOFError, OSError):
                # The child closed its end; its sentinel reports the death.
                with self._lock:
                    self._unwatch(fd)
                continue
            self._deliver(actor, frame)

    def _deliver(self, actor: ProcessActor, frame: bytes) -> None:
        key = KEY.unpack_from(frame)[0]
        value, error = None, None
        try:
            msg = wire.decode(frame)
            if type(msg) is Result:
                value = msg.value
            else:
                error = msg.to_error(actor.name)
        except Exception as exc:
            error = RemoteError(
                actor.name,
                type(exc).__name__,
                f"the result could not be unpickled: {exc}",
                traceback.format_exc(),
                exc,
            )
        with self._lock:
            slot = actor.take_call(key)
            if slot is not None:
                self._table.finish(key, slot, value, error)

    def _on_death(self, actor: ProcessActor) -> None:
        """Deliver what the actor sent before dying, then fail the rest."""
        for frame in actor.drain():
            self._deliver(actor, frame)
        self._mark_dead(actor)

    def _mark_dead(self, actor: ProcessActor, detail: str = "") -> None:
        if actor.dead:  # only the pumping thread (or shutdown) gets here
            return
        exitcode = actor.exit_status()
        with self._lock:
            if actor.dead:
                return
            if not detail and self._table.closed:
                detail = "the runtime shut down"
            self._unwatch(actor.conn_fd)
            self._unwatch(actor.sentinel)
            for key, slot in actor.mark_dead(exitcode):
                self._table.finish(key, slot, error=ActorDiedError(actor.name, exitcode, detail))
            self._table.remove_holder(actor)
            self._cond.notify_all()
        actor.release()
        # What it created and had not handed over (it died between create and send).
        shm.sweep(f"{self.prefix}{actor.pid}_")

    def _pump_until_dead(self, actors: list[ProcessActor], deadline: float) -> None:
        while any(not a.dead for a in actors):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                self._pump(remaining)
            except (OSError, ValueError):
                return
            with self._cond:
                self._cond.notify_all()
