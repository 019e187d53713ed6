"""Replay: uniform and prioritised ring buffers, all numpy.

Data flow (DQN, driver process)::

    transitions [B, ...] (from rl.data.nstep.NStepAccumulator)
        --buffer.add--> ring columns [capacity, ...]
        --buffer.sample(batch_size, rng)--> SampleBatch [batch_size, ...] --> learner
        --buffer.update_priorities(batch_indexes, td_errors)  (prioritised only)

Buffers allocate their columns on the first ``add`` from that batch's dtypes and
trailing shapes, and write and sample with whole-array numpy operations: an insert
is at most two slice copies per column, never a Python loop over rows.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from rl.data import columns as C
from rl.data.sample_batch import SampleBatch
from rl.data.sum_tree import SumTree

__all__ = ["PrioritizedReplayBuffer", "ReplayBuffer"]


class ReplayBuffer:
    """Uniform replay: a ring of ``capacity`` rows per column, oldest rows overwritten.

    Args:
        capacity: the largest number of transitions held.

    Example:
        >>> buf = ReplayBuffer(1000)
        >>> buf.add({"obs": np.zeros((16, 4), np.float32), "rewards": np.ones(16, np.float32)})
        >>> batch = buf.sample(8, np.random.default_rng(0))
        >>> batch["obs"].shape, len(buf)
        ((8, 4), 16)
    """

    #: Columns ``sample`` adds; a batch may not bring its own.
    RESERVED = (C.BATCH_INDEXES, C.WEIGHTS)

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._columns: dict[str, np.ndarray] = {}
        self._pos = 0  # next row to write
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    def add(self, batch: Mapping[str, np.ndarray]) -> None:
        """Append ``B`` rows; beyond capacity the oldest rows are overwritten.

        Args:
            batch: a ``SampleBatch`` or dict of arrays ``[B, ...]``. The first batch
                fixes the columns, their dtypes and trailing shapes; later batches
                must have the same columns and shapes (values are cast to the stored
                dtype only where numpy's ``same_kind`` rule allows).
        """
        self._write(batch)

    def sample(self, batch_size: int, rng: np.random.Generator) -> SampleBatch:
        """Draw ``batch_size`` rows uniformly with replacement.

        Returns:
            The stored columns ``[batch_size, ...]``, plus ``batch_indexes`` (int64,
            the rows drawn) and ``weights`` (float32 ones, so a loss can always
            weight by it).
        """
        self._check_nonempty()
        indexes = rng.integers(0, self._size, size=batch_size)
        out = self._gather(indexes)
        out[C.WEIGHTS] = np.ones(batch_size, dtype=np.float32)
        return out

    def state_dict(self) -> dict[str, np.ndarray | int | float]:
        """The buffer's contents as numpy arrays and plain numbers (no pickle needed).

        Keys: ``capacity``, ``pos``, ``size`` and ``column/<name>`` (the ``size``
        filled rows). The arrays are views of the buffer: save them before the next
        ``add``.
        """
        state: dict[str, np.ndarray | int | float] = {
            "capacity": self.capacity,
            "pos": self._pos,
            "size": self._size,
        }
        for key, column in self._columns.items():
            state[f"column/{key}"] = column[: self._size]
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray | int | float]) -> None:
        """Restore from ``state_dict()``; torch tensors are accepted in place of arrays."""
        capacity, pos, size = (int(state[k]) for k in ("capacity", "pos", "size"))
        if capacity != self.capacity:
            raise ValueError(f"state has capacity {capacity}, this buffer {self.capacity}")
        if not (0 <= size <= capacity and 0 <= pos < capacity):
            raise ValueError(f"invalid ring state: pos {pos}, size {size}, capacity {capacity}")
        self._columns = {}
        for key, value in state.items():
            if not key.startswith("column/"):
                continue
            value = np.asarray(value)
            if len(value) != size:
                raise ValueError(f"column {key!r} has {len(value)} rows, size is {size}")
            column = np.zeros((capacity,) + value.shape[1:], dtype=value.dtype)
            column[:size] = value
            self._columns[key.removeprefix("column/")] = column
        self._pos, self._size = pos, size

    def _write(self, batch: Mapping[str, np.ndarray]) -> list[tuple[int, int]]:
        """Write the batch into the ring; return the ``(start, stop)`` row runs written."""
        arrays = {k: np.asarray(v) for k, v in batch.items()}
        lengths = {len(v) for v in arrays.values()}
        if len(lengths) != 1:
            raise ValueError(f"columns of the batch have different lengths: {lengths}")
        (count,) = lengths
        if not self._columns:
            self._allocate(arrays)
        self._check_columns(arrays)
        if count > self.capacity:
            # Only the newest rows would survive; land them where row-by-row adds would.
            self._pos = (self._pos + count - self.capacity) % self.capacity
            arrays = {k: v[count - self.capacity :] for k, v in arrays.items()}
            count = self.capacity
        first = min(count, self.capacity - self._pos)
        runs = [(self._pos, self._pos + first)]
        if count > first:
            runs.append((0, count - first))
        for key, value in arrays.items():
            column = self._columns[key]
            column[self._pos : self._pos + first] = value[:first]
            if count > first:
                column[: count - first] = value[first:]
        self._pos = (self._pos + count) % self.capacity
        self._size = min(self._size + count, self.capacity)
        return runs

    def _allocate(self, arrays: Mapping[str, np.ndarray]) -> None:
        reserved = [k for k in arrays if k in self.RESERVED]
        if reserved:
            raise ValueError(f"columns {reserved} are reserved for sampled batches")
        if not arrays:
            raise ValueError("cannot add a batch without columns")
        # np.zeros maps pages lazily: an unfilled 1M-row Atari buffer costs no memory yet.
        self._columns = {
            k: np.zeros((self.capacity,) + v.shape[1:], dtype=v.dtype) for k, v in arrays.items()
        }

    def _check_columns(self, arrays: Mapping[str, np.ndarray]) -> None:
        if arrays.keys() != self._columns.keys():
            raise ValueError(f"batch columns {sorted(arrays)} differ from {sorted(self._columns)}")
        for key, value in arrays.items():
            column = self._columns[key]
            if value.shape[1:] != column.shape[1:]:
                raise ValueError(
                    f"column {key!r}: rows of shape {value.shape[1:]}, buffer holds "
                    f"{column.shape[1:]}"
                )
            if value.dtype != column.dtype and not np.can_cast(
                value.dtype, column.dtype, casting="same_kind"
            ):
                raise TypeError(f"column {key!r}: cannot store {value.dtype} as {column.dtype}")

    def _gather(self, indexes: np.ndarray) -> SampleBatch:
        out = SampleBatch({k: v[indexes] for k, v in self._columns.items()})
        out[C.BATCH_INDEXES] = indexes
        return out

    def _check_nonempty(self) -> None:
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer")


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritised replay (Schaul et al. 2016, arXiv:1511.05952).

    Row ``i`` is drawn with probability ``P(i) = p_i^alpha / sum_j p_j^alpha`` where
    ``p_i = |td_i| + eps``; new rows get the largest priority seen so far, so each is
    replayed at least about once before its TD error is known. Sampling corrects
    the bias with importance weights ``(size * P(i))^-beta``, normalised by their
    maximum over the sampled batch so they only ever scale updates down.

    Args:
        capacity: the largest number of transitions held.
        alpha: how strongly priorities skew sampling (0 = uniform).
        beta: default importance-weight exponent (annealed to 1 by the caller,
            through ``sample(..., beta=)`` or by setting ``self.beta``).
        eps: added to ``|td|`` so that no row becomes unsampleable.
    """

    def __init__(self, capacity: int, *, alpha: float = 0.6, beta: float = 0.4, eps: float = 1e-6):
        super().__init__(capacity)
        if alpha < 0 or beta < 0 or eps <= 0:
            raise ValueError(f"need alpha >= 0, beta >= 0, eps > 0; got {alpha}, {beta}, {eps}")
        self.alpha, self.beta, self.eps = float(alpha), float(beta), float(eps)
        self._tree = SumTree(self.capacity)
        self._max_priority = 1.0  # in |td| + eps units, before ** alpha

    def add(self, batch: Mapping[str, np.ndarray]) -> None:
        """Append rows (see ``ReplayBuffer.add``) with the largest priority seen so far."""
        leaf = self._max_priority**self.alpha
        for start, stop in self._write(batch):
            self._tree.set_range(start, np.full(stop - start, leaf))

    def sample(
        self, batch_size: int, rng: np.random.Generator, beta: float | None = None
    ) -> SampleBatch:
        """Draw ``batch_size`` rows with probability ``P(i)`` (stratified by mass).

        Args:
            batch_size: rows to draw.
            rng: the random generator.
            beta: importance-weight exponent; ``self.beta`` when None.

        Returns:
            The stored columns ``[batch_size, ...]``, plus ``batch_indexes`` (int64,
            pass them to ``update_priorities``) and ``weights`` (float32 importance
            weights, max 1).
        """
        self._check_nonempty()
        beta = self.beta if beta is None else beta
        indexes = self._tree.sample_stratified(batch_size, rng)
        probs = self._tree.get(indexes) / self._tree.total
        weights = (self._size * probs) ** -beta
        out = self._gather(indexes)
        out[C.WEIGHTS] = (weights / weights.max()).astype(np.float32)
        return out

    def update_priorities(self, indexes: np.ndarray, td_errors: np.ndarray) -> None:
        """Set the priorities of sampled rows to ``(|td_errors| + eps) ** alpha``.

        Args:
            indexes: int ``[B]``, the ``batch_indexes`` of a sampled batch (repeats:
                the last one wins). A row overwritten by an ``add`` since it was
                sampled takes the priority meant for its predecessor; update before
                the next ``add`` to avoid that.
            td_errors: float ``[B]``, their new TD errors (numpy, or a CPU tensor).
        """
        indexes = np.asarray(indexes, dtype=np.int64)
        priorities = np.abs(np.asarray(td_errors, dtype=np.float64)) + self.eps
        if indexes.shape != priorities.shape:
            raise ValueError(f"{indexes.shape} indexes but {priorities.shape} td_errors")
        if indexes.size and (indexes.min() < 0 or indexes.max() >= self._size):
            raise IndexError(f"indexes must lie in [0, {self._size}), the filled rows")
        if not np.isfinite(priorities).all():
            raise ValueError("td_errors must be finite (a NaN would poison the sum tree)")
        if priorities.size:
            self._tree.set(indexes, priorities**self.alpha)
            self._max_priority = max(self._max_priority, float(priorities.max()))

    def state_dict(self) -> dict[str, np.ndarray | int | float]:
        """``ReplayBuffer.state_dict()`` plus ``priorities`` (float64 ``[size]``, the
        leaves ``p^alpha``) and ``max_priority``."""
        state = super().state_dict()
        state["priorities"] = self._tree.leaves[: self._size].copy()  # leaves are read-only
        state["max_priority"] = self._max_priority
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray | int | float]) -> None:
        super().load_state_dict(state)
        priorities = np.asarray(state["priorities"], dtype=np.float64)
        if len(priorities) != self._size:
            raise ValueError(f"{len(priorities)} priorities for {self._size} rows")
        self._tree = SumTree(self.capacity)
        self._tree.set_range(0, priorities)
        self._max_priority = float(state["max_priority"])
