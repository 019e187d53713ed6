"""SumTree: an array-based binary sum tree for prioritised replay, vectorised.

Owns the priority arithmetic of ``PrioritizedReplayBuffer``: setting many leaves at
once and sampling many leaves by prefix sum at once, each in ``O(B log capacity)``
numpy operations (one per tree level), never a Python loop over the batch.

Layout: ``P`` = the smallest power of two ``>= capacity``; node 1 is the root,
node ``j`` has children ``2j`` and ``2j + 1``, leaves are nodes ``P .. P + capacity - 1``
(the padding leaves stay 0). Parents are always recomputed as the sum of their
two children, never patched by adding deltas, so float64 rounding cannot drift
the root away from the sum of the leaves over millions of updates.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SumTree"]


class SumTree:
    """Sum tree over ``capacity`` non-negative float64 leaves.

    Example:
        >>> tree = SumTree(4)
        >>> tree.set(np.array([0, 1, 2, 3]), np.array([1.0, 2.0, 3.0, 4.0]))
        >>> tree.total, tree.find_prefix_sum(np.array([0.5, 1.0, 5.9, 9.99])).tolist()
        (10.0, [0, 1, 2, 3])
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._depth = (self.capacity - 1).bit_length()
        self._first_leaf = 1 << self._depth
        self._tree = np.zeros(2 * self._first_leaf, dtype=np.float64)

    @property
    def total(self) -> float:
        """Sum of all leaves (the root)."""
        return float(self._tree[1])

    @property
    def leaves(self) -> np.ndarray:
        """Read-only view of the leaf values, float64 ``[capacity]``."""
        view = self._tree[self._first_leaf : self._first_leaf + self.capacity]
        view.flags.writeable = False
        return view

    def get(self, indexes: np.ndarray) -> np.ndarray:
        """Leaf values at ``indexes`` (int ``[B]``), float64 ``[B]``."""
        return self._tree[self._first_leaf + np.asarray(indexes)]

    def set(self, indexes: np.ndarray, values: np.ndarray) -> None:
        """Set leaves ``indexes`` (int ``[B]``, any order, repeats: last wins) to ``values`` ``[B]``."""
        indexes = np.asarray(indexes, dtype=np.int64)
        values = np.broadcast_to(np.asarray(values, dtype=np.float64), indexes.shape)
        if indexes.size == 0:
            return
        if indexes.min() < 0 or indexes.max() >= self.capacity:
            raise IndexError(f"leaf indexes must lie in [0, {self.capacity})")
        self._check_values(values)
        nodes = indexes + self._first_leaf
        self._tree[nodes] = values
        for _ in range(self._depth):
            # Repeated parents get the same value written twice: harmless, cheaper than unique.
            nodes = nodes >> 1
            self._tree[nodes] = self._tree[2 * nodes] + self._tree[2 * nodes + 1]

    def set_range(self, start: int, values: np.ndarray) -> None:
        """Set the contiguous leaves ``start .. start + len(values) - 1``.

        The ring buffer writes contiguous runs; their ancestors are contiguous at
        every level too, so slices replace fancy indexing (several times faster).
        """
        values = np.asarray(values, dtype=np.float64)
        if start < 0 or start + len(values) > self.capacity:
            raise IndexError(
                f"leaves {start}..{start + len(values) - 1} outside [0, {self.capacity})"
            )
        if len(values) == 0:
            return
        self._check_values(values)
        lo = self._first_leaf + start
        hi = lo + len(values)
        tree = self._tree
        tree[lo:hi] = values
        while lo > 1:
            lo, hi = lo >> 1, ((hi - 1) >> 1) + 1
            if hi - lo > 4:
                tree[lo:hi] = tree[2 * lo : 2 * hi : 2] + tree[2 * lo + 1 : 2 * hi : 2]
            else:  # near the root the run is a node or two: scalars beat slice setup 3x
                for j in range(lo, hi):
                    tree[j] = tree[2 * j] + tree[2 * j + 1]

    def find_prefix_sum(self, targets: np.ndarray) -> np.ndarray:
        """Leaf ``i`` with ``sum(leaves[:i]) <= target < sum(leaves[:i + 1])``, per target.

        A descent from the root for all targets at once. A zero leaf is never
        returned (unless all are zero): a target at or beyond the total (float
        rounding) lands on the last positive leaf, not on a padding or empty one.

        Args:
            targets: float ``[B]`` in ``[0, total)``.

        Returns:
            int64 ``[B]`` leaf indexes.
        """
        targets = np.asarray(targets, dtype=np.float64)
        nodes = self._descend(targets, avoid_empty=False)
        # Rounding can send a target at a boundary into an empty subtree; redo those few
        # with the slower descent that checks the right subtree too.
        empty = self._tree.take(nodes) <= 0.0
        if empty.any():
            nodes[empty] = self._descend(targets[empty], avoid_empty=True)
        return nodes - self._first_leaf

    def _descend(self, targets: np.ndarray, avoid_empty: bool) -> np.ndarray:
        tree = self._tree
        mass = targets.copy()  # consumed on the way down
        nodes = np.ones(mass.shape, dtype=np.int64)
        for _ in range(self._depth):
            nodes *= 2  # the left child
            left_sum = tree.take(nodes)
            go_right = mass >= left_sum
            if avoid_empty:
                go_right &= tree.take(nodes + 1) > 0.0
            mass -= left_sum * go_right
            nodes += go_right
        return nodes

    def sample_stratified(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``batch_size`` leaves with probability ``leaf / total``, stratified.

        The mass ``[0, total)`` is cut into ``batch_size`` equal segments and one
        uniform point is drawn in each (Schaul et al. 2016, appendix B.2.1): the
        marginal of each draw is still ``leaf / total``, with less variance across
        the batch than independent draws.

        Returns:
            int64 ``[batch_size]`` leaf indexes.
        """
        total = self.total
        if not total > 0.0:
            raise ValueError(f"cannot sample from a sum tree with total {total}")
        segment = total / batch_size
        targets = (np.arange(batch_size) + rng.random(batch_size)) * segment
        return self.find_prefix_sum(targets)

    @staticmethod
    def _check_values(values: np.ndarray) -> None:
        # One reduction for both: NaN and -inf fail ">= 0", +inf fails "< inf". A NaN
        # leaf would poison the root and every sample after it.
        if not (values.min() >= 0.0 and values.max() < np.inf):
            raise ValueError("sum tree values must be finite and >= 0")
