"""The inline backend: actors are plain objects in the calling process.

``call`` runs the method at once and stores its value or its exception, so a program
on this backend is serial and exactly reproducible, and a debugger or a profiler sees
every actor's code in one process. It raises the same errors as the process backend:
a method that raises gives ``RemoteError`` (with the traceback text) on ``get``, and
after ``kill()`` or ``shutdown()`` calls give ``ActorDiedError``.

What differs by design: arguments and results are passed by reference, not copied, and
nothing ever times out, because every ref is ready as soon as ``call`` returns.
"""

from __future__ import annotations

import itertools
import traceback
from collections.abc import Sequence
from typing import Any

from rl.runtime import capabilities as backend_capabilities
from rl.runtime.base import (
    ActorDiedError,
    ActorHandle,
    ObjectRef,
    RemoteError,
    Runtime,
    WeightsBoard,
)
from rl.runtime.shm import ShmWeightsBoard, driver_prefix

__all__ = ["InlineRuntime"]

_ids = itertools.count()
_sessions = itertools.count()


class InlineRef(ObjectRef):
    """A finished call (value or error) or a ``put`` value."""

    __slots__ = ("_id", "error", "is_put", "runtime", "value")

    def __init__(
        self,
        runtime: InlineRuntime,
        value: Any = None,
        error: BaseException | None = None,
        *,
        is_put: bool = False,
    ):
        self._id = f"{'put' if is_put else 'call'}-{next(_ids)}"
        self.runtime = runtime
        self.value = value
        self.error = error
        self.is_put = is_put

    @property
    def id(self) -> str:
        return self._id


class InlineActor(ActorHandle):
    """An actor that is the object itself; construction errors surface on ``get``."""

    def __init__(
        self,
        runtime: InlineRuntime,
        cls: type,
        args: tuple,
        kwargs: dict,
        *,
        name: str,
        num_cpus: float,
        num_gpus: float,
        resources: dict[str, float] | None,
    ):
        self.name = name
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.resources = dict(resources or {})
        self._rt = runtime
        self._instance: Any = None
        self._broken: RemoteError | None = None
        self._dead = False
        try:
            self._instance = cls(*runtime._resolve(args), **runtime._resolve(kwargs))
        except Exception as exc:
            self._broken = _remote_error(self.name, exc, f"constructing {cls.__name__} failed: ")

    def __repr__(self) -> str:
        return f"InlineActor({self.name!r})"

    def call(self, method: str, *args: Any, **kwargs: Any) -> ObjectRef:
        if self._dead:
            return InlineRef(
                self._rt, error=ActorDiedError(self.name, None, "call after it stopped")
            )
        if self._broken is not None:
            return InlineRef(self._rt, error=self._broken)
        args, kwargs = self._rt._resolve(args), self._rt._resolve(kwargs)
        try:
            return InlineRef(self._rt, value=getattr(self._instance, method)(*args, **kwargs))
        except Exception as exc:
            return InlineRef(self._rt, error=_remote_error(self.name, exc))

    def kill(self) -> None:
        self._dead = True
        self._instance = None

    def is_alive(self) -> bool:
        return not self._dead


def _remote_error(actor_name: str, exc: Exception, context: str = "") -> RemoteError:
    text = "".join(traceback.format_exception(exc))
    return RemoteError(actor_name, type(exc).__name__, f"{context}{exc}", text, exc)


class InlineRuntime(Runtime):
    """Runs every actor in the calling process, one call at a time, at ``call`` time."""

    name = "inline"
    capabilities = backend_capabilities("inline")

    def __init__(self) -> None:
        self.prefix = f"{driver_prefix()}inline{next(_sessions)}_"
        self._actors: list[InlineActor] = []
        self._boards: list[WeightsBoard] = []
        self._closed = False

    def spawn(
        self,
        cls: type,
        *args: Any,
        num_cpus: float = 1,
        num_gpus: float = 0,
        name: str | None = None,
        resources: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> InlineActor:
        if self._closed:
            raise RuntimeError("spawn() after shutdown()")
        name = self.actor_name(cls, name)
        actor = InlineActor(
            self,
            cls,
            args,
            kwargs,
            name=name,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            resources=resources,
        )
        self._actors.append(actor)
        return actor

    def get(self, refs: ObjectRef | Sequence[ObjectRef], timeout: float | None = None) -> Any:
        single = isinstance(refs, ObjectRef)
        items = [self._own(r) for r in ([refs] if single else refs)]
        for ref in items:
            if ref.error is not None:
                raise ref.error.with_traceback(None)
        values = [ref.value for ref in items]
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
        return refs[:num_returns], refs[num_returns:]

    def put(self, value: Any) -> ObjectRef:
        return InlineRef(self, value=value, is_put=True)

    def weights_board(self, size: int) -> WeightsBoard:
        # The shared-memory board works within one process too, and gives inline actors
        # exactly the semantics process actors get.
        board = ShmWeightsBoard(size, prefix=self.prefix)
        self._boards.append(board)
        return board

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        for actor in self._actors:
            actor.kill()
        for board in self._boards:
            board.close()

    @property
    def actors(self) -> list[InlineActor]:
        """Every actor spawned by this runtime, dead or alive."""
        return list(self._actors)

    def _own(self, ref: ObjectRef) -> InlineRef:
        if type(ref) is not InlineRef or ref.runtime is not self:
            raise TypeError(f"{ref!r} does not belong to this runtime")
        return ref

    def _resolve(self, value: Any) -> Any:
        """Replace put refs by their values, in arguments and inside lists, tuples, dicts."""
        kind = type(value)
        if kind is InlineRef:
            if not value.is_put:
                raise TypeError(
                    f"{value!r} is the result of a call; pass rt.get(ref), or rt.put(value) "
                    "to share one value among actors"
                )
            return value.value
        if kind in (list, tuple):
            return kind(self._resolve(v) for v in value)
        if kind is dict:
            return {k: self._resolve(v) for k, v in value.items()}
        return value
