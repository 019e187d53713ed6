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
    "WeightsBoard",
    "make_runtime",
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
