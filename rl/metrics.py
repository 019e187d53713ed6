"""Result keys, the episode-statistics window, timers, and the run's writers.

Result dicts are flat with slash-separated keys under fixed prefixes
(``learner/``, ``timers/``, ``eval/``, ``workers/``, ``env/``). ``RunLogger`` writes
``params.json`` once, one JSON line per iteration to ``result.jsonl``, TensorBoard
scalars for every numeric key plus the resolved hyper-parameters as text, and
console progress (``Progress``: a live bar on a TTY, one line per iteration otherwise).

An evaluation outside an iteration (the final one of ``rl train``, or a user's
``algo.evaluate()``) is one more ``result.jsonl`` row with the iteration's counters
(``training_iteration``, ``env_steps_total``, ``time_total_s``) and the ``eval/`` keys
only, and TensorBoard scalars at that env step; ``is_evaluation_row`` tells such a row
from an iteration's.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import deque
from contextlib import contextmanager
from typing import Any, TextIO

import numpy as np

from rl.config import ConfigError

__all__ = [
    "CustomMetrics",
    "EpisodeWindow",
    "MetricMeans",
    "Progress",
    "RunLogger",
    "Timers",
    "explained_variance",
    "format_duration",
    "read_results",
    "is_evaluation_row",
]

TRAINING_ITERATION = "training_iteration"
ENV_STEPS_TOTAL = "env_steps_total"
EPISODES_TOTAL = "episodes_total"
EPISODE_RETURN_MEAN = "episode_return_mean"
EPISODE_RETURN_MAX = "episode_return_max"
EPISODE_RETURN_MIN = "episode_return_min"
EPISODE_LEN_MEAN = "episode_len_mean"
ENV_STEPS_PER_S = "env_steps_per_s"
TIME_TOTAL_S = "time_total_s"
EVAL_RETURN_MEAN = "eval/episode_return_mean"
EVAL_RETURN_STD = "eval/episode_return_std"
EVAL_LEN_MEAN = "eval/episode_len_mean"
WORKERS_HEALTHY = "workers/healthy"
WORKERS_RESTARTS = "workers/restarts"
WORKERS_DROPPED = "workers/dropped_fragments"
ENV_ERRORS = "env/errors"
EVAL_PREFIX = "eval/"
COUNTERS = (TRAINING_ITERATION, ENV_STEPS_TOTAL, TIME_TOTAL_S)
"""The counters an evaluation row carries besides its ``eval/`` keys."""


def is_evaluation_row(row: dict[str, Any]) -> bool:
    """Whether a ``result.jsonl`` row is an evaluation outside an iteration (counters
    and ``eval/`` keys only) rather than an iteration's result."""
    return any(k.startswith(EVAL_PREFIX) for k in row) and all(
        k in COUNTERS or k.startswith(EVAL_PREFIX) for k in row)


class EpisodeWindow:
    """The last ``size`` finished episodes (returns and lengths)."""

    def __init__(self, size: int = 100):
        self.returns: deque[float] = deque(maxlen=size)
        self.lens: deque[int] = deque(maxlen=size)
        self.total = 0

    def add(self, returns: np.ndarray, lens: np.ndarray) -> None:
        self.returns.extend(float(r) for r in returns)
        self.lens.extend(int(n) for n in lens)
        self.total += len(returns)

    def stats(self) -> dict[str, float]:
        if not self.returns:
            nan = float("nan")
            return {EPISODE_RETURN_MEAN: nan, EPISODE_RETURN_MAX: nan, EPISODE_RETURN_MIN: nan,
                    EPISODE_LEN_MEAN: nan}
        r = np.fromiter(self.returns, np.float64)
        return {
            EPISODE_RETURN_MEAN: float(r.mean()),
            EPISODE_RETURN_MAX: float(r.max()),
            EPISODE_RETURN_MIN: float(r.min()),
            EPISODE_LEN_MEAN: float(np.mean(self.lens)),
        }

    def state(self) -> dict[str, Any]:
        return {"returns": list(self.returns), "lens": list(self.lens), "total": self.total}

    def load_state(self, state: dict[str, Any]) -> None:
        self.returns.clear()
        self.lens.clear()
        self.returns.extend(state["returns"])
        self.lens.extend(state["lens"])
        self.total = int(state["total"])


CUSTOM_PREFIX = "custom/"


class CustomMetrics:
    """The custom metrics (``rl.callbacks``) of the episodes that ended in an iteration:
    ``custom/<name>_mean``, ``custom/<name>_min`` and ``custom/<name>_max``."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}

    def add(self, values: dict[str, list[float]] | None) -> None:
        for name, vals in (values or {}).items():
            self.values.setdefault(name, []).extend(vals)

    def pop(self) -> dict[str, float]:
        """The statistics since the last pop; names without episodes are left out."""
        out = {}
        for name, vals in sorted(self.values.items()):
            if vals:
                a = np.asarray(vals, np.float64)
                out.update({f"{CUSTOM_PREFIX}{name}_mean": float(a.mean()),
                            f"{CUSTOM_PREFIX}{name}_min": float(a.min()),
                            f"{CUSTOM_PREFIX}{name}_max": float(a.max())})
        self.values = {}
        return out


class Timers:
    """Wall time per phase of the last iteration: ``with timers("sample"): ...``."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.last[name] = self.last.get(name, 0.0) + time.perf_counter() - start

    def pop(self) -> dict[str, float]:
        out = {f"timers/{k}_s": v for k, v in self.last.items()}
        self.last = {}
        return out


class MetricMeans:
    """Running means of named metrics over many updates (weighted, per key).

    The one accumulator behind every "mean of the learner metrics since the last
    report": ``add`` each update's metrics (tensors or numbers), ``means()`` reads
    them, ``pop()`` reads and starts over.

    Examples:
        >>> m = MetricMeans()
        >>> m.add({"loss": 1.0}); m.add({"loss": 3.0}, weight=3)
        >>> m.means()
        {'loss': 2.5}
    """

    __slots__ = ("_sums", "_weights", "count")

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self._weights: dict[str, float] = {}
        self.count = 0
        """Calls of ``add`` since the last ``pop``."""

    def add(self, metrics: dict[str, Any], weight: float = 1.0) -> None:
        """Add one update's metrics, each counted ``weight`` times."""
        for k, v in metrics.items():
            v = float(v)
            self._sums[k] = self._sums.get(k, 0.0) + v * weight
            self._weights[k] = self._weights.get(k, 0.0) + weight
        self.count += 1

    def means(self) -> dict[str, float]:
        """The weighted mean of every metric added (an empty dict before any)."""
        return {k: v / self._weights[k] for k, v in self._sums.items()}

    def pop(self) -> dict[str, float]:
        """``means()``, then forget everything."""
        out = self.means()
        self._sums, self._weights, self.count = {}, {}, 0
        return out

    def __bool__(self) -> bool:
        return self.count > 0


def explained_variance(pred: Any, target: Any) -> Any:
    """``1 - Var(target - pred) / Var(target)``: how much of the targets' variance the
    value predictions explain (1 perfect, 0 no better than a constant, < 0 worse).

    Works on numpy arrays (returns a float) and torch tensors (returns a 0-d tensor)
    alike; nan when the targets are constant.
    """
    if isinstance(target, np.ndarray):
        var = float(np.var(target))
        return float("nan") if var == 0 else 1.0 - float(np.var(target - pred)) / var
    var = target.var()
    return 1.0 - (target - pred).var() / var if var > 0 else target.new_tensor(math.nan)


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Progress:
    """The console progress line of a run, the one format for the CLI and ``fit()``.

    On a TTY a live line redrawn in place (a bar and an ETA when the env-step budget
    is known); otherwise one line per iteration.

    Args:
        stream: where the line goes (a text stream).
        budget_steps: env-step budget for the bar and ETA (optional).
    """

    def __init__(self, stream: TextIO, budget_steps: int | None = None):
        self.stream = stream
        self.tty = bool(stream.isatty())
        self.budget_steps = budget_steps
        self._open = False  # a TTY line is drawn and not yet ended

    def update(self, r: dict[str, Any]) -> None:
        """Show one iteration's result."""
        steps = int(r.get(ENV_STEPS_TOTAL, 0))
        ret = r.get(EPISODE_RETURN_MEAN, float("nan"))
        sps = r.get(ENV_STEPS_PER_S, 0.0)
        elapsed = r.get(TIME_TOTAL_S, 0.0)
        line = (f"iter {r.get(TRAINING_ITERATION, 0):>4}  steps {steps:>9,}  "
                f"return {ret:8.2f}  {sps:8,.0f} steps/s  {format_duration(elapsed)}")
        if self.budget_steps:
            frac = min(1.0, steps / self.budget_steps)
            eta = (elapsed / frac - elapsed) if frac > 0 else float("inf")
            if self.tty:
                filled = int(30 * frac)
                bar = "#" * filled + "-" * (30 - filled)
                line = f"[{bar}] {100 * frac:5.1f}% {line}  ETA {format_duration(eta)}"
            else:
                line += f"  ({100 * frac:.0f}% of budget)"
        if EVAL_RETURN_MEAN in r:
            line += f"  eval {r[EVAL_RETURN_MEAN]:.2f}"
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self._open = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End a live TTY line, so that what is printed next starts on its own line."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


class RunLogger:
    """Writes a run directory: params.json, result.jsonl, TensorBoard events, console.

    Args:
        run_dir: the directory (created).
        params: the resolved config dict, written once.
        console: where progress goes (None silences it).
        budget_steps: env-step budget for the progress bar and ETA (optional).
        resumed_at: continuing the run in ``run_dir`` from this iteration's checkpoint:
            an existing params.json stays the original run's (a changed config goes to
            ``params_resumed_<iteration>.json`` beside it) and TensorBoard does not get
            the hyper-parameter table a second time.
    """

    def __init__(self, run_dir: str, params: dict[str, Any], console: TextIO | None = sys.stderr,
                 budget_steps: int | None = None, tensorboard: bool = True,
                 resumed_at: int | None = None):
        self.run_dir = run_dir
        os.makedirs(run_dir, exist_ok=True)
        params_file = os.path.join(run_dir, "params.json")
        continued = resumed_at is not None and os.path.isfile(params_file)
        if continued:
            params_file = self._resumed_params_file(params_file, params, resumed_at)
        if params_file is not None:
            with open(params_file, "w") as f:
                json.dump(params, f, indent=2, sort_keys=True)
        self._results = open(os.path.join(run_dir, "result.jsonl"), "a", buffering=1)
        self.progress = Progress(console, budget_steps) if console is not None else None
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(run_dir)
        if self.writer is not None and not continued:
            table = "\n".join(f"|{k}|{json.dumps(v)}|" for k, v in sorted(params.items()))
            self.writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}")

    @staticmethod
    def _resumed_params_file(original: str, params: dict[str, Any],
                             iteration: int) -> str | None:
        """Where a resumed run's config goes: nowhere when it is the original's, else
        ``params_resumed_<iteration>.json`` next to the original ``params.json``."""
        try:
            with open(original) as f:
                if json.load(f) == json.loads(json.dumps(params)):
                    return None
        except (OSError, ValueError):
            pass  # unreadable: keep it as it is, and record this run's config beside it
        return os.path.join(os.path.dirname(original), f"params_resumed_{iteration:06d}.json")

    def log(self, result: dict[str, Any]) -> None:
        """Write one iteration's result (a row, its scalars, the progress line)."""
        self._write(result)
        if self.progress is not None:
            self.progress.update(result)

    def log_evaluation(self, row: dict[str, Any]) -> None:
        """Write an evaluation outside an iteration: ``row`` holds the counters
        (``COUNTERS``) and ``eval/`` keys; no progress line (the caller reports it)."""
        self._write(row)

    def _write(self, result: dict[str, Any]) -> None:
        clean = {k: _jsonable(v) for k, v in result.items()}
        self._results.write(json.dumps(clean) + "\n")
        if self.writer is not None:
            step = int(result.get(ENV_STEPS_TOTAL, result.get(TRAINING_ITERATION, 0)))
            for k, v in result.items():
                if isinstance(v, int | float | np.number) and not isinstance(v, bool):
                    if math.isfinite(float(v)):
                        self.writer.add_scalar(k, float(v), step)
            self.writer.flush()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self._results.close()


def read_results(run_dir: str) -> list[dict[str, Any]]:
    """A run directory's ``result.jsonl`` rows, as written (``rl.plot.merge_rows`` merges them).

    A last line cut short (the run was killed while writing it) is left out; a bad line
    before the end is an error, as the file is then not a run's log.

    Raises:
        ConfigError: no result.jsonl, or a line before the last that is no JSON object.
    """
    path = os.path.join(run_dir, "result.jsonl")
    if not os.path.isfile(path):
        raise ConfigError(f"{run_dir!r} is not a run directory: it has no result.jsonl")
    with open(path) as f:
        lines = [(n, line) for n, line in enumerate(f, 1) if line.strip()]
    rows = []
    for i, (n, line) in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                break  # cut off by a crash
            raise ConfigError(f"{path}: line {n} is not JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{path}: line {n} is not a result row (a JSON object)")
        rows.append(row)
    return rows
