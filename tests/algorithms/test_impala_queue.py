"""IMPALA bookkeeping as plain classes: the bounded learner queue, policy lag, metrics."""

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from rl.algorithms.impala import queue as queue_module
from rl.algorithms.impala.queue import LearnerQueue, MetricsWindow, PolicyLag, QueuedBatch


def batch(name: str, steps: int = 100, versions=(1,)) -> QueuedBatch:
    return QueuedBatch([{"name": name}], steps, list(versions))


def test_queue_is_fifo_and_drops_the_oldest_when_full():
    q = LearnerQueue(2)
    assert q.put(batch("a", 100)) is None
    assert q.put(batch("b", 200)) is None
    assert len(q) == 2 and q.dropped_env_steps == 0
    dropped = q.put(batch("c", 300))
    assert dropped.fragments[0]["name"] == "a"
    assert (q.dropped_batches, q.dropped_env_steps, len(q)) == (1, 100, 2)
    q.put(batch("d", 400))
    assert (q.dropped_batches, q.dropped_env_steps) == (2, 300)  # a and b
    assert [q.get_nowait().fragments[0]["name"] for _ in range(2)] == ["c", "d"]
    assert q.get_nowait() is None and q.get(timeout=0.01) is None


def test_queue_get_blocks_until_put_and_close_wakes_waiters():
    q = LearnerQueue(1)
    got = []

    def get_one(done: threading.Event) -> None:
        got.append(q.get(timeout=None))
        done.set()

    returned = threading.Event()
    consumer = threading.Thread(target=get_one, args=(returned,))
    consumer.start()
    assert not returned.wait(0.05)  # an empty queue blocks the get
    q.put(batch("x"))
    assert returned.wait(5)
    consumer.join(5)
    assert got[0].fragments[0]["name"] == "x"

    woken = threading.Event()
    waiter = threading.Thread(target=get_one, args=(woken,))
    waiter.start()
    assert not woken.wait(0.05)
    q.close()
    assert woken.wait(5)  # no timeout was given: only close() can end that get
    waiter.join(5)
    assert not waiter.is_alive() and got[1] is None
    q.put(batch("late"))
    assert q.get(timeout=0) is None  # a closed queue hands nothing out


def test_queue_rejects_zero_size():
    with pytest.raises(ValueError, match="maxsize must be >= 1"):
        LearnerQueue(0)


def test_policy_lag_for_a_scripted_sequence():
    lag = PolicyLag()
    lag.record_publish(1, 0)  # the initial weights
    # Learner: updates 1 and 2 (broadcast_interval=2 -> one publish after update 2).
    lag.record_publish(2, 2)
    # A batch of two fragments sampled with versions 1 and 2, trained after 3 updates.
    assert lag.observe([1, 2], learner_updates=3) == [3, 1]
    lag.record_publish(3, 4)
    assert lag.observe([3], learner_updates=4) == [0]
    assert lag.observe([2, 3, 3], learner_updates=5) == [3, 1, 1]


def test_metrics_window_reports_lags_with_the_updates_they_belong_to():
    window = MetricsWindow()
    window.add({"loss": 1.0}, lags=[3, 1])
    window.add({"loss": 2.0}, lags=[0])
    window.add({"loss": 3.0}, lags=[3, 1, 1])
    stats = window.pop()
    assert stats["policy_lag_mean"] == pytest.approx((3 + 1 + 0 + 3 + 1 + 1) / 6)
    assert stats["policy_lag_max"] == 3 and stats["updates"] == 3
    # The window restarts after a pop: no update, no lag (nan), no loss.
    empty = window.pop()
    assert empty["policy_lag_mean"] != empty["policy_lag_mean"] and "loss" not in empty


def test_policy_lag_forgets_old_versions_but_stays_bounded():
    lag = PolicyLag(history=3)
    for version in range(1, 11):
        lag.record_publish(version, version * 10)
    # Versions 1..7 fell out of the history; they count from the oldest remembered (8).
    assert lag.lag(2, 100) == 100 - 80
    assert lag.lag(9, 100) == 10
    assert lag.lag(0, 5) == 0  # never negative


def test_metrics_window_means_and_rate(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(queue_module, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    window = MetricsWindow()
    window.add({"loss": 1.0, "entropy": 0.5}, seconds=0.0)
    window.add({"loss": 3.0, "entropy": 0.7}, seconds=1e-6)
    now[0] += 2.0
    out = window.pop()
    assert out["loss"] == 2.0 and out["entropy"] == pytest.approx(0.6)
    assert out["updates"] == 2 and out["updates_per_s"] == pytest.approx(1.0)
    assert out["busy_frac"] == pytest.approx(1e-6 / 2.0)
    now[0] += 0.5
    again = window.pop()
    assert again["updates"] == 0 and "loss" not in again and again["updates_per_s"] == 0.0


class GatedGroup:
    """A learner whose first update holds until ``finish_first`` is set."""

    lock = threading.RLock()

    def __init__(self, total: int):
        self.total = total
        self.trained = 0
        self.first_started = threading.Event()
        self.finish_first = threading.Event()
        self.later_started = threading.Event()
        self.all_trained = threading.Event()

    def update_fragments(self, fragments, columns, **hyper):
        if self.trained == 0:
            self.first_started.set()
            assert self.finish_first.wait(10)
        else:
            self.later_started.set()
        self.trained += 1
        if self.trained == self.total:
            self.all_trained.set()
        return {"loss": 1.0}

    def get_weights(self):
        return None


class GatedQueue(LearnerQueue):
    """Holds the runner before it looks for its second batch until ``gate`` is set, so
    that a pause requested during the first update is granted before the second."""

    def __init__(self, maxsize: int):
        super().__init__(maxsize)
        self.gate = threading.Event()
        self.looks = 0

    def wait_ready(self, timeout=None):
        self.looks += 1
        if self.looks > 1:
            self.gate.wait()
        return super().wait_ready(timeout)


def test_a_paused_runner_leaves_every_batch_either_queued_or_trained():
    from rl.algorithms.impala.learner import LearnerRunner, PolicyTrainer

    group, queue = GatedGroup(total=5), GatedQueue(10)
    for i in range(5):
        queue.put(batch(str(i), 10, versions=(0,)))
    runner = LearnerRunner([PolicyTrainer("p", group, PolicyLag(), dict, columns=1)], queue,
                           broadcast_interval=1000)
    inside, leave = threading.Event(), threading.Event()
    seen = {}

    def pause() -> None:
        with runner.paused():
            seen.update(trained=group.trained, queued=len(queue), updates=runner.updates)
            inside.set()
            leave.wait(10)

    pauser = threading.Thread(target=pause)
    runner.start()
    try:
        assert group.first_started.wait(5)  # an update is under way
        pauser.start()
        assert not inside.wait(0.05)  # the pause waits for the update in progress
        group.finish_first.set()
        assert inside.wait(5)
        assert seen == {"trained": 1, "queued": 4, "updates": 1}
        queue.gate.set()  # the runner may look for the next batch now ...
        assert not group.later_started.wait(0.1)  # ... but nothing moves while paused
        assert (group.trained, len(queue)) == (1, 4)
        leave.set()
        pauser.join(5)
        assert group.all_trained.wait(5)
        runner.stop()  # joins the thread: the last update's counters are written
        runner.check()
        assert group.trained == 5 and runner.env_steps_trained == 50
    finally:
        group.finish_first.set()
        queue.gate.set()
        leave.set()
        runner.stop()


class RecordingGroup:
    """A learner that records the fragments it is given and returns fixed weights."""

    lock = threading.RLock()

    def __init__(self, weights):
        self.seen = []
        self.weights = weights

    def update_fragments(self, fragments, columns, **hyper):
        self.seen.append((fragments, columns, hyper))
        return {"loss": float(len(self.seen))}

    def get_weights(self):
        return self.weights


def test_each_policy_trains_on_its_columns_with_its_own_lag_and_snapshot():
    from rl.algorithms.impala.learner import LearnerRunner, PolicyTrainer

    groups = {"a": RecordingGroup("wa"), "b": RecordingGroup("wb")}
    lags = {"a": PolicyLag(), "b": PolicyLag()}
    # Policy a's board version 3 holds update 2's weights; b's version 7 update 0's.
    lags["a"].record_publish(3, 2)
    lags["b"].record_publish(7, 0)
    trainers = [PolicyTrainer(p, groups[p], lags[p], lambda p=p: {"lr": {"a": 1.0, "b": 2.0}[p]},
                              columns=1, index=k, select=lambda f, k=k: {"col": f["col"][k]})
                for k, p in enumerate(("a", "b"))]
    queue = LearnerQueue(4)
    runner = LearnerRunner(trainers, queue, broadcast_interval=2)
    runner.updates = 5
    # One fragment sampled with a's version 3 and b's version 7 (one version per policy).
    queue.put(QueuedBatch([{"col": ["for a", "for b"]}], 10, [[3, 7]]))
    queue.put(QueuedBatch([{"col": ["a2", "b2"]}], 10, [[3, 7]]))
    runner.drain()
    assert [s[0] for s in groups["a"].seen] == [[{"col": "for a"}], [{"col": "a2"}]]
    assert [s[0] for s in groups["b"].seen] == [[{"col": "for b"}], [{"col": "b2"}]]
    assert groups["a"].seen[0][2] == {"lr": 1.0} and groups["b"].seen[0][2] == {"lr": 2.0}
    a, b = trainers[0].metrics.pop(), trainers[1].metrics.pop()
    assert (a["policy_lag_mean"], a["policy_lag_max"]) == (3.5, 4.0)  # 5-2, 6-2
    assert (b["policy_lag_mean"], b["policy_lag_max"]) == (5.5, 6.0)  # 5-0, 6-0
    assert a["updates"] == b["updates"] == 2.0
    # Update 6 (the first batch's) is a broadcast, 7 is not: one snapshot of each policy.
    assert runner.pop_weights() == {"a": ("wa", 6), "b": ("wb", 6)}
    assert runner.pop_weights() is None
    assert runner.env_steps_trained == 20


def test_popped_metrics_cover_exactly_the_updates_counted_with_them():
    """The driver's report reads the update counters and pops the metrics at one
    instant: however it interleaves with the learner thread, a report that counts an
    update also carries its metrics (a run never reports env_steps_trained > 0 without a
    loss), and no metrics arrive before the update they belong to is counted."""
    from rl.algorithms.impala.learner import LearnerRunner, PolicyTrainer

    total = 300
    group, queue = RecordingGroup(np.zeros(3)), LearnerQueue(total)
    trainers = [PolicyTrainer(p, group, PolicyLag(), dict, columns=1) for p in ("a", "b")]
    runner = LearnerRunner(trainers, queue, broadcast_interval=7)
    for i in range(total):
        queue.put(batch(str(i), 10, versions=(0,)))
    popped = {"a": 0, "b": 0}
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while popped["a"] < total and time.monotonic() < deadline:
            updates, trained, metrics = runner.pop_metrics()
            for t, m in zip(trainers, metrics):
                popped[t.pid] += int(m["updates"])
                assert popped[t.pid] == updates  # every counted update, and no other
                if m["updates"]:
                    assert np.isfinite(m["loss"])
            assert trained == 10 * updates
        runner.check()
        assert popped == {"a": total, "b": total}
    finally:
        runner.stop()
