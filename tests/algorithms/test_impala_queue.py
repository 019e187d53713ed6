"""IMPALA bookkeeping as plain classes: the bounded learner queue, policy lag, metrics."""

import threading
import time

import pytest

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
    consumer = threading.Thread(target=lambda: got.append(q.get(timeout=5)))
    consumer.start()
    time.sleep(0.05)
    q.put(batch("x"))
    consumer.join(2)
    assert got[0].fragments[0]["name"] == "x"

    waiter = threading.Thread(target=lambda: got.append(q.get(timeout=None)))
    waiter.start()
    time.sleep(0.05)
    start = time.monotonic()
    q.close()
    waiter.join(2)
    assert not waiter.is_alive() and got[1] is None and time.monotonic() - start < 1
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


def test_metrics_window_means_and_rate():
    window = MetricsWindow()
    window.add({"loss": 1.0, "entropy": 0.5}, seconds=0.0)
    window.add({"loss": 3.0, "entropy": 0.7}, seconds=1e-6)
    time.sleep(0.01)
    out = window.pop()
    assert out["loss"] == 2.0 and out["entropy"] == pytest.approx(0.6)
    assert out["updates"] == 2 and out["updates_per_s"] > 0
    assert 0 < out["busy_frac"] < 0.01
    again = window.pop()
    assert again["updates"] == 0 and "loss" not in again


def test_a_paused_runner_leaves_every_batch_either_queued_or_trained():
    from rl.algorithms.impala.learner import LearnerRunner

    class SlowGroup:
        lock = threading.RLock()
        trained = 0

        def update_fragments(self, fragments, columns, **hyper):
            time.sleep(0.05)
            SlowGroup.trained += 1
            return {"loss": 1.0}

        def get_weights(self):
            return None

    queue = LearnerQueue(10)
    runner = LearnerRunner(SlowGroup(), queue, PolicyLag(), dict, broadcast_interval=1000,
                           columns=1)
    runner.start()
    try:
        for i in range(5):
            queue.put(batch(str(i), 10, versions=(0,)))
        time.sleep(0.07)  # an update is under way
        with runner.paused():
            trained, queued = SlowGroup.trained, len(queue)
            assert trained + queued == 5 and runner.updates == trained
            time.sleep(0.2)  # nothing moves while paused
            assert (SlowGroup.trained, len(queue)) == (trained, queued)
        deadline = time.monotonic() + 5
        while SlowGroup.trained < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert SlowGroup.trained == 5 and runner.env_steps_trained == 50
    finally:
        runner.stop()
