"""Actor runtimes: one interface (``base``), one backend per module.

``make_runtime(name, **opts)`` is the only constructor the rest of ``rl`` uses, and
``capabilities(name)`` says what a backend can do before it starts: the layers above
choose a backend by name (the config, the CLI) and decide everything else by its
capabilities.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rl.runtime.base import (
    ActorDiedError,
    ActorHandle,
    BoardReader,
    Capabilities,
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
    "Capabilities",
    "GetTimeoutError",
    "ObjectRef",
    "RemoteError",
    "Runtime",
    "RuntimeErrorBase",
    "UnschedulableError",
    "WeightsBoard",
    "capabilities",
    "make_runtime",
    "prestart",
]


_LOCAL = Capabilities(actors_in_driver=False, max_learner_ranks=None, is_cluster=False,
                      schedules_gpus=False)
# Kept here rather than on the backend classes: asking must not import a backend (the
# ray module imports Ray, which may not even be installed when the config is checked).
_CAPABILITIES = {
    "process": _LOCAL,
    "inline": Capabilities(actors_in_driver=True, max_learner_ranks=1, is_cluster=False,
                           schedules_gpus=False),
    "ray": Capabilities(actors_in_driver=False, max_learner_ranks=None, is_cluster=False,
                        schedules_gpus=True),
}


def capabilities(name: str, *, address: str | None = None) -> Capabilities:
    """What backend ``name`` can do, without starting (or importing) it.

    Args:
        name: a backend name (``BACKENDS``).
        address: the cluster ``make_runtime`` would be given: a cluster-capable backend
            (Ray) with an address joins a cluster (``is_cluster``); the others ignore it.
    """
    try:
        caps = _CAPABILITIES[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)}") \
            from None
    if name == "ray" and address is not None:
        return dataclasses.replace(caps, is_cluster=True)
    return caps


def make_runtime(name: str = "process", *, address: str | None = None, **opts: Any) -> Runtime:
    """Create a runtime backend by name: ``process`` (default), ``inline`` or ``ray``.

    Args:
        name: the backend.
        address: a cluster to join (``"auto"`` or ``"host:port"``), for the backend that
            can (Ray); the local backends ignore it, so a caller passes its configured
            address whatever the backend.
        **opts: the backend's own keyword arguments (see its class).
    """
    if name == "process":
        from rl.runtime.process import ProcessRuntime

        return ProcessRuntime(**opts)
    if name == "inline":
        from rl.runtime.inline import InlineRuntime

        return InlineRuntime(**opts)
    if name == "ray":
        from rl.runtime.ray import RayRuntime

        return RayRuntime(address, **opts)
    raise ValueError(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)}")


def prestart(name: str = "process") -> None:
    """Start the process backend's forkserver now, in the background.

    The forkserver imports ``DEFAULT_PRELOAD`` (numpy, gymnasium, ``rl``; not torch,
    which numpy-run workers never need) once for all actors; started before the driver
    imports torch, the imports overlap instead of queueing (the CLI calls this first
    thing). A no-op for other backends or when already running.
    """
    if name != "process":
        return
    import multiprocessing as mp
    from multiprocessing import forkserver

    from rl.runtime.process import DEFAULT_PRELOAD

    mp.get_context("forkserver").set_forkserver_preload(list(DEFAULT_PRELOAD))
    forkserver.ensure_running()
