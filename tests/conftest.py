"""Shared fixtures: ``runtime`` runs a test on every local backend and checks cleanup."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from rl.runtime import Runtime, make_runtime, shm

LOCAL_BACKENDS = ("inline", "process")


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


def assert_clean(rt: Runtime) -> None:
    """After ``shutdown()``: no child process and no segment of the session."""
    pids = [a.pid for a in rt.actors if hasattr(a, "pid")]
    assert wait_gone(pids, 2.0) == [], "actor processes survived shutdown"
    assert shm.list_segments(rt.prefix) == [], "segments left in /dev/shm"


def open_runtime(backend: str, **opts) -> Iterator[Runtime]:
    rt = make_runtime(backend, **opts)
    try:
        yield rt
    finally:
        rt.shutdown()
        assert_clean(rt)


@pytest.fixture(name="pid_alive")
def pid_alive_fixture():
    """``pid_alive(pid) -> bool``, for tests that watch processes."""
    return pid_alive


@pytest.fixture(name="wait_gone")
def wait_gone_fixture():
    """``wait_gone(pids, timeout) -> survivors``, for tests that watch processes."""
    return wait_gone


@pytest.fixture(params=LOCAL_BACKENDS, ids=LOCAL_BACKENDS)
def runtime(request) -> Iterator[Runtime]:
    """A fresh runtime of each local backend; shut down and checked for leaks after."""
    yield from open_runtime(request.param)


@pytest.fixture
def process_runtime() -> Iterator[Runtime]:
    """For behaviour only a process backend has (timeouts, signals, processes)."""
    yield from open_runtime("process", shutdown_timeout=1.0)
