"""What runs inside Ray's worker processes for the Ray backend (``rl.runtime.ray``).

``_ActorBox`` hosts one user actor: its init is the process backend's (SIGINT ignored,
one torch thread, the process named after the actor), then the user's class is built
from a cloudpickled payload, and every ``call`` runs one method and answers with its
value or a ``Failure`` (``rl.runtime.wire``) carrying the remote traceback::

    ActorBox(name, payload, *put values)   construct; a failure is kept, answered per call
    ActorBox.call(method | (method, args, kwargs), *put values) ─▶ value | Failure
    ActorBox.info() ─▶ (pid, node id)

Put refs travel as top-level arguments, which Ray resolves (fetching each value to the
node once) before the method runs; ``PutArg(i)`` marks where the i-th one goes inside
the (possibly nested) arguments.

``BoardActor`` holds the newest ``(version, [ref])`` of a weights board, and
``RayBoardReader`` polls it from any actor.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
from typing import Any

import cloudpickle
import numpy as np
import ray
import ray.exceptions as rex

from rl.runtime import context, shared
from rl.runtime.base import BoardReader
from rl.runtime.wire import Failure, failure

__all__ = ["ActorBox", "BoardActor", "PutArg", "RayBoardReader", "RemoteBoard", "box_class",
           "unpack"]


class PutArg:
    """Marks where the ``index``-th put value of a call goes in its arguments."""

    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index

    def __reduce__(self):
        return PutArg, (self.index,)


def unpack(value: Any, resolved: tuple) -> Any:
    """``value`` with every ``PutArg`` (in lists, tuples and dicts) replaced by its value
    from ``resolved``: the inverse of the driver's packing (``rl.runtime.ray``)."""
    kind = type(value)
    if kind is PutArg:
        return resolved[value.index]
    if kind in (list, tuple):
        return kind(unpack(v, resolved) for v in value)
    if kind is dict:
        return {k: unpack(v, resolved) for k, v in value.items()}
    return value


class RayShared(shared.Shared):
    """A value an actor shared during a call (``rl.runtime.shared``), on Ray.

    ``ActorBox.call`` answers with two objects: the method's result and the list of the
    values it shared. Both are owned by the caller (the driver), so they stay readable
    after the actor that shared them died; Ray frees them with their last ref. In the
    result the handle holds its index in that list; the runtime binds it to the list's
    ref when the driver reads the result (``bind_shared``). The ref is wrapped in a list
    so that Ray hands it over as a ref, never resolved into the list on the way.
    """

    __slots__ = ("index", "refs")

    def __init__(self, index: int, refs: list | None = None):
        self.index = index
        self.refs = refs

    def resolve(self) -> Any:
        if self.refs is None:
            raise RuntimeError("a shared value's handle was read before the driver got it")
        return ray.get(self.refs[0])[self.index]

    def __reduce__(self):
        return RayShared, (self.index, self.refs)


_SHARED_IN_CALL: list | None = None
"""Values shared by the running call (Ray actors run one call at a time)."""


def _share_in_call(value: Any) -> RayShared:
    if _SHARED_IN_CALL is None:
        raise RuntimeError("share() on Ray works inside an actor method call")
    _SHARED_IN_CALL.append(value)
    return RayShared(len(_SHARED_IN_CALL) - 1)


def bind_shared(value: Any, ref: Any) -> None:
    """Give the ``RayShared`` handles in a call's result (nested in dicts, lists and
    tuples) the ref of the list of values that call shared."""
    kind = type(value)
    if kind is RayShared:
        if value.refs is None:
            value.refs = [ref]
    elif kind is dict:
        for item in value.values():
            bind_shared(item, ref)
    elif kind in (list, tuple):
        for item in value:
            bind_shared(item, ref)


class ActorBox:
    """What runs in the Ray worker process: the user's instance, behind ``call``.

    Ray names the actor after this class's subclass (the user's class name, see
    ``box_class``); ``__repr__`` gives Ray's log prefix the readable name.
    """

    def __init__(self, name: str, payload: bytes, *puts: Any):
        self._name = name
        self._instance: Any = None
        self._broken: Failure | None = None
        # Ctrl-C belongs to the driver, which stops the actors itself; one torch thread
        # per actor, since Ray packs one actor per core. The env vars must be set before
        # torch is first imported, which unpickling the class may do.
        with contextlib.suppress(ValueError):  # not the main thread: nothing to ignore
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        multiprocessing.current_process().name = name  # for %(processName)s in logs
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = "1"
        shared.use_sharer(_share_in_call)
        context.use_host(ray.util.get_node_ip_address())  # peers may be on other nodes
        try:
            cls, args, kwargs = cloudpickle.loads(payload)
        except Exception as exc:
            self._broken = failure(exc, "unpickling the actor's class or arguments failed: ")
            return
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
        try:
            self._instance = cls(*unpack(args, puts), **unpack(kwargs, puts))
        except Exception as exc:
            self._broken = failure(exc, f"constructing {cls.__name__} failed: ")

    def __repr__(self) -> str:
        return self._name

    def call(self, message: str | tuple[str, tuple, dict], *puts: Any) -> tuple[Any, list]:
        """Run ``message``: a method name, or ``(method, args, kwargs)``. Two returns:
        the result (or a ``Failure``) and the values the method shared (``RayShared``)."""
        global _SHARED_IN_CALL
        if self._broken is not None:
            return self._broken, []
        method, args, kwargs = (message, (), {}) if type(message) is str else message
        _SHARED_IN_CALL = []
        try:
            if puts:
                args, kwargs = unpack(args, puts), unpack(kwargs, puts)
            return getattr(self._instance, method)(*args, **kwargs), _SHARED_IN_CALL
        except Exception as exc:
            return failure(exc), []
        finally:
            _SHARED_IN_CALL = None

    def info(self) -> tuple[int, str]:
        """``(pid, node id)`` of the process running this actor."""
        return os.getpid(), ray.get_runtime_context().get_node_id()


_BOX_CLASSES: dict[str, Any] = {}
_BOX_LOCK = threading.Lock()


def box_class(cls_name: str) -> Any:
    """The Ray actor class for actors of ``cls_name``: an ``ActorBox`` subclass of that
    name, so that Ray's errors, logs and ``ray list actors`` name the user's class."""
    with _BOX_LOCK:
        if cls_name not in _BOX_CLASSES:
            box = type(cls_name, (ActorBox,), {"__module__": __name__})
            _BOX_CLASSES[cls_name] = ray.remote(box)
        return _BOX_CLASSES[cls_name]


class BoardActor:
    """Holds the newest ``(version, [ObjectRef])`` of one weights board.

    The ref is wrapped in a list so that Ray hands it over as a ref (the board holds a
    reference, keeping the vector alive) instead of resolving it to the vector.
    """

    def __init__(self) -> None:
        self.version = 0
        self.refs: list | None = None

    def publish(self, version: int, refs: list) -> None:
        self.version, self.refs = version, refs

    def newer(self, last_version: int) -> tuple[int, list | None]:
        if self.version <= last_version:
            return self.version, None
        return self.version, self.refs


RemoteBoard = ray.remote(num_cpus=0, max_restarts=0)(BoardActor)


class RayBoardReader(BoardReader):
    """Reader of a ``RayWeightsBoard``: a handle of the board actor, picklable.

    A poll is one small actor call; only a new version fetches the vector, from the
    reader node's object store (one transfer per node and version).
    """

    def __init__(self, board: Any, size: int):
        self.board = board
        self.size = size

    def poll(self, last_version: int) -> tuple[int, np.ndarray | None]:
        try:
            version, refs = ray.get(self.board.newer.remote(last_version))
            if refs is None or version <= last_version:
                return last_version, None
            # A writable copy, as the interface promises: the store's view is read-only,
            # and torch warns about every read-only array it wraps.
            return version, np.array(ray.get(refs[0]))
        except rex.RayActorError:
            raise RuntimeError("weights board no longer exists (closed by its owner)") from None
