"""Shared fixtures: ``runtime`` runs a test on every backend and checks cleanup.

Ray tests share one local Ray for the whole session (``ray_session``; starting one takes
seconds): runtimes created while it is up join it, and each test still checks that its
runtime's actor processes are gone after ``shutdown()``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

import pytest

from rl.config import ray_installed
from rl.runtime import Runtime, make_runtime, shm

LOCAL_BACKENDS = ("inline", "process")
BACKENDS = (*LOCAL_BACKENDS, "ray")
ACTOR_PROCESS_BACKENDS = ("process", "ray")
"""Backends whose actors are processes of their own (timeouts, signals, threads)."""


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` is alive; returns the survivors."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids if pid_alive(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.02)


def assert_no_leftovers(pids: list[int], prefix: str | None, timeout: float,
                        what: str = "shutdown") -> None:
    """None of ``pids`` alive within ``timeout`` seconds, and (with a ``prefix``) no
    /dev/shm segment under ``prefix``; ``what`` names the step they should not outlive."""
    survivors = wait_gone(pids, timeout)
    assert survivors == [], f"processes {survivors} survived {what}"
    if prefix is not None:
        left = shm.list_segments(prefix)
        assert left == [], f"segments left in /dev/shm after {what}: {left}"


def assert_clean(rt: Runtime) -> None:
    """After ``shutdown()``: no actor process and no segment of the session."""
    pids = [pid for a in rt.actors if (pid := getattr(a, "pid", None)) is not None]
    assert_no_leftovers(pids, getattr(rt, "prefix", None), 20.0 if rt.name == "ray" else 2.0)


def open_runtime(backend: str, **opts) -> Iterator[Runtime]:
    rt = make_runtime(backend, **opts)
    try:
        yield rt
    finally:
        rt.shutdown()
        assert_clean(rt)


def require_ray() -> None:
    """Skip without Ray, except in CI, which installs it (`make test`) and must run these."""
    if not ray_installed():
        if os.environ.get("CI"):
            pytest.fail("Ray is not installed; `make test` installs the rl[ray] extra")
        pytest.skip("Ray is not installed (pip install 'rl[ray]')")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for the test session: 8 logical CPUs (more than the machine's, so
    that tests may hold several actors) and one unit of a custom resource ``x``."""
    require_ray()
    import ray

    ray.init(num_cpus=8, resources={"x": 1}, object_store_memory=1 << 30,
             include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(name="pid_alive")
def pid_alive_fixture():
    """``pid_alive(pid) -> bool``, for tests that watch processes."""
    return pid_alive


@pytest.fixture(name="wait_gone")
def wait_gone_fixture():
    """``wait_gone(pids, timeout) -> survivors``, for tests that watch processes."""
    return wait_gone


@pytest.fixture(params=BACKENDS, ids=BACKENDS)
def runtime(request) -> Iterator[Runtime]:
    """A fresh runtime of each backend; shut down and checked for leaks after."""
    if request.param == "ray":
        request.getfixturevalue("ray_session")
    yield from open_runtime(request.param)


@pytest.fixture(params=ACTOR_PROCESS_BACKENDS, ids=ACTOR_PROCESS_BACKENDS)
def actor_runtime(request) -> Iterator[Runtime]:
    """A runtime whose actors are processes: for timeouts, signals and threads."""
    if request.param == "ray":
        request.getfixturevalue("ray_session")
    yield from open_runtime(request.param, shutdown_timeout=1.0)


@pytest.fixture
def process_runtime() -> Iterator[Runtime]:
    """For behaviour only the process backend has (shared memory, its own sockets)."""
    yield from open_runtime("process", shutdown_timeout=1.0)


def pytest_collection_modifyitems(config, items):
    """Learning tests train to a threshold: minutes on a slow day (this VM's speed varies
    2-3x), so their hang guard is 30 minutes instead of the suite's 300 s. It guards
    against a hang only; durations are measured by ``rl bench``, never asserted."""
    for item in items:
        if item.get_closest_marker("learning") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(1800))
