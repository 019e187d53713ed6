"""SampleBatch: a columnar batch of equal-length numpy arrays.

One representation of experience: a dict of numpy columns (names in
``rl.data.columns``) that share their first dimension. Time-major fragments
``[T, N, ...]`` are flattened once with ``flatten_time`` before SGD.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

__all__ = ["SampleBatch", "minibatches"]

Column = TypeVar("Column")


class SampleBatch(dict):
    """A dict of numpy columns with the same length along axis 0.

    Examples:
        >>> b = SampleBatch(obs=np.zeros((4, 3)), rewards=np.ones(4))
        >>> len(b), b[1:3]["rewards"].tolist()
        (4, [1.0, 1.0])
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for key, value in self.items():
            if not isinstance(value, np.ndarray):
                super().__setitem__(key, np.asarray(value))
        self._check_lengths()

    def _check_lengths(self) -> None:
        lengths = {k: v.shape[0] if v.ndim else None for k, v in self.items()}
        distinct = set(lengths.values())
        if len(distinct) > 1 or None in distinct:
            raise ValueError(f"SampleBatch columns must share their first dimension, got {lengths}")

    def __setitem__(self, key: str, value: Any) -> None:
        value = np.asarray(value)
        others = [v for k, v in self.items() if k != key]
        if others and (value.ndim == 0 or value.shape[0] != others[0].shape[0]):
            raise ValueError(
                f"column {key!r} has shape {value.shape}, the batch has {others[0].shape[0]} rows"
            )
        super().__setitem__(key, value)

    def __len__(self) -> int:  # type: ignore[override]  # length is rows, not columns
        for value in self.values():
            return int(value.shape[0])
        return 0

    @property
    def count(self) -> int:
        """Number of rows."""
        return len(self)

    @property
    def columns(self) -> list[str]:
        return list(self.keys())

    def __getitem__(self, key):  # type: ignore[override]  # str -> column, slice/array -> rows
        if isinstance(key, str):
            return super().__getitem__(key)
        return SampleBatch({k: v[key] for k, v in self.items()})

    def slice(self, start: int, end: int) -> SampleBatch:
        return SampleBatch({k: v[start:end] for k, v in self.items()})

    def copy(self) -> SampleBatch:  # type: ignore[override]
        return SampleBatch({k: v.copy() for k, v in self.items()})

    @staticmethod
    def concat(batches: Sequence[Mapping[str, np.ndarray]]) -> SampleBatch:
        """Concatenate batches with the same columns along axis 0."""
        if not batches:
            return SampleBatch()
        keys = list(batches[0].keys())
        for b in batches[1:]:
            if set(b.keys()) != set(keys):
                raise ValueError(f"cannot concat batches with columns {keys} and {list(b.keys())}")
        return SampleBatch({k: np.concatenate([b[k] for b in batches], axis=0) for k in keys})

    def flatten_time(self) -> SampleBatch:
        """``[T, N, ...]`` columns to ``[T * N, ...]`` (time-major order kept)."""
        return SampleBatch({k: v.reshape((-1,) + v.shape[2:]) for k, v in self.items()})

    def to_torch(self, device: Any = "cpu", keys: Sequence[str] | None = None) -> dict[str, Any]:
        """Columns as torch tensors on ``device`` (zero-copy on CPU where possible)."""
        import torch

        out = {}
        for k in keys if keys is not None else self.keys():
            v = self[k]
            if v.dtype == np.bool_:
                v = v.astype(np.float32)
            t = torch.from_numpy(np.ascontiguousarray(v))
            out[k] = t.to(device, non_blocking=True) if str(device) != "cpu" else t
        return out

    def __repr__(self) -> str:
        cols = ", ".join(f"{k}: {v.dtype}{list(v.shape)}" for k, v in self.items())
        return f"SampleBatch(count={len(self)}, {cols})"


def minibatches(columns: Mapping[str, Column], order: Any, size: int) -> Iterator[dict[str, Column]]:
    """Minibatches over the rows of ``columns`` in the given ``order``.

    Args:
        columns: equal-length numpy arrays or torch tensors (a ``SampleBatch`` or the
            dict of tensors from ``SampleBatch.to_torch``).
        order: a permutation of the row indices (numpy array or tensor); minibatch ``j``
            is rows ``order[j * size : (j + 1) * size]``, the last one possibly shorter.
        size: rows per minibatch.

    Yields:
        ``{column: rows}`` for each minibatch, in order.
    """
    for start in range(0, len(order), size):
        idx = order[start : start + size]
        yield {k: v[idx] for k, v in columns.items()}
