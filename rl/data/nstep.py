"""n-step accumulation: time-major fragments of one stream -> n-step transitions.

Data flow (DQN, driver process)::

    fragment [T, N, ...] --NStepAccumulator.add--> transitions [B, ...] --> replay buffer

Transitions are n-step from the start: ``rewards`` is the discounted sum over up to
n steps, ``discounts`` is ``gamma^k`` for the k steps actually taken and
``terminateds`` says whether the window ended in a terminal state, so the learner's
target is always ``rewards + discounts * (1 - terminateds) * Q(next_obs)``; with
``n = 1`` the accumulator simply flattens the fragment and adds ``discounts = gamma``.
The windows themselves come from ``rl.data.returns.nstep_returns``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np

from rl.data import columns as C
from rl.data.returns import NStepReturns, nstep_returns
from rl.data.sample_batch import SampleBatch

__all__ = ["NStepAccumulator"]

# Columns of a fragment that the n-step window rewrites; every other column is
# taken from the window's first step.
_WINDOW_COLUMNS = (C.REWARDS, C.TERMINATEDS, C.TRUNCATEDS, C.NEXT_OBS)


class NStepAccumulator:
    """Turn time-major fragments of one stream into n-step transitions at insert time.

    Windows never cross an episode end: they stop at a termination (no
    bootstrap) and at a truncation (bootstrap from the true final observation with
    ``gamma^k``). A window that runs into the end of a fragment is held back and
    completed by the next fragment, so every step becomes exactly one transition,
    whatever the fragment lengths. What is held back: a copy of the last ``n - 1``
    steps' columns per env, except ``next_obs``, of which only the last step is
    kept (a pending window always bootstraps from a later step).

    Use one accumulator per stream of consecutive fragments (one rollout worker's
    ``N`` envs). If the stream breaks (the worker was restarted, a fragment was
    dropped), call ``flush()`` before adding the next fragment, or the held-back
    windows would be joined to steps of unrelated episodes.

    Example:
        >>> acc = NStepAccumulator(n=3, gamma=0.99)
        >>> buffer.add(acc.add(fragment))  # doctest: +SKIP
    """

    def __init__(self, n: int, gamma: float):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.n = int(n)
        self.gamma = float(gamma)
        self._reset()

    def _reset(self) -> None:
        # Copies of the last rows of recent fragments, oldest first, each [t_j, N, ...]
        # without next_obs; copied once when kept, never re-copied while they age.
        self._chunks: list[dict[str, np.ndarray]] = []
        self._carry_done = np.zeros((0, 0), dtype=bool)  # [c, N]: start emitted or masked
        self._last_next_obs: np.ndarray | None = None  # [N, ...], for flush()
        self._keys: set[str] | None = None

    @property
    def num_pending(self) -> int:
        """Steps held back, waiting for the next fragment, over all envs."""
        return int((~self._carry_done).sum())

    def add(
        self, fragment: Mapping[str, np.ndarray], mask: np.ndarray | None = None
    ) -> SampleBatch:
        """Add a fragment; return the transitions whose windows are now complete.

        Args:
            fragment: time-major columns ``[T, N, ...]``. Required: ``rewards``
                (float), ``terminateds`` and ``truncateds`` (bool) and ``next_obs``:
                the observation after each step, the true final observation where
                the episode ended (gymnasium's ``final_obs`` in SAME_STEP autoreset
                mode). Every other column (``obs``, ``actions``, ...) is taken from
                the window's first step. What is kept is copied, so the arrays may
                be views of a buffer that is about to be overwritten.
            mask: bool ``[T, N]`` or None. False marks steps that are not
                transitions, such as the reset step that follows an episode end in
                NEXT_STEP autoreset mode: they start no window. (No window runs
                into them, as they follow an episode end.)

        Returns:
            A flat ``SampleBatch`` ``[B, ...]`` in time-major order of the start step:
            the start columns, plus ``rewards`` (float32 n-step discounted sum),
            ``next_obs`` (the bootstrap observation), ``terminateds`` (bool) and
            ``discounts`` (float32 ``gamma^k``). ``truncateds`` is consumed.
        """
        frag = {k: np.asarray(v) for k, v in fragment.items()}
        num_steps, num_envs = self._check(frag)
        skip = np.zeros((num_steps, num_envs), dtype=bool) if mask is None else ~np.asarray(mask)
        if skip.shape != (num_steps, num_envs):
            raise ValueError(f"mask has shape {skip.shape}, expected {(num_steps, num_envs)}")
        num_carried = len(self._carry_done)
        if num_carried:
            skip = np.concatenate([self._carry_done, skip])
        stream = _Stream([*self._chunks, frag])
        result = self._nstep(stream)
        emit = result.complete & ~skip
        steps, envs = np.nonzero(emit)  # time-major order
        # An emitted window ends in this fragment: a carried start was pending, so it
        # ran into the fragment; hence next_obs never comes from the carry.
        next_obs = frag[C.NEXT_OBS][result.next_index[steps, envs] - num_carried, envs]
        out = self._transitions(stream, result, steps, envs, next_obs)

        keep = min(self.n - 1, num_carried + num_steps)
        self._chunks = stream.tail(keep, exclude=C.NEXT_OBS)
        self._carry_done = (skip | emit)[len(skip) - keep :]
        if num_steps and not self._carry_done.all():  # flush() may need it
            self._last_next_obs = frag[C.NEXT_OBS][-1].copy()
        return out

    def flush(self) -> SampleBatch:
        """Emit the held-back windows as shorter transitions and forget the stream.

        Each bootstraps from the next observation of the last step seen, with
        ``gamma^k`` for its ``k < n`` steps: a correct, if shorter, target.
        """
        out = SampleBatch()
        steps, envs = np.nonzero(~self._carry_done)
        if self._chunks and len(steps):
            stream = _Stream(self._chunks)
            result = self._nstep(stream)
            # Pending windows reached the last step seen without closing.
            out = self._transitions(stream, result, steps, envs, self._last_next_obs[envs])
        self._reset()
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        """The held-back windows as flat arrays (for checkpoints; no pickle needed)."""
        state = {"carry_done": self._carry_done.copy()}
        if self._keys is not None:
            state["keys"] = np.array(sorted(self._keys))
        if self._last_next_obs is not None:
            state["last_next_obs"] = self._last_next_obs.copy()
        for j, chunk in enumerate(self._chunks):
            for key, value in chunk.items():
                state[f"chunk{j}/{key}"] = value
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what ``state_dict`` returned: the next ``add`` continues the stream."""
        self._reset()
        self._carry_done = np.asarray(state["carry_done"], dtype=bool).copy()
        if "keys" in state:
            self._keys = {str(k) for k in state["keys"]}
        if "last_next_obs" in state:
            self._last_next_obs = np.array(state["last_next_obs"])
        chunks: dict[int, dict[str, np.ndarray]] = {}
        for name, value in state.items():
            if name.startswith("chunk"):
                index, key = name[len("chunk"):].split("/", 1)
                chunks.setdefault(int(index), {})[key] = np.array(value)
        self._chunks = [chunks[j] for j in sorted(chunks)]

    def _check(self, frag: Mapping[str, np.ndarray]) -> tuple[int, int]:
        missing = [k for k in _WINDOW_COLUMNS if k not in frag]
        if missing:
            raise KeyError(f"fragment lacks columns {missing}; it has {sorted(frag)}")
        num_steps, num_envs = frag[C.REWARDS].shape[:2]
        for key, value in frag.items():
            if value.shape[:2] != (num_steps, num_envs):
                raise ValueError(
                    f"column {key!r} has shape {value.shape}, expected [T, N] = "
                    f"{(num_steps, num_envs)} leading dims like rewards"
                )
        if self._keys is None:
            self._keys = set(frag)
        elif self._keys != set(frag):
            raise ValueError(
                f"fragment columns {sorted(frag)} differ from the stream's {sorted(self._keys)}"
            )
        if self._carry_done.size and self._carry_done.shape[1] != num_envs:
            raise ValueError(
                f"fragment has {num_envs} envs, the stream had "
                f"{self._carry_done.shape[1]}; flush() between streams"
            )
        return num_steps, num_envs

    def _nstep(self, stream: _Stream) -> NStepReturns:
        return nstep_returns(
            rewards=stream.rows(C.REWARDS),
            terminateds=stream.rows(C.TERMINATEDS),
            truncateds=stream.rows(C.TRUNCATEDS),
            gamma=self.gamma,
            n=self.n,
        )

    def _transitions(
        self,
        stream: _Stream,
        result: NStepReturns,
        steps: np.ndarray,
        envs: np.ndarray,
        next_obs: np.ndarray,
    ) -> SampleBatch:
        out = {k: stream.gather(k, steps, envs) for k in stream.keys if k not in _WINDOW_COLUMNS}
        out[C.REWARDS] = result.returns[steps, envs]
        out[C.NEXT_OBS] = next_obs
        out[C.TERMINATEDS] = result.terminateds[steps, envs]
        out[C.DISCOUNTS] = result.discounts[steps, envs]
        return SampleBatch(out)


class _Stream:
    """Consecutive chunks ``[t_j, N, ...]`` read as one, without concatenating big columns."""

    def __init__(self, chunks: list[Mapping[str, np.ndarray]]):
        self.chunks = chunks
        self.keys = list(chunks[-1])
        self.offsets = [0, *itertools.accumulate(len(c[C.REWARDS]) for c in chunks)]

    def rows(self, key: str) -> np.ndarray:
        """All rows ``[sum t_j, N]`` of a (small, scalar) column."""
        if len(self.chunks) == 1:
            return self.chunks[0][key]
        return np.concatenate([c[key] for c in self.chunks])

    def gather(self, key: str, steps: np.ndarray, envs: np.ndarray) -> np.ndarray:
        """Rows ``(steps[i], envs[i])`` of the stream, ``[B, ...]``; ``steps`` sorted."""
        if len(self.chunks) == 1:
            return self.chunks[0][key][steps, envs]
        # Sorted steps fall into each chunk as one contiguous run: slices, no masks.
        bounds = np.searchsorted(steps, self.offsets).tolist()
        pieces = [
            chunk[key][steps[lo:hi] - offset, envs[lo:hi]]
            for chunk, offset, lo, hi in zip(self.chunks, self.offsets, bounds, bounds[1:])
            if hi > lo
        ]
        if len(pieces) == 1:
            return pieces[0]
        last = self.chunks[-1][key]
        if not pieces:
            return np.empty((0,) + last.shape[2:], dtype=last.dtype)
        return np.concatenate(pieces)

    def tail(self, count: int, exclude: str) -> list[dict[str, np.ndarray]]:
        """The last ``count`` rows as chunks; rows of the newest chunk are copied."""
        kept: list[dict[str, np.ndarray]] = []
        for j in range(len(self.chunks) - 1, -1, -1):
            if count == 0:
                break
            chunk = self.chunks[j]
            size = int(self.offsets[j + 1] - self.offsets[j])
            take = min(count, size)
            if take == 0:
                continue
            newest = j == len(self.chunks) - 1
            # The newest chunk is the caller's fragment: copy; older ones are our copies.
            kept.insert(
                0,
                {
                    k: v[size - take :].copy() if newest else v[size - take :]
                    for k, v in chunk.items()
                    if k != exclude
                },
            )
            count -= take
        return kept
