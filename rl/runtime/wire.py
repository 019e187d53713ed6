"""The process runtime's wire format: frames, messages and the pickler that writes them.

Both ends of an actor's socket speak it: the driver (``rl.runtime.process``) and the
actor loop (``rl.runtime.actor_loop``).

A frame is an 8-byte call key followed by one pickle of a small slotted message::

    ┌──────────────┬─────────────────────────────────────────────────────────┐
    │ key (<q, 8B) │ pickle of Init | Call | Result | Failure | Blob | None  │
    └──────────────┴─────────────────────────────────────────────────────────┘

``Init`` (key 0) constructs the actor, ``Call`` runs a method, ``Result`` and ``Failure``
answer a call under the call's key, ``None`` stops the actor. The key travels outside
the pickle so that a message that fails to unpickle can still be answered. A frame above
``SHM_THRESHOLD`` bytes travels through a shared-memory segment and is replaced on the
socket by a ``Blob`` naming it, so the sockets only ever carry small frames.

Pickling is cloudpickle (classes from ``__main__``, closures and lambdas travel by
value) with one override in ``Pickler``: numpy arrays of at least ``SHM_THRESHOLD``
bytes, anywhere in a message, go into the object store (``/dev/shm`` segments) and
unpickle as zero-copy views: handed over to the receiver in a call's arguments and
results, held by their writer in ``put`` and ``share`` values (``pickle_held``; see
``rl.runtime.shm`` for who unlinks what). The driver's subclass adds object
refs: a ``put`` ref travels as ``resolve_put(key, payload)``, with its payload the first
time an actor sees it and by key afterwards (``PUT_CACHE``).
"""

from __future__ import annotations

import contextlib
import io
import pickle
import struct
import traceback
from dataclasses import dataclass
from typing import Any

import cloudpickle
import numpy as np

from rl.runtime import shm
from rl.runtime.base import RemoteError

__all__ = [
    "KEY",
    "PUT_CACHE",
    "SHM_THRESHOLD",
    "STOP_FRAME",
    "Blob",
    "Call",
    "Failure",
    "Init",
    "Pickler",
    "Result",
    "decode",
    "encode",
    "failure",
    "pickle_held",
    "resolve_put",
]

SHM_THRESHOLD = 64 * 1024
"""Bytes from which an array (or a whole frame) travels through shared memory."""

KEY = struct.Struct("<q")
"""The call key in front of every frame; 0 is the key of ``Init`` and stop frames."""

STOP_FRAME = KEY.pack(0) + pickle.dumps(None)
"""Tells an actor to answer what it has queued and exit."""


# ---------------------------------------------------------------------------- messages


@dataclass(slots=True)
class Init:
    """First frame to an actor: what to construct."""

    cls: type
    args: tuple
    kwargs: dict

    def __reduce__(self):
        return Init, (self.cls, self.args, self.kwargs)


@dataclass(slots=True)
class Call:
    """Run ``method(*args, **kwargs)``; ``free`` lists put keys the actor may forget."""

    method: str
    args: tuple
    kwargs: dict
    free: tuple[str, ...] = ()

    def __reduce__(self):
        return Call, (self.method, self.args, self.kwargs, self.free)


@dataclass(slots=True)
class Result:
    """A call's return value."""

    value: Any

    def __reduce__(self):
        return Result, (self.value,)


@dataclass(slots=True)
class Failure:
    """A call raised; ``exc`` is the pickled exception when it pickles."""

    type_name: str
    message: str
    traceback: str
    exc: bytes | None = None

    def __reduce__(self):
        return Failure, (self.type_name, self.message, self.traceback, self.exc)

    def to_error(self, actor_name: str) -> RemoteError:
        cause = None
        if self.exc is not None:
            with contextlib.suppress(Exception):
                cause = pickle.loads(self.exc)
        return RemoteError(actor_name, self.type_name, self.message, self.traceback, cause)


@dataclass(slots=True)
class Blob:
    """Stands in for a frame too large for the pipe; the pickle is in a segment."""

    name: str
    nbytes: int

    def __reduce__(self):
        return Blob, (self.name, self.nbytes)


def failure(exc: BaseException, context: str = "") -> Failure:
    """The ``Failure`` message for ``exc`` (call from its ``except`` block)."""
    try:
        pickled = cloudpickle.dumps(exc)
    except Exception:
        pickled = None
    return Failure(type(exc).__name__, f"{context}{exc}", traceback.format_exc(), pickled)


# ------------------------------------------------------------------------ serialization

_MESSAGES = frozenset({Init, Call, Result, Failure, Blob})

PUT_CACHE: dict[str, Any] = {}
"""Actor side: put key -> value, until the driver says the actor may forget it."""


def resolve_put(key: str, payload: bytes | None) -> Any:
    """Actor side of a put ref: the value, unpickled once per actor and then cached."""
    if payload is None:
        return PUT_CACHE[key]
    if key not in PUT_CACHE:
        PUT_CACHE[key] = pickle.loads(payload)
    return PUT_CACHE[key]


class Pickler(cloudpickle.Pickler):
    """cloudpickle plus: large arrays go into shared-memory segments.

    Args:
        file: where the pickle goes.
        prefix: segment name prefix of the session.
        threshold: arrays with at least this many bytes go to shared memory.
        held: segments stay the writer's to unlink (``put``, ``share``); else they are
            handed over and the receiver unlinks them.

    Attributes:
        segments: names of the segments this pickle created.
    """

    def __init__(self, file, prefix: str, threshold: int, *, held: bool = False):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.prefix = prefix
        self.threshold = threshold
        self.open_array = shm.map_held_array if held else shm.take_array
        self.segments: list[str] = []

    def reducer_override(self, obj):
        kind = type(obj)
        if kind in _MESSAGES:  # the hot path: skip cloudpickle's checks for our own types
            return obj.__reduce__()
        if kind is type and obj in _MESSAGES:
            return NotImplemented  # pickled by reference, as any importable class
        if kind is np.ndarray and obj.nbytes >= self.threshold and not obj.dtype.hasobject:
            seg = shm.export_array(obj, self.prefix)
            self.segments.append(seg.name)
            return self.open_array, (seg.name, seg.dtype, seg.shape)
        return super().reducer_override(obj)


def encode(key: int, msg: Any, prefix: str, threshold: int = SHM_THRESHOLD, *,
           pickler_cls: type[Pickler] = Pickler, **pickler_kw: Any) -> tuple[bytes, Pickler]:
    """One frame for ``msg``; on error every segment it created is unlinked.

    Args:
        key: the call key.
        msg: a message, or ``None`` to stop the actor.
        prefix, threshold: segment name prefix and array size threshold of the session.
        pickler_cls, pickler_kw: the pickler class and its keyword arguments.

    Returns:
        The frame and the pickler that wrote it (for its segments and refs).
    """
    buf = io.BytesIO()
    buf.write(KEY.pack(key))
    pickler = pickler_cls(buf, prefix, threshold, **pickler_kw)
    try:
        pickler.dump(msg)
        if buf.tell() <= SHM_THRESHOLD:
            return buf.getvalue(), pickler
        name = shm.write_bytes(prefix, buf.getbuffer()[KEY.size :])
        pickler.segments.append(name)
        blob = Blob(name, buf.tell() - KEY.size)
        return KEY.pack(key) + pickle.dumps(blob, pickle.HIGHEST_PROTOCOL), pickler
    except BaseException:
        for name in pickler.segments:
            shm.unlink(name)
        raise


def pickle_held(value: Any, prefix: str, threshold: int = SHM_THRESHOLD, *,
                pickler_cls: type[Pickler] = Pickler) -> tuple[bytes, list[str]]:
    """``value`` pickled with its large arrays in segments that stay the writer's to
    unlink (readers map them read-only); on error every segment made is unlinked.

    Returns:
        The pickle and the names of the segments it refers to.
    """
    buf = io.BytesIO()
    pickler = pickler_cls(buf, prefix, threshold, held=True)
    try:
        pickler.dump(value)
    except BaseException:
        for name in pickler.segments:
            shm.unlink(name)
        raise
    return buf.getvalue(), pickler.segments


def decode(frame: bytes) -> Any:
    """The message in ``frame`` (a ``Blob`` is read from its segment)."""
    msg = pickle.loads(memoryview(frame)[KEY.size :])
    if type(msg) is Blob:
        msg = pickle.loads(shm.read_bytes(msg.name, msg.nbytes))
    return msg
