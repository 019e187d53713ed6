"""The bookkeeping between IMPALA's sampling driver and its learner: queue, lag, metrics.

* ``LearnerQueue``: a bounded FIFO of train batches. Sampling never blocks on the
  learner: when the queue is full, ``put`` drops the *oldest* batch (the most
  off-policy one) and counts its env steps.
* ``PolicyLag``: maps each weights-board version to the learner update that
  produced it, so that the lag of a batch (learner updates since the behaviour
  policy's weights) is one subtraction.
* ``MetricsWindow``: means of the learner's metrics, its update rate and the policy
  lags of the batches it trained on, since the driver last reported.

All are plain thread-safe classes with no knowledge of workers or torch, so their
behaviour is unit-tested on scripted sequences.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rl.metrics import MetricMeans

__all__ = ["LearnerQueue", "MetricsWindow", "PolicyLag", "QueuedBatch"]


@dataclass(slots=True)
class QueuedBatch:
    """One train batch on its way to the learner.

    Attributes:
        fragments: the time-major worker fragments (``{column: [T, n, ...]}``) that the
            learner stacks along the env axis.
        env_steps: env steps in the batch (``T x sum of n``).
        behaviour_versions: the weights-board version each fragment was sampled with.
    """

    fragments: list[dict[str, Any]]
    env_steps: int
    behaviour_versions: list[int] = field(default_factory=list)


class LearnerQueue:
    """Bounded FIFO between the sampling driver (producer) and the learner (consumer).

    Args:
        maxsize: batches it holds; a ``put`` on a full queue drops the oldest one.
    """

    def __init__(self, maxsize: int):
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: deque[QueuedBatch] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.dropped_batches = 0
        self.dropped_env_steps = 0

    def put(self, item: QueuedBatch) -> QueuedBatch | None:
        """Append ``item``; returns the batch dropped to make room, if any."""
        with self._cond:
            dropped = None
            if len(self._items) >= self.maxsize:
                dropped = self._items.popleft()
                self.dropped_batches += 1
                self.dropped_env_steps += dropped.env_steps
            self._items.append(item)
            self._cond.notify()
            return dropped

    def get(self, timeout: float | None = None) -> QueuedBatch | None:
        """The oldest batch; None after ``timeout`` seconds or once the queue is closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            return self._items.popleft() if self._items and not self._closed else None

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until a batch is queued (True) or ``timeout`` passed or it closed (False);
        takes nothing."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed, timeout)
            return bool(self._items) and not self._closed

    def get_nowait(self) -> QueuedBatch | None:
        with self._cond:
            return self._items.popleft() if self._items else None

    def clear(self) -> None:
        """Forget every queued batch (not counted as dropped)."""
        with self._cond:
            self._items.clear()

    def close(self) -> None:
        """Wake every waiting ``get`` (they return None); later gets return None."""
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def snapshot(self) -> list[QueuedBatch]:
        """The batches waiting, oldest first (for checkpoints; the queue is unchanged)."""
        with self._cond:
            return list(self._items)


class PolicyLag:
    """Policy lag bookkeeping, in learner updates.

    The learner's weights version is its number of completed updates. Every publish
    to the weights board records ``board version -> learner updates`` of the weights
    published; a batch sampled with board version ``b`` and trained on when the
    learner has done ``u`` updates has lag ``u - updates_at[b]``: the number of SGD
    steps between the behaviour policy and the policy being trained.

    Args:
        history: how many board versions to remember; older ones (which no batch in
            flight can still carry) map to the oldest remembered.
    """

    def __init__(self, history: int = 4096):
        self._lock = threading.Lock()
        self._updates_at: dict[int, int] = {0: 0}
        self._history = history

    def state(self) -> dict[str, int]:
        """``{board version: learner updates}`` for checkpoints (JSON-safe keys)."""
        with self._lock:
            return {str(v): u for v, u in self._updates_at.items()}

    def load_state(self, state: dict[str, int]) -> None:
        with self._lock:
            self._updates_at = {int(v): int(u) for v, u in state.items()} or {0: 0}

    def record_publish(self, version: int, learner_updates: int) -> None:
        """Board ``version`` now holds the weights after ``learner_updates`` updates."""
        with self._lock:
            self._updates_at[version] = learner_updates
            if len(self._updates_at) > self._history:
                # Versions are published in increasing order: drop the oldest ones.
                for old in sorted(self._updates_at)[: len(self._updates_at) - self._history]:
                    del self._updates_at[old]

    def updates_at(self, version: int) -> int:
        """Learner updates behind board ``version`` (the oldest remembered if unknown)."""
        with self._lock:
            known = self._updates_at.get(version)
            return self._updates_at[min(self._updates_at)] if known is None else known

    def lag(self, version: int, learner_updates: int) -> int:
        """Lag of a fragment sampled with board ``version`` trained at ``learner_updates``."""
        return max(0, learner_updates - self.updates_at(version))

    def observe(self, versions: list[int], learner_updates: int) -> list[int]:
        """The lags of a batch's fragments, one per fragment."""
        return [self.lag(v, learner_updates) for v in versions]


class MetricsWindow:
    """Learner metrics and time spent updating since the last pop; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._means = MetricMeans()
        self._busy_s = 0.0
        self._lags: list[int] = []
        self._since = time.perf_counter()

    def add(self, metrics: dict[str, float], seconds: float = 0.0,
            lags: list[int] | None = None) -> None:
        """One update's metrics, the wall time it took and its fragments' policy lags.

        Everything one update produced lands in the same window under one lock, so a
        pop never reports an update's losses without its lags or the other way round.
        """
        with self._lock:
            self._means.add(metrics)
            self._busy_s += seconds
            self._lags.extend(lags or ())

    def pop(self) -> dict[str, float]:
        """Means over the window's updates, plus ``updates``, ``updates_per_s``,
        ``busy_frac`` (share of the window's wall time the learner spent updating) and
        ``policy_lag_mean`` / ``policy_lag_max`` (nan when the window saw no update)."""
        with self._lock:
            n, busy, lags = self._means.count, self._busy_s, self._lags
            out = self._means.pop()
            now = time.perf_counter()
            elapsed, self._since = max(now - self._since, 1e-9), now
            self._busy_s, self._lags = 0.0, []
        out["policy_lag_mean"] = sum(lags) / len(lags) if lags else float("nan")
        out["policy_lag_max"] = float(max(lags)) if lags else float("nan")
        out["updates"] = float(n)
        out["updates_per_s"] = n / elapsed
        out["busy_frac"] = min(1.0, busy / elapsed)
        return out
