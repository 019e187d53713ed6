"""Values shared by reference between actors (``rl.runtime.shared``): one actor shares,
the driver holds and forwards only a handle, another actor resolves it; on every
backend, with the segments' life cycle checked on the process backend."""

from __future__ import annotations

import numpy as np
import pytest

from rl.runtime import ActorDiedError, make_runtime, shared, shm
from rl.runtime.shared import LocalShared, Shared, ShmShared

BIG = 1 << 18  # float32 values: 1 MiB, well above the shared-memory threshold


class Producer:
    def make(self, seed: int) -> Shared:
        rng = np.random.default_rng(seed)
        return shared.share({"x": rng.normal(size=BIG).astype(np.float32), "n": seed})


class Consumer:
    def checksum(self, handle: Shared) -> tuple[float, int, bool]:
        value = shared.resolve(handle)
        return float(value["x"].sum()), value["n"], bool(value["x"].flags.writeable)


def expected_sum(seed: int) -> float:
    return float(np.random.default_rng(seed).normal(size=BIG).astype(np.float32).sum())


def test_a_handle_goes_from_one_actor_to_another_through_the_driver(runtime):
    producer, consumer = runtime.spawn(Producer), runtime.spawn(Consumer)
    handle = runtime.get(producer.call("make", 3))
    assert isinstance(handle, Shared)
    total, n, _ = runtime.get(consumer.call("checksum", handle))
    assert n == 3 and total == pytest.approx(expected_sum(3), rel=1e-6)
    # A second reader gets the same value until the handle is released.
    assert runtime.get(consumer.call("checksum", handle))[1] == 3
    handle.release()
    handle.release()  # idempotent


def test_a_shared_value_outlives_the_actor_that_shared_it(actor_runtime):
    # A rollout worker may die (and be replaced) while the fragments it shared still
    # wait in the driver's queue for a learner.
    rt = actor_runtime
    producer, consumer = rt.spawn(Producer), rt.spawn(Consumer)
    handle = rt.get(producer.call("make", 7))
    producer.kill()
    with pytest.raises(ActorDiedError):
        rt.get(producer.call("make", 8))
    total, n, _ = rt.get(consumer.call("checksum", handle))
    assert n == 7 and total == pytest.approx(expected_sum(7), rel=1e-6)
    handle.release()


def test_inline_handles_are_the_values():
    rt = make_runtime("inline")
    try:
        handle = rt.get(rt.spawn(Producer).call("make", 1))
        assert type(handle) is LocalShared and handle.resolve()["n"] == 1
    finally:
        rt.shutdown()


def test_process_handles_are_small_and_segments_live_until_released(process_runtime):
    rt = process_runtime
    producer, consumer = rt.spawn(Producer), rt.spawn(Consumer)
    handle = rt.get(producer.call("make", 5))
    assert type(handle) is ShmShared
    # The driver holds a few hundred bytes naming one segment, not the 1 MiB of data.
    assert len(handle.payload) < 1024 and len(handle.segments) == 1
    assert shm.list_segments(rt.prefix) == list(handle.segments)
    total, _, writable = rt.get(consumer.call("checksum", handle))
    assert total == pytest.approx(expected_sum(5), rel=1e-6)
    assert not writable  # mapped read-only by every reader
    handle.release()
    assert shm.list_segments(rt.prefix) == []
    # A value resolved before the release stays readable (the mapping outlives the name).
    other = rt.get(producer.call("make", 6))
    value = other.resolve()
    other.release()
    assert float(value["x"].sum()) == pytest.approx(expected_sum(6), rel=1e-6)


def test_unreleased_handles_are_swept_with_the_session(process_runtime):
    rt = process_runtime
    producer = rt.spawn(Producer)
    handles = rt.get([producer.call("make", s) for s in range(3)])
    assert len(shm.list_segments(rt.prefix)) == 3
    rt.shutdown()
    assert shm.list_segments(rt.prefix) == []
    assert all(isinstance(h, ShmShared) for h in handles)


def test_release_all_ignores_plain_values():
    class Counting(Shared):
        released = 0

        def resolve(self):
            return None

        def release(self):
            Counting.released += 1

    shared.release_all([Counting(), {"a": 1}, None, Counting()])
    assert Counting.released == 2
    assert shared.resolve({"a": 1}) == {"a": 1}
