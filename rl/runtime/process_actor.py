"""The process backend's driver-side actor handle and the refs it hands out.

``ProcessActor.call`` pickles a call (``DriverPickler``: the wire's pickler plus object
refs), registers a ``Slot`` for its answer in the runtime's slot table and returns a
``CallRef``; ``PutRef`` is a value stored once by ``ProcessRuntime.put`` and shipped to
each actor at most once. Answers are delivered into the slots by the runtime's pump
(``rl.runtime.process``), which owns the locks and tables these classes use.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rl.runtime import shm, wire
from rl.runtime.base import ActorDiedError, ActorHandle, ObjectRef
from rl.runtime.wire import Call

if TYPE_CHECKING:
    from rl.runtime.process import ProcessRuntime

__all__ = ["CallRef", "DriverPickler", "ProcessActor", "PutRecord", "PutRef", "Slot"]


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

    def __init__(self, file, prefix, threshold, *, borrow=False, sent_puts=None):
        super().__init__(file, prefix, threshold, borrow=borrow)
        self.sent_puts = sent_puts
        self.puts: list[PutRef] = []

    def reducer_override(self, obj):
        kind = type(obj)
        if kind is PutRef:
            if self.sent_puts is None:
                raise TypeError("an ObjectRef cannot be stored inside a put() value")
            self.puts.append(obj)
            payload = None if obj.key in self.sent_puts else obj.record.payload
            return wire.resolve_put, (obj.key, payload)
        if kind is CallRef:
            raise TypeError(
                f"{obj!r} is the result of a call; pass rt.get(ref), or rt.put(value) "
                "to share one value among actors"
            )
        return super().reducer_override(obj)


@dataclass(slots=True, eq=False)
class Slot:
    """Driver-side state of one call; ``keep`` pins the put refs its arguments use."""

    done: bool = False
    value: Any = None
    error: BaseException | None = None
    keep: tuple = ()
    dropped: bool = False


@dataclass(slots=True, eq=False)
class PutRecord:
    payload: bytes
    segments: list[str]
    value: Any = None
    loaded: bool = False


class CallRef(ObjectRef):
    """The result of one call. Dropping it lets the runtime forget the result."""

    __slots__ = ("key", "runtime")

    def __init__(self, key: int, runtime: ProcessRuntime):
        self.key = key
        self.runtime = runtime

    @property
    def id(self) -> str:
        return f"call-{self.key}"

    def __del__(self):
        # deque.append is atomic and never blocks: safe whichever thread runs the GC.
        self.runtime._dropped.append(self.key)


class PutRef(ObjectRef):
    """A value stored once by ``put``; shipped to each actor at most once."""

    __slots__ = ("key", "record", "runtime")

    def __init__(self, key: str, record: PutRecord, runtime: ProcessRuntime):
        self.key = key
        self.record = record
        self.runtime = runtime

    @property
    def id(self) -> str:
        return self.key

    def __del__(self):
        # No call can use the value any more (in-flight calls pin their refs), and every
        # actor that needed it has mapped it already: unlinking now is safe. Telling the
        # actors to drop their cached copies waits for the next call to each.
        for name in self.record.segments:
            shm.unlink(name)
        self.runtime._dropped_puts.append(self.key)


class ProcessActor(ActorHandle):
    """Driver-side handle of one actor process.

    Attributes:
        name: readable name, also the child's process name (``rl:<name>``).
        pid: the child's pid.
        num_cpus, num_gpus, resources: what ``spawn`` was asked for (recorded only).
    """

    def __init__(self, runtime: ProcessRuntime, proc, conn, name, num_cpus, num_gpus, resources):
        self.name = name
        self.pid: int = proc.pid
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.resources = dict(resources or {})
        self._rt = runtime
        self._proc = proc
        self._conn = conn
        self._send_lock = threading.Lock()
        self._inflight: dict[int, Slot] = {}
        self._sent_puts: set[str] = set()
        self._free: list[str] = []
        self._dead = False
        self._exitcode: int | None = None

    def __repr__(self) -> str:
        return f"ProcessActor({self.name!r}, pid={self.pid})"

    def call(self, method: str, *args: Any, **kwargs: Any) -> ObjectRef:
        rt = self._rt
        key = next(rt._keys)
        slot = Slot()
        with rt._lock:
            rt._reap()
            rt._slots[key] = slot
            if self._dead or rt._closed:
                slot.done = True
                slot.error = ActorDiedError(self.name, self._exitcode, "call after it stopped")
                return CallRef(key, rt)
            self._inflight[key] = slot
            free, self._free = self._free, []
        with self._send_lock:
            try:
                frame, pickler = wire.encode(
                    key,
                    Call(method, args, kwargs, tuple(free)),
                    rt.prefix,
                    rt.shm_threshold,
                    pickler_cls=DriverPickler,
                    sent_puts=self._sent_puts,
                )
            except BaseException:
                with rt._lock:
                    self._inflight.pop(key, None)
                    rt._slots.pop(key, None)
                    self._free.extend(free)
                raise
            slot.keep = tuple(pickler.puts)
            try:
                self._conn.send_bytes(frame)
            except OSError:
                pass  # it died; the sentinel fails this call with ActorDiedError
            else:
                self._sent_puts.update(p.key for p in pickler.puts)
        return CallRef(key, rt)

    def kill(self) -> None:
        with self._rt._proc_lock:
            if self._dead:
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._proc.join(timeout=1.0)

    def is_alive(self) -> bool:
        with self._rt._proc_lock:
            return not self._dead and self._proc.is_alive()

    def _exit_status(self) -> int | None:
        # Called once the sentinel fired; join also reaps a "spawn" child whose pipe
        # closed a moment before it became a zombie.
        with self._rt._proc_lock:
            self._proc.join(timeout=1.0)
            return self._proc.exitcode

    def _release(self) -> None:
        """Close the dead process's sentinel (one fd per dead actor otherwise)."""
        with self._rt._proc_lock, contextlib.suppress(ValueError):
            self._proc.close()
