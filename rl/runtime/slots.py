"""The process backend's slot table: where the driver keeps the answers of calls and the
values stored with ``put``, and the refs that point into it.

A call gets a key and a ``Slot`` (``SlotTable.open``); the pump fills the slot when the
answer arrives (``finish``), or fails it when the actor dies. A ``CallRef`` names the
slot; dropping it (``__del__``, in whatever thread the garbage collector runs) only
appends its key to a queue, and the next thread that takes the lock forgets the slot
(``reap``): a finalizer must never block on a lock another thread holds. A ``PutRef``
names a ``PutRecord``; dropping it releases the stored object and queues its key, and
``reap`` then tells every actor that may hold the value (a ``PutHolder``) that it may
forget it.

The table owns the one lock of the runtime's shared state and its condition: the actor
handles (``rl.runtime.process_actor``) and the pump (``rl.runtime.process``) take it
around every look at slots, records and in-flight calls.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from rl.runtime.base import ObjectRef
from rl.runtime.shared import ShmShared

__all__ = ["CallRef", "PutHolder", "PutRecord", "PutRef", "Slot", "SlotTable"]


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
    """A value stored by ``put``: the held object (the same kind an actor's ``share``
    makes) and, once the driver itself asked for it, the unpickled value."""

    stored: ShmShared
    value: Any = None
    loaded: bool = False


class PutHolder(Protocol):
    """Who may cache put values (an actor handle): told when one may be forgotten."""

    def forget_put(self, key: str) -> None:
        """The put ``key`` is gone; called with the table's lock held."""


class SlotTable:
    """Keys, slots and put records of one process runtime, under one lock.

    Attributes:
        lock: guards every slot, record and actor's in-flight table.
        cond: on ``lock``; notified when slots may have finished.
        closed: set (under the lock) when the runtime shuts down; calls made after it
            fail at once.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.closed = False
        self._keys = itertools.count(1)  # 0 is the key of Init and stop frames
        self._put_ids = itertools.count()
        self._slots: dict[int, Slot] = {}
        self._puts: dict[str, PutRecord] = {}
        self._holders: list[PutHolder] = []
        # Appended by ref finalizers (deque.append is atomic and never blocks), emptied
        # by reap() under the lock.
        self._dropped: deque[int] = deque()
        self._dropped_puts: deque[str] = deque()

    # ---------------------------------------------------------------- any thread, no lock

    def slot(self, key: int) -> Slot:
        """The slot of a live call ref (its slot stays until the ref is dropped)."""
        return self._slots[key]

    def drop(self, key: int) -> None:
        """A call ref was dropped; its slot goes at the next ``reap``."""
        self._dropped.append(key)

    def drop_put(self, key: str) -> None:
        """A put ref was dropped (its segments already unlinked); its record goes at the
        next ``reap``, and the holders are told."""
        self._dropped_puts.append(key)

    def put_value(self, record: PutRecord) -> Any:
        """A put's value on the driver, unpickled once."""
        with self.lock:
            if not record.loaded:
                record.value = record.stored.resolve()
                record.loaded = True
            return record.value

    # -------------------------------------------------------------- caller holds the lock

    def open(self) -> tuple[int, Slot]:
        """A fresh key and its empty slot."""
        key = next(self._keys)
        slot = Slot()
        self._slots[key] = slot
        return key, slot

    def discard(self, key: int) -> None:
        """Forget a slot at once (its call was never sent)."""
        self._slots.pop(key, None)

    def finish(self, key: int, slot: Slot, value: Any = None,
               error: BaseException | None = None) -> None:
        """Fill ``slot`` (the value, or the error ``get`` raises) and unpin its puts; a
        slot whose ref is already gone is forgotten."""
        slot.value, slot.error, slot.done, slot.keep = value, error, True, ()
        if slot.dropped:
            self._slots.pop(key, None)

    def add_holder(self, holder: PutHolder) -> None:
        """Register an actor that may cache put values."""
        self._holders.append(holder)

    def remove_holder(self, holder: PutHolder) -> None:
        """Forget an actor that is gone (its cache went with it)."""
        with contextlib.suppress(ValueError):
            self._holders.remove(holder)

    def add_put(self, record: PutRecord) -> str:
        """Store ``record``; returns its key."""
        key = f"put-{next(self._put_ids)}"
        self._puts[key] = record
        return key

    def take_puts(self) -> list[PutRecord]:
        """Every record still stored, removed from the table (shutdown unlinks them)."""
        records = list(self._puts.values())
        self._puts.clear()
        return records

    def reap(self) -> None:
        """Forget dropped refs: done slots go, pending ones go when they finish; dropped
        puts go, and every holder is told."""
        while self._dropped:
            key = self._dropped.popleft()
            slot = self._slots.get(key)
            if slot is None:
                continue
            if slot.done:
                del self._slots[key]
            else:
                slot.dropped = True
        while self._dropped_puts:
            key = self._dropped_puts.popleft()
            if self._puts.pop(key, None) is None:
                continue
            for holder in self._holders:
                holder.forget_put(key)


class CallRef(ObjectRef):
    """The result of one call. Dropping it lets the runtime forget the result."""

    __slots__ = ("key", "table")

    def __init__(self, key: int, table: SlotTable):
        self.key = key
        self.table = table

    @property
    def id(self) -> str:
        return f"call-{self.key}"

    def __del__(self):
        # Safe whichever thread runs the GC: drop() never blocks.
        self.table.drop(self.key)


class PutRef(ObjectRef):
    """A value stored once by ``put``; shipped to each actor at most once."""

    __slots__ = ("key", "record", "table")

    def __init__(self, key: str, record: PutRecord, table: SlotTable):
        self.key = key
        self.record = record
        self.table = table

    @property
    def id(self) -> str:
        return self.key

    def __del__(self):
        # No call can use the value any more (in-flight calls pin their refs), and every
        # actor that needed it has mapped it already: unlinking now is safe. Telling the
        # actors to drop their cached copies waits for the next call to each.
        self.record.stored.release()
        self.table.drop_put(self.key)
