"""Sequences for recurrent learners: time-major fragments ``[T, N]`` -> padded ``[S, L]``.

A recurrent learner trains on whole sequences of at most ``L = max_seq_len`` steps that
never cross an episode boundary. In each sub-env's column of a fragment a sequence
starts at row 0, at every row ``t`` with ``t % L == 0`` and at every episode start (the
row after a terminated or truncated step), and runs to the next start. The rollout
worker recorded the model state at the rows ``0, L, 2L, ...`` (``state_in_<k>``
columns ``[ceil(T / L), N, ...]``); a sequence that starts at an episode start begins
from the model's initial state. That is exactly the state the worker acted from, so
the learner's first-epoch log-probabilities equal the behaviour ones.

Padding rows are zeros and ``seq_mask`` is 0 there (and on rows a sub-env error
discarded): every loss term and statistic of the learner is a mean over the rows
where it is 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rl.data import columns as C
from rl.data.sample_batch import SampleBatch

__all__ = ["sequence_layout", "to_sequences"]


def sequence_layout(*, terminateds: np.ndarray, truncateds: np.ndarray,
                    max_seq_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sequences of a fragment.

    Args:
        terminateds: bool ``[T, N]``.
        truncateds: bool ``[T, N]``.
        max_seq_len: L, the longest sequence.

    Returns:
        ``(env, start, length)``, int64 ``[S]`` each, ordered by sub-env then time.
    """
    T, N = terminateds.shape
    starts = np.zeros((T, N), np.bool_)
    starts[::max_seq_len] = True
    starts[1:] |= (terminateds | truncateds)[:-1]
    env_idx, start_idx = np.nonzero(starts.T)  # sub-env-major order
    ends = np.empty_like(start_idx)
    ends[:-1] = start_idx[1:]
    # The last sequence of each sub-env (and so of the fragment) ends at row T.
    last = np.ones(len(start_idx), np.bool_)
    last[:-1] = env_idx[1:] != env_idx[:-1]
    ends[last] = T
    return env_idx.astype(np.int64), start_idx.astype(np.int64), (ends - start_idx).astype(np.int64)


def to_sequences(columns: Mapping[str, np.ndarray], state: Sequence[np.ndarray],
                 initial_state: Sequence[np.ndarray], *, terminateds: np.ndarray,
                 truncateds: np.ndarray, max_seq_len: int,
                 discarded: np.ndarray | None = None, pad_to_multiple: int = 1) -> SampleBatch:
    """Cut a fragment's per-step columns into padded sequences with their start states.

    Args:
        columns: name -> ``[T, N, ...]`` per-step arrays.
        state: the recorded state tensors ``[ceil(T / L), N, ...]`` (``state_in_<k>``).
        initial_state: the model's initial state, one array ``[...]`` per tensor.
        terminateds: bool ``[T, N]``.
        truncateds: bool ``[T, N]``.
        max_seq_len: L.
        discarded: bool ``[T, N]`` rows to mask out (broken episodes), or None.
        pad_to_multiple: add empty (all-masked) sequences until S is a multiple of this
            (learners shard sequences equally).

    Returns:
        A batch of ``S`` rows: every column ``[S, L, ...]``, ``state_in_<k>`` ``[S, ...]``
        and ``seq_mask`` float32 ``[S, L]``.
    """
    L = max_seq_len
    env, start, length = sequence_layout(terminateds=terminateds, truncateds=truncateds,
                                         max_seq_len=L)
    T = terminateds.shape[0]
    offsets = np.arange(L)
    valid = offsets[None, :] < length[:, None]
    rows = np.minimum(start[:, None] + offsets[None, :], T - 1)
    envs = np.broadcast_to(env[:, None], rows.shape)
    out: dict[str, np.ndarray] = {}
    for name, col in columns.items():
        seq = col[rows, envs]
        seq[~valid] = 0
        out[name] = seq
    mask = valid.astype(np.float32)
    if discarded is not None:
        mask[discarded[rows, envs]] = 0.0
    out[C.SEQ_MASK] = mask
    recorded = start % L == 0
    for k, (saved, init) in enumerate(zip(state, initial_state)):
        s = np.broadcast_to(init, (len(start), *init.shape)).astype(np.float32)
        s[recorded] = saved[start[recorded] // L, env[recorded]]
        out[C.state_column(k)] = s
    extra = -len(start) % pad_to_multiple
    if extra:
        out = {k: np.concatenate([v, np.zeros((extra, *v.shape[1:]), v.dtype)])
               for k, v in out.items()}
    return SampleBatch(out)
