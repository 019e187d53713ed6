"""Running observation normalisation: mean/variance statistics that merge across workers.

Workers normalise with the frozen statistics the driver broadcast with the weights,
and collect the raw observations they saw into a local delta; the driver merges the
deltas (Chan et al.'s parallel variance update) into the global statistics, which are
saved in checkpoints. Reset observations are counted once, when they are first seen.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RewardScaler", "RunningMeanStd"]


class RunningMeanStd:
    """Streaming mean and variance of arrays with a fixed trailing shape.

    Attributes:
        mean, var: float64 arrays of ``shape``.
        count: number of samples folded in (float, starts at 0).
    """

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0, eps: float = 1e-8):
        self.shape = tuple(shape)
        self.clip = float(clip)
        self.eps = float(eps)
        self.mean = np.zeros(self.shape, np.float64)
        self.var = np.ones(self.shape, np.float64)
        self.count = 0.0

    def update(self, x: np.ndarray) -> None:
        """Fold in a batch ``[B, *shape]``."""
        x = np.asarray(x, np.float64).reshape((-1,) + self.shape)
        if len(x) == 0:
            return
        self.merge(x.mean(axis=0), x.var(axis=0), float(len(x)))

    def merge(self, mean: np.ndarray, var: np.ndarray, count: float) -> None:
        """Fold in the statistics of another sample set."""
        if count <= 0:
            return
        total = self.count + count
        delta = mean - self.mean
        new_mean = self.mean + delta * (count / total)
        m2 = self.var * self.count + var * count + delta**2 * (self.count * count / total)
        self.mean, self.var, self.count = new_mean, m2 / total, total

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """``clip((x - mean) / sqrt(var + eps), -clip, clip)`` as float32."""
        out = (x - self.mean) / np.sqrt(self.var + self.eps)
        return np.clip(out, -self.clip, self.clip).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": np.array(self.count)}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.mean = np.asarray(state["mean"], np.float64).reshape(self.shape).copy()
        self.var = np.asarray(state["var"], np.float64).reshape(self.shape).copy()
        self.count = float(np.asarray(state["count"]))

    def to_vector(self) -> np.ndarray:
        """``[mean, var, count]`` flattened, for the weights board."""
        return np.concatenate([self.mean.ravel(), self.var.ravel(), [self.count]]).astype(np.float32)

    def load_vector(self, vec: np.ndarray) -> None:
        n = int(np.prod(self.shape)) if self.shape else 1
        self.mean = vec[:n].astype(np.float64).reshape(self.shape)
        self.var = vec[n : 2 * n].astype(np.float64).reshape(self.shape)
        self.count = float(vec[2 * n])

    @staticmethod
    def vector_size(shape: tuple[int, ...]) -> int:
        return 2 * int(np.prod(shape)) + 1


class RewardScaler:
    """Scales rewards by the running std of the discounted return (no mean shift).

    Keeps one discounted return per (worker, sub-env) stream across fragments, as
    ``return = gamma * return * (1 - done_prev) + reward``, folds those returns into
    a ``RunningMeanStd``, and divides rewards by its std (clipped to ``±clip``).
    Used by PPO for continuous control (Engstrom et al. 2020, "reward scaling").
    """

    def __init__(self, gamma: float, clip: float = 10.0, eps: float = 1e-8):
        self.gamma = float(gamma)
        self.clip = float(clip)
        self.eps = float(eps)
        self.stats = RunningMeanStd(())
        self.returns: dict[int, np.ndarray] = {}

    def __call__(self, stream: int, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """Scale a time-major ``[T, N]`` reward fragment of stream ``stream``."""
        ret = self.returns.get(stream)
        if ret is None or ret.shape != rewards.shape[1:]:
            ret = np.zeros(rewards.shape[1:], np.float64)
        seen = np.empty(rewards.shape, np.float64)
        for t in range(len(rewards)):
            ret = ret * self.gamma + rewards[t]
            seen[t] = ret
            ret = np.where(dones[t], 0.0, ret)
        self.returns[stream] = ret
        self.stats.update(seen.reshape(-1))
        scaled = rewards / np.sqrt(self.stats.var + self.eps)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def reset_stream(self, stream: int) -> None:
        self.returns.pop(stream, None)

    def state(self) -> dict[str, np.ndarray]:
        """The return statistics and each stream's running discounted return."""
        out = {f"stats_{k}": v for k, v in self.stats.state().items()}
        out.update({f"return_{stream}": ret.copy() for stream, ret in self.returns.items()})
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.stats.load_state({k[len("stats_"):]: v for k, v in state.items()
                               if k.startswith("stats_")})
        self.returns = {int(k[len("return_"):]): np.array(v, np.float64)
                        for k, v in state.items() if k.startswith("return_")}
