"""Actor runtimes: one interface (``base``), one backend per module.

``make_runtime(name, **opts)`` is the only constructor the rest of ``rl`` uses.
"""

from __future__ import annotations

from typing import Any

from rl.runtime.base import (
    ActorDiedError,
    ActorHandle,
    BoardReader,
    GetTimeoutError,
    ObjectRef,
    RemoteError,
    Runtime,
    RuntimeErrorBase,
    UnschedulableError,
    WeightsBoard,
)

BACKENDS = ("process", "inline", "ray")

__all__ = [
    "BACKENDS",
    "ActorDiedError",
    "ActorHandle",
    "BoardReader",
    "GetTimeoutError",
    "ObjectRef",
    "RemoteError",
    "Runtime",
    "RuntimeErrorBase",
    "UnschedulableError",
    "WeightsBoard",
    "make_runtime",
    "prestart",
]


def make_runtime(name: str = "process", **opts: Any) -> Runtime:
    """Create a runtime backend by name: ``process`` (default), ``inline`` or ``ray``."""
    if name == "process":
        from rl.runtime.process import ProcessRuntime

        return ProcessRuntime(**opts)
    if name == "inline":
        from rl.runtime.inline import InlineRuntime

        return InlineRuntime(**opts)
    if name == "ray":
        from rl.runtime.ray import RayRuntime

        return RayRuntime(**opts)
    raise ValueError(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)}")


def prestart(name: str = "process") -> None:
    """Start the process backend's forkserver now, in the background.

    The forkserver imports torch once for all actors; started before the driver
    imports torch itself, the two imports overlap instead of queueing (the CLI calls
    this first thing). A no-op for other backends or when already running.
    """
    if name != "process":
        return
    import multiprocessing as mp
    from multiprocessing import forkserver

    from rl.runtime.process import DEFAULT_PRELOAD

    mp.get_context("forkserver").set_forkserver_preload(list(DEFAULT_PRELOAD))
    forkserver.ensure_running()
