"""The process backend's slot table (``rl.runtime.slots``): keys and slots of calls,
put records, and what dropping a ref does."""

from __future__ import annotations

import gc
import pickle

import numpy as np
import pytest

from rl.runtime import shm
from rl.runtime.shared import ShmShared
from rl.runtime.slots import CallRef, PutRecord, PutRef, SlotTable


class Holder:
    """A stand-in for an actor handle that caches put values."""

    def __init__(self):
        self.forgotten: list[str] = []

    def forget_put(self, key: str) -> None:
        self.forgotten.append(key)


def test_keys_are_fresh_and_start_after_the_init_key():
    table = SlotTable()
    with table.lock:
        keys = [table.open()[0] for _ in range(3)]
    assert keys == [1, 2, 3]  # 0 is the key of Init and stop frames


def test_finish_fills_the_slot_and_unpins_its_puts():
    table = SlotTable()
    with table.lock:
        key, slot = table.open()
        slot.keep = ("a pinned put ref",)
        table.finish(key, slot, value=42)
    assert table.slot(key) is slot
    assert slot.done and slot.value == 42 and slot.error is None and slot.keep == ()
    error = ValueError("boom")
    with table.lock:
        key2, slot2 = table.open()
        table.finish(key2, slot2, error=error)
    assert slot2.done and slot2.error is error


def test_a_dropped_ref_forgets_its_slot_now_if_done_else_when_it_finishes():
    table = SlotTable()
    with table.lock:
        done_key, done = table.open()
        table.finish(done_key, done, value=1)
        pending_key, pending = table.open()
    table.drop(done_key)
    table.drop(pending_key)
    with table.lock:
        table.reap()
    with pytest.raises(KeyError):
        table.slot(done_key)
    assert table.slot(pending_key) is pending and pending.dropped
    with table.lock:
        table.finish(pending_key, pending, value=2)  # its answer arrives: nobody wants it
    with pytest.raises(KeyError):
        table.slot(pending_key)


def test_a_call_ref_drops_its_slot_when_collected():
    table = SlotTable()
    with table.lock:
        key, slot = table.open()
        table.finish(key, slot, value="x")
    ref = CallRef(key, table)
    assert ref.id == f"call-{key}"
    del ref
    gc.collect()
    with table.lock:
        table.reap()
    with pytest.raises(KeyError):
        table.slot(key)


def test_discard_forgets_a_slot_at_once():
    table = SlotTable()
    with table.lock:
        key, _ = table.open()
        table.discard(key)
        table.discard(key)  # idempotent
    with pytest.raises(KeyError):
        table.slot(key)


def test_a_dropped_put_tells_every_holder_once():
    table = SlotTable()
    holders = [Holder(), Holder()]
    with table.lock:
        for h in holders:
            table.add_holder(h)
        key = table.add_put(PutRecord(ShmShared(pickle.dumps([1, 2]), ())))
        other = table.add_put(PutRecord(ShmShared(pickle.dumps(3), ())))
    assert key != other and key.startswith("put-")
    table.drop_put(key)
    table.drop_put(key)  # a second drop of a gone record is ignored
    with table.lock:
        table.reap()
    assert [h.forgotten for h in holders] == [[key], [key]]
    with table.lock:
        assert table.take_puts() and table.take_puts() == []  # `other` was left, once


def test_put_ref_unlinks_its_segments_and_queues_its_key():
    table = SlotTable()
    holder = Holder()
    prefix = f"{shm.driver_prefix()}slots_test_"
    big = np.arange(1 << 16, dtype=np.float64)  # 512 KiB: above SHM_THRESHOLD
    record = PutRecord(ShmShared.store({"a": big}, prefix))
    assert len(shm.list_segments(prefix)) == 1
    with table.lock:
        table.add_holder(holder)
        key = table.add_put(record)
    ref = PutRef(key, record, table)
    assert ref.id == key
    value = table.put_value(record)
    np.testing.assert_array_equal(value["a"], big)
    assert not value["a"].flags.writeable  # a held object: read-only views
    assert table.put_value(record) is value  # unpickled once
    del ref
    gc.collect()
    assert shm.list_segments(prefix) == []
    np.testing.assert_array_equal(value["a"], big)  # mappings made stay valid
    with table.lock:
        table.reap()
        assert table.take_puts() == []
    assert holder.forgotten == [key]
