"""The runtime interface: actors, object refs, the object store and its errors.

Everything above ``rl/runtime`` talks to actors only through this interface, so the
algorithms never know whether they run inline, in local processes or on Ray::

    rt = make_runtime("process")                 # or "inline", "ray"
    h = rt.spawn(Worker, cfg, num_cpus=1)        # ActorHandle
    ref = h.call("sample")                        # ObjectRef, returns at once
    batch = rt.get(ref, timeout=30)               # value, or ActorDiedError / RemoteError
    ready, pending = rt.wait(refs, num_returns=1, timeout=0.1)
    wref = rt.put(big_value)                      # pass to many calls; resolved remotely
    board = rt.weights_board(num_floats)          # one writer, many version-polling readers
    h.kill(); rt.shutdown()

What a backend can do is its ``Capabilities`` (``rt.capabilities``, or
``rl.runtime.capabilities(name)`` before anything starts): the layers above ask those
questions ("can it host 4 learner ranks?", "do its actors run in the driver?"), never
which backend it is.

**The object store** is where whatever crosses between processes as data lives: the
large arrays of a call's arguments and result, a value stored with ``put`` on the
driver, a value an actor stored with ``share`` (``rl.runtime.shared``). Readers see it
in place (zero-copy views) rather than through a pipe. An object has one of two
lifetimes. *Handed over*: a call's arguments and result have one reader, which owns
them; they go when its last view goes. *Held*: a ``put`` or ``share`` value is named by a
small handle (an ``ObjectRef``, a ``Shared``) that may be passed to many calls and read
by many actors; its holder frees it (drops the ref, ``release()``s the handle). The
process backend keeps the store in ``/dev/shm`` (``rl.runtime.shm`` owns the lifetime
rules), Ray in its own object store, the inline backend nowhere: values are passed by
reference.

Semantics follow Ray's where Ray has them: ``get`` of a list keeps order, ``wait``
returns ``(ready, pending)`` with ``len(ready) <= num_returns`` preserving the input
order, and a ``timeout`` of ``None`` waits forever, ``0`` polls.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "ActorDiedError",
    "ActorHandle",
    "BoardReader",
    "Capabilities",
    "GetTimeoutError",
    "ObjectRef",
    "RemoteError",
    "Runtime",
    "RuntimeErrorBase",
    "UnschedulableError",
    "WeightsBoard",
]


class RuntimeErrorBase(Exception):
    """Base class of every error the runtime raises."""


class ActorDiedError(RuntimeErrorBase):
    """The actor behind a ref is gone (killed, crashed, or shut down).

    Attributes:
        actor_name: the actor's readable name, e.g. ``"RolloutWorker-1"``.
        exitcode: the process exit code (negative signal number), or ``None``.
    """

    def __init__(self, actor_name: str, exitcode: int | None = None, detail: str = ""):
        self.actor_name = actor_name
        self.exitcode = exitcode
        msg = f"actor {actor_name!r} died"
        if exitcode is not None:
            msg += f" (exit code {exitcode})"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)

    def __reduce__(self):
        return (type(self), (self.actor_name, self.exitcode))


class RemoteError(RuntimeErrorBase):
    """A method raised inside an actor. The actor stays usable.

    Attributes:
        actor_name: the actor that raised.
        remote_type: the name of the remote exception's class.
        remote_traceback: the formatted traceback text from the actor.
        cause: the original exception when it could be unpickled (also ``__cause__``).
    """

    def __init__(
        self,
        actor_name: str,
        remote_type: str,
        message: str,
        remote_traceback: str,
        cause: BaseException | None = None,
    ):
        self.actor_name = actor_name
        self.remote_type = remote_type
        self.message = message
        self.remote_traceback = remote_traceback
        self.cause = cause
        super().__init__(
            f"{remote_type}: {message} (raised in actor {actor_name!r})\n"
            f"--- remote traceback ---\n{remote_traceback}"
        )
        if cause is not None:
            self.__cause__ = cause

    def __reduce__(self):
        return (
            type(self),
            (self.actor_name, self.remote_type, self.message, self.remote_traceback, None),
        )


class UnschedulableError(RuntimeErrorBase):
    """``spawn`` asked for resources (CPUs, GPUs, custom) the runtime can never provide."""


class GetTimeoutError(RuntimeErrorBase, TimeoutError):
    """``get(..., timeout=)`` ran out of time before every value was ready."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do, known before any of its processes starts.

    Config validation and the algorithms decide with these, so that nothing above
    ``rl/runtime`` tests a backend's name.

    Attributes:
        actors_in_driver: actors are plain objects in the driver process and each call
            runs to completion inside ``call``, in the caller's thread. A program on such
            a backend is serial and exactly reproducible; its actors' threads are the
            driver's threads; nothing runs concurrently with the driver.
        max_learner_ranks: how many ``torch.distributed`` ranks (learner actors in one
            process group) the backend can host, ``None`` for no limit of its own. A
            process holds one rank, so a backend whose actors share the driver process
            hosts one.
        is_cluster: actors may run on other machines, whose GPUs this machine's CUDA
            cannot see: only the backend's scheduler can tell whether a GPU request fits.
        schedules_gpus: ``spawn`` weighs ``num_gpus`` against the GPUs that exist (it
            raises ``UnschedulableError``, or queues the actor until they free up), and
            hands the actor the ones it gets. Without it ``num_gpus`` is recorded only:
            an actor process simply sees this machine's GPUs, and nothing stops a
            request for more than exist except the caller's own check.
    """

    actors_in_driver: bool
    max_learner_ranks: int | None
    is_cluster: bool
    schedules_gpus: bool

    def hosts_learner_ranks(self, n: int) -> bool:
        """Whether ``n`` learner ranks fit on this backend."""
        return self.max_learner_ranks is None or n <= self.max_learner_ranks


class ObjectRef(abc.ABC):
    """A handle to a value that is, or will be, held by the runtime."""

    @property
    @abc.abstractmethod
    def id(self) -> str:
        """A unique, printable id."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id})"


class ActorHandle(abc.ABC):
    """A handle to a spawned actor. Calls are executed one at a time, in order."""

    name: str

    @abc.abstractmethod
    def call(self, method: str, *args: Any, **kwargs: Any) -> ObjectRef:
        """Schedule ``method(*args, **kwargs)`` on the actor; returns at once.

        ``ObjectRef`` arguments made by ``Runtime.put`` are resolved on the actor side.
        """

    @abc.abstractmethod
    def kill(self) -> None:
        """Stop the actor at once (SIGKILL for processes); pending calls fail with
        ``ActorDiedError``. Idempotent."""

    @abc.abstractmethod
    def is_alive(self) -> bool:
        """Whether the actor is still running."""


class BoardReader(abc.ABC):
    """Reader side of a weights board; picklable, handed to actors."""

    @abc.abstractmethod
    def poll(self, last_version: int) -> tuple[int, np.ndarray | None]:
        """Return ``(version, copy_of_vector)`` if the version moved past
        ``last_version``, else ``(last_version, None)``. Never returns a torn vector."""


class WeightsBoard(abc.ABC):
    """One writer publishes a flat float32 vector with a version; readers poll it.

    Version 0 means nothing was published yet.
    """

    size: int

    @abc.abstractmethod
    def publish(self, vector: np.ndarray, version: int | None = None) -> int:
        """Publish ``vector`` (float32, shape ``[size]``); returns the new version.

        ``version`` (greater than the current one) sets the new version instead of
        the next integer: a restored run continues its saved numbering.
        """

    @abc.abstractmethod
    def reader(self) -> BoardReader:
        """A picklable reader to hand to actors."""

    def _next_version(self, current: int, version: int | None) -> int:
        if version is None:
            return current + 1
        if int(version) <= current:
            raise ValueError(f"version {version} is not newer than the board's {current}")
        return int(version)

    @property
    @abc.abstractmethod
    def version(self) -> int:
        """The last published version."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the board (the owner unlinks any shared memory). Idempotent."""


class Runtime(abc.ABC):
    """A backend that runs actors and holds objects.

    Attributes:
        name: the backend's name, for messages and logs (decisions use ``capabilities``).
        capabilities: what this runtime can do.
    """

    name: str
    capabilities: Capabilities

    @abc.abstractmethod
    def spawn(
        self,
        cls: type,
        *args: Any,
        num_cpus: float = 1,
        num_gpus: float = 0,
        name: str | None = None,
        resources: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> ActorHandle:
        """Start an actor running ``cls(*args, **kwargs)``; returns once it is scheduled.

        Construction errors surface as ``RemoteError`` on the first ``get`` of a call.
        """

    def actor_name(self, cls: type, name: str | None) -> str:
        """``name``, or the default ``ClassName-<n>`` counted per class in this runtime."""
        if name:
            return name
        counters = self.__dict__.setdefault("_name_counters", {})
        counter = counters.setdefault(cls.__name__, itertools.count(1))
        return f"{cls.__name__}-{next(counter)}"

    @abc.abstractmethod
    def get(self, refs: ObjectRef | Sequence[ObjectRef], timeout: float | None = None) -> Any:
        """The value(s) of ``refs``; a list in, a list out (same order).

        Raises:
            GetTimeoutError: not all ready within ``timeout`` seconds.
            ActorDiedError: the actor computing a ref died.
            RemoteError: the method raised.
        """

    @abc.abstractmethod
    def wait(
        self,
        refs: Sequence[ObjectRef],
        num_returns: int = 1,
        timeout: float | None = None,
    ) -> tuple[list[ObjectRef], list[ObjectRef]]:
        """Block until ``num_returns`` refs are ready (a failed call counts as ready)
        or ``timeout`` passes; returns ``(ready, pending)`` in input order."""

    @abc.abstractmethod
    def put(self, value: Any) -> ObjectRef:
        """Store ``value`` once; the ref can be passed to many calls."""

    @abc.abstractmethod
    def weights_board(self, size: int) -> WeightsBoard:
        """A new weights board for ``size`` float32 values, owned by this runtime."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Stop every actor and release every resource. Idempotent; returns within a
        few seconds even with calls in flight."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()
