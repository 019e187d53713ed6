"""The object store's actor side: ``share`` a value, hand out a small handle.

The object store (see ``rl.runtime.base``) holds what crosses between processes as data;
the driver stores a value with ``Runtime.put``, an actor with ``share``. Inside an actor,
``share(value)`` stores ``value`` and returns a small ``Shared`` handle. The handle
travels in the actor's result to the driver, which may pass it on, in a call's
arguments, to another actor; there ``resolve()`` gives the value. The data goes from the
first actor to the last without the driver reading it::

    worker:  return {"batch": share(batch), "env_steps": n}      # a handle
    driver:  ref = learner.call("update_fragments", [result["batch"], ...])
    learner: fragment = handle.resolve()
    driver:  rt.get(ref); result["batch"].release()             # every reader is done

A shared value is *held* (many readers; its holder frees it), where the arrays of a
plain result are *handed over* to the driver (one reader). What the handle holds, per
backend:

* process: the value pickled with its large arrays in held ``/dev/shm`` segments that
  outlive the actor that shared them (``rl.runtime.shm`` gives the naming and lifetime
  rules). ``resolve()`` maps them read-only, without a copy, in whatever process calls
  it; ``release()`` unlinks them (mappings already made stay valid). Whoever holds the
  handle last releases it: the driver, once every reader answered, or when it drops the
  handle unused (a full queue). A handle lost without a release is swept with the
  session at shutdown.
* ray: the values a method shared travel as the call's second return object, owned
  by the driver (so they outlive the sharing actor); the handle is that object's ref
  and an index. Ray's reference counting frees it, ``release()`` does nothing.
* inline, or outside any actor: the value itself.

The actor loops of the backends install their sharer (``use_sharer``) when an actor
process starts; the default, in-process one is the inline backend's.
"""

from __future__ import annotations

import abc
import contextlib
import pickle
from collections.abc import Callable
from typing import Any

from rl.runtime import shm

__all__ = ["LocalShared", "Shared", "ShmShared", "release_all", "resolve", "share",
           "shm_sharer", "use_sharer"]


class Shared(abc.ABC):
    """A handle of a value an actor shared; picklable, small."""

    @abc.abstractmethod
    def resolve(self) -> Any:
        """The value (read-only arrays where the backend maps them)."""

    def release(self) -> None:  # noqa: B027 - optional: most stores free on their own
        """Free the stored value once nobody will resolve it again. Idempotent."""


class LocalShared(Shared):
    """The value itself (inline backend, or a share outside any actor)."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def resolve(self) -> Any:
        return self.value

    def __reduce__(self):
        return LocalShared, (self.value,)


class ShmShared(Shared):
    """A pickle whose large arrays live in held ``/dev/shm`` segments."""

    __slots__ = ("payload", "segments")

    def __init__(self, payload: bytes, segments: tuple[str, ...]):
        self.payload = payload
        self.segments = segments

    @classmethod
    def store(cls, value: Any, prefix: str, threshold: int | None = None, *,
              pickler_cls: type | None = None) -> ShmShared:
        """Store ``value`` in held segments named under ``prefix``: the process backend's
        one way into the object store for a held object (``share`` here, ``put`` on the
        driver with the driver's pickler).

        Args:
            value: what to store.
            prefix: the segment name prefix (``shm.held_prefix`` of the session for a
                shared value, the session's own for a put).
            threshold: arrays of at least this many bytes go to segments (default
                ``SHM_THRESHOLD``).
            pickler_cls: a ``wire.Pickler`` subclass (default ``wire.Pickler``).
        """
        from rl.runtime import wire  # wire imports this package's base: import late

        payload, segments = wire.pickle_held(
            value, prefix, wire.SHM_THRESHOLD if threshold is None else threshold,
            pickler_cls=pickler_cls or wire.Pickler)
        return cls(payload, tuple(segments))

    def resolve(self) -> Any:
        return pickle.loads(self.payload)

    def release(self) -> None:
        segments, self.segments = self.segments, ()
        for name in segments:
            shm.unlink(name)

    def __reduce__(self):
        return ShmShared, (self.payload, self.segments)

    def __repr__(self) -> str:
        return f"ShmShared({len(self.payload)} bytes, {len(self.segments)} segments)"


def shm_sharer(prefix: str) -> Callable[[Any], ShmShared]:
    """The process backend's sharer: arrays of ``SHM_THRESHOLD`` bytes or more go into
    held segments named under the session ``prefix``'s ``shm.held_prefix``, read-only for
    every process that resolves them, and outliving the actor that shared them."""
    held = shm.held_prefix(prefix)

    def share_in_shm(value: Any) -> ShmShared:
        return ShmShared.store(value, held)

    return share_in_shm


_sharer: Callable[[Any], Shared] = LocalShared


def use_sharer(sharer: Callable[[Any], Shared]) -> None:
    """Install this process's sharer (the backends' actor loops call it at start)."""
    global _sharer
    _sharer = sharer


def share(value: Any) -> Shared:
    """Store ``value`` in the object store, held until released; returns its handle."""
    return _sharer(value)


def resolve(value: Any) -> Any:
    """``value.resolve()`` for a handle, ``value`` itself otherwise."""
    return value.resolve() if isinstance(value, Shared) else value


def release_all(values: Any) -> None:
    """Release every handle in ``values`` (an iterable); other items are ignored."""
    for value in values:
        if isinstance(value, Shared):
            with contextlib.suppress(OSError):
                value.release()
