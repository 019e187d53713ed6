"""The process backend's driver-side actor handle.

``ProcessActor.call`` pickles a call (``DriverPickler``: the wire's pickler plus object
refs), opens a slot for its answer in the runtime's ``SlotTable``
(``rl.runtime.slots``), keeps it among the actor's calls in flight and returns a
``CallRef``. A put value (``PutRef``) is shipped to each actor at most once: the handle
remembers which puts its actor holds, and tells it in the next call which ones it may
forget.

The runtime's pump (``rl.runtime.process``) uses the handle's driver-side surface: the
actor's connection and sentinel (``conn_fd``, ``sentinel``, ``recv``, ``drain``), its
calls in flight (``take_call``, ``mark_dead``), the stop frame (``send_stop``) and the
process's exit status (``exit_status``, ``release``). State shared with the pump is read
and written under the table's lock.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

from rl.runtime import wire
from rl.runtime.base import ActorDiedError, ActorHandle, ObjectRef
from rl.runtime.slots import CallRef, PutRef, Slot, SlotTable
from rl.runtime.wire import STOP_FRAME, Call

__all__ = ["DriverPickler", "ProcessActor"]


class DriverPickler(wire.Pickler):
    """The driver's pickler: the wire's, plus object refs.

    A put ref travels as ``resolve_put(key, payload)``, with the payload only the first
    time the receiving actor sees it; a call ref is refused with a hint.

    Args:
        sent_puts: put keys the receiving actor already holds (``None``: refs refused,
            as inside a ``put`` value).

    Attributes:
        puts: the put refs it wrote (pinned until the call is answered).
    """

    def __init__(self, file, prefix, threshold, *, held=False, sent_puts=None):
        super().__init__(file, prefix, threshold, held=held)
        self.sent_puts = sent_puts
        self.puts: list[PutRef] = []

    def reducer_override(self, obj):
        kind = type(obj)
        if kind is PutRef:
            if self.sent_puts is None:
                raise TypeError("an ObjectRef cannot be stored inside a put() value")
            self.puts.append(obj)
            payload = None if obj.key in self.sent_puts else obj.record.stored.payload
            return wire.resolve_put, (obj.key, payload)
        if kind is CallRef:
            raise TypeError(
                f"{obj!r} is the result of a call; pass rt.get(ref), or rt.put(value) "
                "to share one value among actors"
            )
        return super().reducer_override(obj)


class ProcessActor(ActorHandle):
    """Driver-side handle of one actor process.

    Args:
        table: the runtime's slot table.
        proc_lock: the runtime's lock around every look at a child's exit status.
        proc, conn: the child process and the driver's end of its socket.
        prefix, shm_threshold: the session's segment prefix and array size threshold.

    Attributes:
        name: readable name, also the child's process name (``rl:<name>``).
        pid: the child's pid.
        num_cpus, num_gpus, resources: what ``spawn`` was asked for (recorded only).
    """

    def __init__(self, table: SlotTable, proc_lock: threading.Lock, proc, conn, *,
                 name: str, prefix: str, shm_threshold: int, num_cpus: float,
                 num_gpus: float, resources: dict[str, float] | None):
        self.name = name
        self.pid: int = proc.pid
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.resources = dict(resources or {})
        self._table = table
        self._proc_lock = proc_lock
        self._proc = proc
        self._conn = conn
        self._prefix = prefix
        self._threshold = shm_threshold
        self._send_lock = threading.Lock()
        self._inflight: dict[int, Slot] = {}
        self._sent_puts: set[str] = set()
        self._free: list[str] = []
        self._dead = False
        self._exitcode: int | None = None

    def __repr__(self) -> str:
        return f"ProcessActor({self.name!r}, pid={self.pid})"

    def call(self, method: str, *args: Any, **kwargs: Any) -> ObjectRef:
        table = self._table
        with table.lock:
            table.reap()
            key, slot = table.open()
            if self._dead or table.closed:
                error = ActorDiedError(self.name, self._exitcode, "call after it stopped")
                table.finish(key, slot, error=error)
                return CallRef(key, table)
            self._inflight[key] = slot
            free, self._free = self._free, []
        with self._send_lock:
            try:
                frame, pickler = wire.encode(
                    key,
                    Call(method, args, kwargs, tuple(free)),
                    self._prefix,
                    self._threshold,
                    pickler_cls=DriverPickler,
                    sent_puts=self._sent_puts,
                )
            except BaseException:
                with table.lock:
                    self._inflight.pop(key, None)
                    table.discard(key)
                    self._free.extend(free)
                raise
            slot.keep = tuple(pickler.puts)
            try:
                self._conn.send_bytes(frame)
            except OSError:
                pass  # it died; the sentinel fails this call with ActorDiedError
            else:
                self._sent_puts.update(p.key for p in pickler.puts)
        return CallRef(key, table)

    def kill(self) -> None:
        with self._proc_lock:
            if self._dead:
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._proc.join(timeout=1.0)

    def is_alive(self) -> bool:
        with self._proc_lock:
            return not self._dead and self._proc.is_alive()

    # ------------------------------------------------- the pump's side (rl.runtime.process)

    @property
    def dead(self) -> bool:
        """Whether the driver has seen the actor die (set by ``mark_dead``)."""
        return self._dead

    @property
    def conn_fd(self) -> int:
        """The driver's end of the actor's socket, readable when a frame arrives."""
        return self._conn.fileno()

    @property
    def sentinel(self) -> int:
        """The process sentinel, readable once the actor is gone."""
        return self._proc.sentinel

    def recv(self) -> bytes:
        """The next frame (blocks until it is complete). Only the pumping thread."""
        return self._conn.recv_bytes()

    def drain(self) -> Iterator[bytes]:
        """The frames a dead actor sent before dying, as far as they arrived whole."""
        conn = self._conn
        with contextlib.suppress(EOFError, OSError):
            while conn.poll(0):
                yield conn.recv_bytes()

    def take_call(self, key: int) -> Slot | None:
        """Remove and return the slot of call ``key`` if it is still in flight. Caller
        holds the table's lock."""
        return self._inflight.pop(key, None)

    def forget_put(self, key: str) -> None:
        """The put ``key`` is gone: the next call tells the actor to drop its copy.
        Caller holds the table's lock."""
        if key in self._sent_puts:
            self._sent_puts.discard(key)
            self._free.append(key)

    def mark_dead(self, exitcode: int | None) -> list[tuple[int, Slot]]:
        """Record the death and close the socket; returns the calls that were in flight,
        for the caller to fail. Caller holds the table's lock and has stopped watching
        ``conn_fd`` and ``sentinel``."""
        self._dead = True
        self._exitcode = exitcode
        calls = list(self._inflight.items())
        self._inflight.clear()
        self._conn.close()
        return calls

    def send_stop(self) -> None:
        """Ask the actor to answer what it has queued and exit; never blocks."""
        # A full pipe or a sender stuck mid-frame means the actor is killed after the
        # shutdown timeout instead.
        if not self._send_lock.acquire(timeout=0.1):
            return
        try:
            os.set_blocking(self._conn.fileno(), False)
            self._conn.send_bytes(STOP_FRAME)
        except OSError:
            pass
        finally:
            self._send_lock.release()

    def exit_status(self) -> int | None:
        """The exit code, once the sentinel fired (negative: the signal number)."""
        # join also reaps a "spawn" child whose pipe closed a moment before it became a
        # zombie.
        with self._proc_lock:
            self._proc.join(timeout=1.0)
            return self._proc.exitcode

    def release(self) -> None:
        """Close the dead process's sentinel (one fd per dead actor otherwise)."""
        with self._proc_lock, contextlib.suppress(ValueError):
            self._proc.close()
