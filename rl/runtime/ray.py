"""The Ray backend: actors are Ray actors, refs are Ray ObjectRefs, data moves through
Ray's object store, and a run may span every node of a Ray cluster.

Data flow::

    driver                                             Ray actor (a worker process, any node)
    ──────────────────────────────────────────         ─────────────────────────────────────
    rt.spawn(Cls, *a)  ── payload = cloudpickle ───────▶ ActorBox: init (SIGINT ignored, one
                          (Cls, a, k); num_cpus,        torch thread), unpickle, Cls(*a, **k)
                          num_gpus, resources           (a failure is kept, answered per call)
    h.call("m", x) ──── ActorBox.call.remote ─────────▶ run m(x) ─▶ value, or a Failure value
                        put refs in x ride as             │  value serialized once into the
                        top-level arguments: Ray          │  node's object store
                        fetches them to the node          ▼
    rt.get(ref) ◀──── ray.get: numpy arrays are zero-copy, read-only views of the object
                      store (pulled to the driver's node first when remote)

    A call has two returns, both owned by the driver: the result, and the list of values
    the method shared (``rl.runtime.shared.share``; usually empty). ``get`` binds the
    ``RayShared`` handles in the result to that list's ref, so the driver can pass them
    on to other actors without reading the data, and they outlive the sharing actor.

    board.publish(w):  ray.put(w) once ─▶ BoardActor.publish(version, [ref])  (acknowledged)
    reader.poll(v):    BoardActor.newer(v) ─▶ (version, [ref]) only if newer ─▶ ray.get(ref):
                       one copy per node's object store, shared by every reader on the node

This module is the driver side; what runs in Ray's worker processes (the actor box,
the board actor and its reader) is in ``rl.runtime.ray_actor``.

**Errors.** A method that raises answers with a ``Failure`` value (the process backend's
message, with the remote traceback), which ``get`` raises as ``RemoteError``; so does a
constructor, on every call. Ray's own errors are mapped: an actor that died (killed,
crashed, its node lost) gives ``ActorDiedError`` naming the actor with Ray's exit
details (pid, node, exit type); a Ray task error (an argument that fails to unpickle, a
result that fails to pickle) gives ``RemoteError``; ``ray.get``'s timeout gives
``GetTimeoutError``. Ray reports no exit code, so ``ActorDiedError.exitcode`` is ``None``.

**Results are read-only.** ``get`` copies nothing: arrays in results are views of Ray's
immutable object store, so writing to one raises instead of changing shared memory. Copy
a column (``np.array(x)``) to modify it.

**Cluster.** Without an address the runtime starts a local Ray (no dashboard, quiet
logs) with this machine's cores and shuts it down on ``shutdown()``; as nothing else
frees or adds resources there, ``spawn`` raises ``UnschedulableError`` for an actor that
does not fit beside the others (Ray would queue it forever). With an address (``"auto"``
or ``host:port``) it joins that cluster, where Ray queues an actor until it fits (an
autoscaler may add a node); on shutdown it ends its own actors and disconnects, never
stopping the cluster. A program that has called ``ray.init`` itself is joined the same
way.

**Stop and kill.** ``h.kill()`` is ``ray.kill`` at once. ``shutdown()`` asks every actor
to exit after the calls queued before (Ray's graceful exit), waits up to
``shutdown_timeout`` seconds, then kills what is left.

**Observed death.** Ray tells the driver that an actor died through the refs of its
calls; ``is_alive()`` is ``False`` after ``kill()`` or after such an error, not sooner.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import traceback
from collections.abc import Sequence
from typing import Any

import cloudpickle
import numpy as np

try:
    import ray
    import ray.exceptions as rex
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
except ImportError as exc:  # rl.config reports this before any process starts
    raise ImportError("the ray backend needs Ray: pip install 'rl[ray]'") from exc

from rl.runtime import capabilities as backend_capabilities
from rl.runtime.base import (
    ActorDiedError,
    ActorHandle,
    GetTimeoutError,
    ObjectRef,
    RemoteError,
    Runtime,
    RuntimeErrorBase,
    UnschedulableError,
    WeightsBoard,
)
from rl.runtime.ray_actor import PutArg, RayBoardReader, RemoteBoard, bind_shared, box_class
from rl.runtime.wire import Failure

__all__ = ["RayActor", "RayBoardReader", "RayRef", "RayRuntime", "RayWeightsBoard"]

log = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# ------------------------------------------------------------------------------ refs


class RayRef(ObjectRef):
    """A Ray ``ObjectRef`` (``raw``) and the actor computing it (``None`` for a put).

    A ref that could not be submitted (the actor was stopped) carries its ``error``
    instead and is ready at once.
    """

    __slots__ = ("actor", "error", "raw", "shared")

    def __init__(self, raw: Any, actor: RayActor | None, error: BaseException | None = None,
                 shared: Any = None):
        self.raw = raw
        self.actor = actor
        self.error = error
        self.shared = shared  # a call's second return: the values it shared

    @property
    def id(self) -> str:
        return self.raw.hex() if self.raw is not None else f"failed-{id(self):x}"

    def __reduce__(self):
        raise TypeError(
            "an rl ObjectRef travels only as a call argument, or inside lists, tuples and "
            "dicts of arguments"
        )


def _pack(value: Any, puts: list) -> Any:
    """``value`` with put refs (in lists, tuples and dicts) replaced by ``PutArg``s; their
    raw refs are appended to ``puts``, to travel as top-level arguments that Ray resolves
    (fetching each to the actor's node once) before the call runs."""
    kind = type(value)
    if kind is RayRef:
        if value.actor is not None or value.error is not None:
            raise TypeError(
                f"{value!r} is the result of a call; pass rt.get(ref), or rt.put(value) "
                "to share one value among actors"
            )
        puts.append(value.raw)
        return PutArg(len(puts) - 1)
    if kind in (list, tuple):
        return kind(_pack(v, puts) for v in value)
    if kind is dict:
        return {k: _pack(v, puts) for k, v in value.items()}
    return value


# ------------------------------------------------------------------------- driver side


class RayActor(ActorHandle):
    """Driver-side handle of one Ray actor.

    Attributes:
        name: readable name (Ray's log prefix for the actor's output).
        num_cpus, num_gpus, resources: what Ray reserved for it.
        pid, node_id: where it runs, once known (see the properties).
    """

    def __init__(self, runtime: RayRuntime, handle: Any, name: str, num_cpus: float,
                 num_gpus: float, resources: dict[str, float] | None):
        self.name = name
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.resources = dict(resources or {})
        self._rt = runtime
        self._handle = handle
        self._dead = False
        # Calls run in order, so this answers right after construction.
        self._info = handle.info.remote()

    def __repr__(self) -> str:
        return f"RayActor({self.name!r})"

    def call(self, method: str, *args: Any, **kwargs: Any) -> ObjectRef:
        if self._dead or self._rt._closed:
            return RayRef(None, self, ActorDiedError(self.name, None, "call after it stopped"))
        # One argument, the name alone when there are no arguments: Ray serializes each
        # top-level argument on its own, at tens of microseconds apiece.
        puts: list = []
        message = (method, _pack(args, puts), _pack(kwargs, puts)) if args or kwargs else method
        raw, shared_raw = self._handle.call.options(num_returns=2).remote(message, *puts)
        return RayRef(raw, self, shared=shared_raw)

    def kill(self) -> None:
        if self._dead:
            return
        self._dead = True
        if ray.is_initialized():
            with contextlib.suppress(Exception):  # already gone
                ray.kill(self._handle, no_restart=True)

    def is_alive(self) -> bool:
        return not self._dead

    def _where(self) -> tuple[int, str] | None:
        try:
            return ray.get(self._info, timeout=30)
        except Exception:
            return None

    @property
    def pid(self) -> int | None:
        """The actor's process id (on its node), or ``None`` if it died before telling."""
        where = self._where()
        return None if where is None else where[0]

    @property
    def node_id(self) -> str | None:
        """The Ray node id the actor runs on, or ``None`` if it died before telling."""
        where = self._where()
        return None if where is None else where[1]


class RayWeightsBoard(WeightsBoard):
    """One ``ray.put`` per version, shared by every reader; see the module docstring.

    ``publish`` returns once the board actor holds the new ref, so every poll that
    starts afterwards sees the new version. At most one version is held by the board
    (older ones are freed by Ray as soon as no reader holds them), and nothing is ever
    pushed to the readers.
    """

    def __init__(self, size: int):
        if size <= 0:
            raise ValueError(f"a weights board needs size >= 1, got {size}")
        self.size = int(size)
        self._actor = RemoteBoard.options(
            # Beside the driver, which publishes; readers anywhere fetch from it.
            scheduling_strategy=NodeAffinitySchedulingStrategy(
                ray.get_runtime_context().get_node_id(), soft=True)).remote()
        self._version = 0
        self._closed = False

    def __reduce__(self):
        raise TypeError("a weights board stays with its owner; pass board.reader() to actors")

    def publish(self, vector: np.ndarray, version: int | None = None) -> int:
        if self._closed:
            raise RuntimeError("weights board is closed")
        values = np.asarray(vector).reshape(-1)
        if values.shape[0] != self.size:
            raise ValueError(
                f"publish expects {self.size} values, got {values.shape[0]} "
                f"(shape {np.shape(vector)})"
            )
        new = self._next_version(self._version, version)
        ref = ray.put(np.ascontiguousarray(values, dtype=np.float32))
        ray.get(self._actor.publish.remote(new, [ref]))
        self._version = new
        return new

    def reader(self) -> RayBoardReader:
        return RayBoardReader(self._actor, self.size)

    @property
    def version(self) -> int:
        return self._version

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if ray.is_initialized():
            with contextlib.suppress(Exception):
                ray.kill(self._actor, no_restart=True)


class RayRuntime(Runtime):
    """Actors on Ray; see the module docstring.

    Args:
        address: ``None`` starts a local Ray (or joins the one this program already
            initialised); ``"auto"`` or ``"host:port"`` joins a running cluster.
        num_cpus, num_gpus, resources: what a local Ray offers (default: this machine's
            cores and GPUs); ignored when joining.
        object_store_memory: bytes of a local Ray's object store (default: Ray's).
        shutdown_timeout: seconds ``shutdown()`` lets actors finish queued calls before
            it kills them.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        resources: dict[str, float] | None = None,
        object_store_memory: int | None = None,
        shutdown_timeout: float = 2.0,
    ):
        self.address = address
        self.shutdown_timeout = shutdown_timeout
        self._owns_ray = False  # we called ray.init, so we call ray.shutdown
        self._capacity: dict[str, float] | None = None  # a local Ray only we use
        if ray.is_initialized():
            log.debug("joining the Ray this program initialised")
        elif address is None:
            _quiet_init(num_cpus=num_cpus if num_cpus is not None else os.cpu_count() or 1,
                        num_gpus=num_gpus, resources=resources,
                        object_store_memory=object_store_memory, include_dashboard=False)
            self._owns_ray = True
            self._capacity = {k: v for k, v in ray.cluster_resources().items()
                              if k not in ("memory", "object_store_memory")
                              and not k.startswith("node:")}
        else:
            _quiet_init(address=address)
            self._owns_ray = True
        # Joined (an address, or a Ray this program started): a cluster, as far as we know.
        self.capabilities = dataclasses.replace(backend_capabilities("ray"),
                                                is_cluster=self._capacity is None)
        self._actors: list[RayActor] = []
        self._boards: list[RayWeightsBoard] = []
        self._closed = False

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
    ) -> RayActor:
        if self._closed:
            raise RuntimeError("spawn() after shutdown()")
        name = self.actor_name(cls, name)
        self._check_capacity(name, num_cpus, num_gpus, resources)
        puts: list = []
        payload = cloudpickle.dumps((cls, _pack(args, puts), _pack(kwargs, puts)))
        handle = box_class(cls.__name__).options(
            num_cpus=num_cpus, num_gpus=num_gpus, resources=dict(resources or {}),
            max_restarts=0, max_task_retries=0,
        ).remote(name, payload, *puts)
        actor = RayActor(self, handle, name, num_cpus, num_gpus, resources)
        self._actors.append(actor)
        return actor

    def get(self, refs: ObjectRef | Sequence[ObjectRef], timeout: float | None = None) -> Any:
        single = isinstance(refs, ObjectRef)
        items = [self._own(r) for r in ([refs] if single else refs)]
        for ref in items:
            if ref.error is not None:
                raise ref.error.with_traceback(None)
        try:
            values = ray.get([r.raw for r in items], timeout=timeout)
        except rex.GetTimeoutError:
            missing = len(items) - len(ray.wait([r.raw for r in items], num_returns=len(items),
                                                timeout=0)[0])
            raise GetTimeoutError(
                f"{missing} of {len(items)} refs not ready after {timeout} s") from None
        except rex.RayError:
            raise self._first_error(items) from None
        for ref, value in zip(items, values):
            if type(value) is Failure:
                raise value.to_error(ref.actor.name)
            if ref.shared is not None:
                bind_shared(value, ref.shared)
        return values[0] if single else values

    def wait(
        self,
        refs: Sequence[ObjectRef],
        num_returns: int = 1,
        timeout: float | None = None,
    ) -> tuple[list[ObjectRef], list[ObjectRef]]:
        refs = [self._own(r) for r in refs]
        if not 0 <= num_returns <= len(refs):
            raise ValueError(f"num_returns must be in [0, {len(refs)}], got {num_returns}")
        done = {id(r) for r in refs if r.error is not None}
        live = list({r.raw: None for r in refs if r.error is None})  # unique, for ray.wait
        need = min(max(0, num_returns - len(done)), len(live))
        if need > 0:
            ready_raw, _ = ray.wait(live, num_returns=need, timeout=timeout)
            if len(ready_raw) < len(live):
                # Ray returns *some* ready refs; the interface promises the first ones
                # in input order, so look at all of them once more without waiting.
                ready_raw, _ = ray.wait(live, num_returns=len(live), timeout=0)
            ready_set = set(ready_raw)
            done.update(id(r) for r in refs if r.raw is not None and r.raw in ready_set)
        ready, pending = [], []
        for ref in refs:
            (ready if id(ref) in done and len(ready) < num_returns else pending).append(ref)
        return ready, pending

    def put(self, value: Any) -> ObjectRef:
        return RayRef(ray.put(value), None)

    def weights_board(self, size: int) -> WeightsBoard:
        board = RayWeightsBoard(size)
        self._boards.append(board)
        return board

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        live = [a for a in self._actors if not a._dead]
        # Stop, then kill: each actor exits once the calls queued before this one are
        # answered (Ray's graceful exit), or is killed when the timeout is up.
        exits = []
        for actor in live:
            with contextlib.suppress(Exception):
                exits.append(actor._handle.__ray_terminate__.remote())
        if exits:
            with contextlib.suppress(Exception):
                ray.wait(exits, num_returns=len(exits), timeout=self.shutdown_timeout)
        for actor in live:
            actor.kill()
        for board in self._boards:
            board.close()
        if self._owns_ray:
            # A local Ray stops with its processes; a joined cluster only loses this
            # driver (and with it the actors it owned).
            ray.shutdown()

    @property
    def actors(self) -> list[RayActor]:
        """Every actor spawned by this runtime, dead or alive."""
        return list(self._actors)

    # ------------------------------------------------------------------ internals

    def _own(self, ref: ObjectRef) -> RayRef:
        if type(ref) is not RayRef:
            raise TypeError(f"{ref!r} does not belong to this runtime")
        if ref.error is None and self._closed and not ray.is_initialized():
            # The local Ray is gone with its objects; asking for them would make Ray
            # start a new one instead.
            name = ref.actor.name if ref.actor is not None else "put"
            ref.error = ActorDiedError(name, None, "the runtime shut down")
        return ref

    def _check_capacity(self, name: str, num_cpus: float, num_gpus: float,
                        resources: dict[str, float] | None) -> None:
        """On a local Ray, refuse an actor that cannot be placed now: Ray would queue it
        forever, as no other driver or autoscaler frees or adds resources there."""
        if self._capacity is None:
            return
        demand = _demand(num_cpus, num_gpus, resources)
        live = [(a, _demand(a.num_cpus, a.num_gpus, a.resources))
                for a in self._actors if not a._dead]
        for key, amount in demand.items():
            total = self._capacity.get(key, 0.0)
            holders = [(a, d[key]) for a, d in live if d.get(key, 0.0) > 0]
            used = sum(amount for _, amount in holders)
            if used + amount > total + 1e-9:
                held = f" (held by {', '.join(a.name for a, _ in holders)})" if holders else ""
                raise UnschedulableError(
                    f"cannot start {name}: it needs {key}={amount:g}, and the local Ray has "
                    f"{max(0.0, total - used):g} of {total:g} free{held}. Ask for fewer "
                    "actors or resources, start a bigger local Ray "
                    "(RayRuntime(num_cpus=..., resources=...)) or join a cluster (address)"
                )

    def _first_error(self, items: list[RayRef]) -> RuntimeErrorBase:
        """The error of the first failed ref, in input order (all are done)."""
        for ref in items:
            try:
                ray.get(ref.raw, timeout=0)
            except rex.RayError as exc:
                return self._translate(exc, ref)
        return RemoteError("?", "RayError", "ray.get failed, but no ref reports an error", "")

    def _translate(self, exc: BaseException, ref: RayRef) -> RuntimeErrorBase:
        name = ref.actor.name if ref.actor is not None else "put"
        if isinstance(exc, rex.RayActorError):
            if ref.actor is not None:
                ref.actor._dead = True
            detail = "the runtime shut down" if self._closed else _death_detail(str(exc))
            return ActorDiedError(name, None, detail)
        if isinstance(exc, rex.RayTaskError):
            cause = exc.cause if isinstance(exc.cause, BaseException) else None
            text = _ANSI.sub("", str(exc))
            if cause is None:
                return RemoteError(name, type(exc).__name__, text.splitlines()[-1], text)
            return RemoteError(name, type(cause).__name__, str(cause), text, cause)
        if isinstance(exc, rex.ObjectLostError | rex.NodeDiedError | rex.WorkerCrashedError):
            # The result is gone with the process or node that held it: for the caller
            # that is the death of the actor behind the ref.
            if ref.actor is not None:
                ref.actor._dead = True
            return ActorDiedError(name, None, _ANSI.sub("", str(exc)).splitlines()[0])
        text = _ANSI.sub("", str(exc))
        return RemoteError(name, type(exc).__name__, text.splitlines()[0] if text else "",
                           "".join(traceback.format_exception(exc)))


def _demand(num_cpus: float, num_gpus: float, resources: dict[str, float] | None
            ) -> dict[str, float]:
    """An actor's resource request, as Ray's resource names, without zeros."""
    demand = {"CPU": num_cpus, "GPU": num_gpus, **(resources or {})}
    return {k: float(v) for k, v in demand.items() if v > 0}


def _death_detail(message: str) -> str:
    """Ray's death report, shortened: where the process ran and why it ended."""
    lines = message.splitlines()
    fields = dict(line.strip().split(": ", 1) for line in lines[1:]
                  if line.startswith("\t") and ": " in line)
    where = ", ".join(f"{k} {fields[k]}" for k in ("pid", "ip") if k in fields)
    why = " ".join(line.strip() for line in lines[1:] if not line.startswith("\t"))
    why = why or (lines[0] if lines else "no details from Ray")
    # Ray appends a paragraph of generic advice to the exit detail; the first
    # sentences name the exit type and detail, which is what helps.
    why = ". ".join(why.split(". ")[:3]).rstrip(".")
    return f"{why} ({where})" if where else why


def _quiet_init(**kwargs: Any) -> None:
    """``ray.init`` without Ray's start-up chatter on the console (warnings stay)."""
    # Ray logs at INFO how to open a dashboard we do not start, and warns on every local
    # start that it enabled token authentication (its new default) for the cluster.
    auth_log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    previous = auth_log.level
    auth_log.setLevel(logging.ERROR)
    try:
        ray.init(logging_level=logging.WARNING, log_to_driver=True, **kwargs)
    finally:
        auth_log.setLevel(previous)
