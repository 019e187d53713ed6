"""``rl plot``: learning curves from run directories, several metrics, runs grouped.

Reading a run (``read_run``): its ``params.json`` (the resolved config) and its
``result.jsonl`` (``rl.metrics.read_results``, which leaves out a last line cut off by a crash). Rows are kept by ``training_iteration``: a later row for an iteration
replaces the earlier one (a run resumed into its own directory from an earlier
checkpoint re-does the iterations after it, and the re-done ones are the run's), and
an evaluation row (``rl.metrics.is_evaluation_row``) joins its iteration's row.

Drawing (``plot_runs``): one subplot per metric, sharing the x axis
(``env_steps_total``, ``time_total_s`` or ``training_iteration``), and one line per
group of runs:

1. Pieces of one run are one line: a run directory whose first iteration is past 1
   (resumed with ``--logdir`` elsewhere) continues the run of the same config that
   reached the iteration before it (the layout fields a resume may change, such as the
   backend or the number of workers, aside).
   A run without params.json is only itself (nothing says which config it ran).
2. Runs whose configs differ in the seed alone are one group: their mean, with a shaded
   band over the seeds, the min-max range or mean ± std (the legend says which),
   where at least one of them has a point (no run is extended past its end). Runs of
   one config with the same seed (repeats, other budgets) are each a line of their own.

Legends come from the configs, not the directories' time stamps: algorithm and the
resolved env id (``CartPole`` from an older run directory reads as ``CartPole-v1``),
the config fields that differ between the groups, and the seed of a lone run; lines the
configs leave alike are told apart by their last ``env_steps_total``, then by their
directory. Plotting needs matplotlib: ``pip install 'rl[plot]'``.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rl import metrics as M
from rl.config import ConfigError
from rl.metrics import read_results

__all__ = ["BANDS", "X_KEYS", "Run", "band", "expand_run_dirs", "group_runs", "plot_runs",
           "read_run"]

X_KEYS = (M.ENV_STEPS_TOTAL, M.TIME_TOTAL_S, M.TRAINING_ITERATION)
"""What the x axis can be."""
BANDS = {"range": "min-max", "std": "mean ± std"}
"""Band kinds over seeds and how the legend names them."""
DEFAULT_METRICS = (M.EPISODE_RETURN_MEAN, M.EVAL_RETURN_MEAN)
# Fields a resumed run may take from its command line instead of the checkpoint
# (where its actors run, how many): they do not make it another run.
LAYOUT_FIELDS = frozenset({"backend", "ray_address", "device", "num_env_runners", "log_level"})
_X_LABELS = {M.ENV_STEPS_TOTAL: "env steps", M.TIME_TOTAL_S: "time (s)",
             M.TRAINING_ITERATION: "iteration"}


@dataclass
class Run:
    """One run's rows (one per iteration, sorted), read from one or more directories."""

    dirs: list[str]
    params: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def first_iteration(self) -> int:
        return int(self.rows[0].get(M.TRAINING_ITERATION, 0)) if self.rows else 0

    @property
    def last_iteration(self) -> int:
        return int(self.rows[-1].get(M.TRAINING_ITERATION, 0)) if self.rows else 0

    def points(self, metric: str, x: str) -> tuple[np.ndarray, np.ndarray]:
        """The ``(x, metric)`` points where both are finite numbers, sorted by x."""
        pts = sorted((float(r[x]), float(r[metric])) for r in self.rows
                     if _number(r.get(x)) and _number(r.get(metric)))
        if not pts:
            return np.empty(0), np.empty(0)
        xs, ys = zip(*pts)
        return np.asarray(xs), np.asarray(ys)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def merge_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per iteration, in iteration order: a later row replaces an earlier one,
    an evaluation row joins its iteration's row."""
    by_iteration: dict[int, dict[str, Any]] = {}
    for row in rows:
        it = int(row.get(M.TRAINING_ITERATION, 0))
        if M.is_evaluation_row(row) and it in by_iteration:
            by_iteration[it] = {**by_iteration[it], **row}
        else:
            by_iteration[it] = dict(row)
    return [by_iteration[it] for it in sorted(by_iteration)]


def read_run(run_dir: str) -> Run:
    """A run directory's config and rows (``ConfigError`` without a result.jsonl)."""
    rows = read_results(run_dir)
    params: dict[str, Any] = {}
    params_path = os.path.join(run_dir, "params.json")
    if os.path.isfile(params_path):
        with open(params_path) as f:
            params = json.load(f)
    if isinstance(params.get("env"), str):
        params["env"] = _env_id(params["env"])
    return Run([run_dir], params, merge_rows(rows))


def _env_id(name: str) -> str:
    """The id an env name resolves to (``CartPole`` -> ``CartPole-v1``), as rl writes it
    in params.json; a run directory from an older rl may hold the name as typed. A name
    that does not resolve here (a user's module or registered name) stays as it is."""
    from rl.envs import EnvError, EnvNameError, resolve_env

    if ":" in name:  # module:Class is its own id; resolving would import user code
        return name
    try:
        return resolve_env(name).env_id
    except (EnvNameError, EnvError):
        return name


def expand_run_dirs(paths: list[str]) -> list[str]:
    """Run directories from the arguments: a directory with a result.jsonl is a run;
    one without holds runs (``rl plot runs/``)."""
    out: list[str] = []
    for path in paths:
        if os.path.isfile(os.path.join(path, "result.jsonl")):
            out.append(path)
        elif os.path.isdir(path):
            found = sorted(os.path.join(path, d) for d in os.listdir(path)
                           if os.path.isfile(os.path.join(path, d, "result.jsonl")))
            if not found:
                raise ConfigError(f"{path!r} is not a run directory and holds none "
                                  "(no result.jsonl in it or its subdirectories)")
            out += found
        else:
            raise ConfigError(f"{path!r} does not exist")
    return out


def _identity(run: Run, *drop: str) -> str:
    """What makes runs one run or one group: the config, layout fields and ``drop``
    aside. A run without params.json is only itself: its directory."""
    if not run.params:
        return json.dumps({"run_dir": os.path.abspath(run.dirs[0])})
    return json.dumps({k: v for k, v in run.params.items()
                       if k not in LAYOUT_FIELDS and k not in drop}, sort_keys=True)


def join_resumed(runs: list[Run]) -> list[Run]:
    """Runs with their continuations (same config, first iteration past 1) joined."""
    whole: list[Run] = []
    for run in sorted(runs, key=lambda r: r.first_iteration):
        base = None
        if run.first_iteration > 1:
            base = next((w for w in whole if _identity(w) == _identity(run)
                         and w.first_iteration < run.first_iteration
                         and w.last_iteration >= run.first_iteration - 1), None)
        if base is None:
            whole.append(run)
        else:
            base.dirs += run.dirs
            base.rows = merge_rows(base.rows + run.rows)
    return whole


def group_runs(runs: list[Run]) -> list[list[Run]]:
    """Runs whose configs differ in the seed alone, as one group each; every other run
    alone. Runs of one config and one seed (repeats, or runs with other budgets) differ
    in no seed: each is its own line."""
    same: dict[str, list[Run]] = {}
    for run in runs:
        same.setdefault(_identity(run, "seed"), []).append(run)
    groups: list[list[Run]] = []
    for members in same.values():
        seeds = [json.dumps(r.params.get("seed")) for r in members]
        if len(set(seeds)) == len(seeds):
            groups.append(members)
        else:
            groups += [[r] for r in members]
    return groups


def band(curves: list[tuple[np.ndarray, np.ndarray]], kind: str = "range",
         hold_last: bool = False) -> tuple[np.ndarray, ...]:
    """Mean and band of several curves on a common x grid.

    Args:
        curves: ``(xs, ys)`` pairs, each sorted by x.
        kind: ``"range"`` (min-max) or ``"std"`` (mean ± std).
        hold_last: extend each curve past its end with its last value (a run that
            stopped on reaching its goal); otherwise a curve counts only in its range.

    Returns:
        ``(grid, mean, low, high)``, nan where no curve has a value.
    """
    if kind not in BANDS:
        raise ValueError(f"band kind must be one of {sorted(BANDS)}, got {kind!r}")
    curves = [(xs, ys) for xs, ys in curves if len(xs)]
    grid = np.unique(np.concatenate([xs for xs, _ in curves]))
    if len(grid) > 500:  # a point per pixel is plenty
        grid = np.linspace(grid[0], grid[-1], 500)
    stacked = np.vstack([np.interp(grid, xs, ys, left=np.nan,
                                   right=ys[-1] if hold_last else np.nan)
                         for xs, ys in curves])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan columns stay nan
        mean = np.nanmean(stacked, axis=0)
        if kind == "range":
            low, high = np.nanmin(stacked, axis=0), np.nanmax(stacked, axis=0)
        else:
            std = np.nanstd(stacked, axis=0)
            low, high = mean - std, mean + std
    return grid, mean, low, high


def _algo_name(run: Run) -> str:
    """The algorithm, from the config's fields (a config has exactly its algorithm's),
    else from the directory name ``<algo>_<env>_<time>``."""
    from rl.algorithms.registry import ALGORITHMS, config_class

    keys = set(run.params)
    for name in ALGORITHMS:
        if keys and set(config_class(name).field_names()) == keys:
            return name
    return os.path.basename(os.path.normpath(run.dirs[0])).split("_", 1)[0]


def _labels(groups: list[list[Run]], kind: str) -> list[str]:
    """``<ALGO> <env>``, the fields that tell apart groups of the same algorithm and
    env, and the seed of a lone run or the band's kind."""
    names = [(_algo_name(g[0]), g[0].params.get("env", "?")) for g in groups]
    shared = [{k: v for k, v in g[0].params.items() if k not in LAYOUT_FIELDS
               and k not in ("seed", "env")} for g in groups]
    labels = []
    for group, name, params in zip(groups, names, shared):
        peers = [p for n, p in zip(names, shared) if n == name]
        differ = sorted(k for k in set().union(*peers)
                        if len({json.dumps(p.get(k)) for p in peers}) > 1)
        extra = [f"{k}={json.dumps(params.get(k))}" for k in differ[:3]]
        if len(differ) > 3:
            extra.append("...")
        text = " ".join([name[0].upper(), str(name[1]), *extra])
        if not group[0].params:  # no params.json: the directory's name is all there is
            text = os.path.basename(os.path.normpath(group[0].dirs[0]))
        if len(group) == 1:
            seed = group[0].params.get("seed")
            text += f" seed {seed}" if seed is not None else ""
        else:
            text += f" ({len(group)} seeds: mean, band {BANDS[kind]})"
        labels.append(text)
    return _apart(labels, groups)


def _apart(labels: list[str], groups: list[list[Run]]) -> list[str]:
    """Labels that the configs leave equal (runs of one config and seed), told apart by
    how far each run went, then by its directory."""
    def steps(group: list[Run]) -> str:
        last = group[0].rows[-1].get(M.ENV_STEPS_TOTAL) if group[0].rows else None
        return f", {last:,} env steps" if isinstance(last, int) else ""

    for extra in (steps, lambda g: f" ({os.path.basename(os.path.normpath(g[0].dirs[0]))})"):
        counts = {label: labels.count(label) for label in labels}
        labels = [label + extra(g) if counts[label] > 1 else label
                  for label, g in zip(labels, groups)]
    return labels


def _metrics(runs: list[Run], wanted: list[str] | None) -> list[str]:
    keys = sorted({k for r in runs for row in r.rows for k, v in row.items() if _number(v)})
    if not wanted:
        present = [m for m in DEFAULT_METRICS if m in keys]
        if present:
            return present
        raise ConfigError(f"these runs have no {M.EPISODE_RETURN_MEAN}; name a metric with "
                          f"--metric (keys: {', '.join(keys) or 'none'})")
    for metric in wanted:
        if metric not in keys:
            close = difflib.get_close_matches(metric, keys, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(f"unknown metric {metric!r}: {hint}the runs' keys are "
                              f"{', '.join(keys)}")
    return list(dict.fromkeys(wanted))


def _check_output(output: str) -> None:
    """Refuse an image file matplotlib cannot write before drawing (its own error is a
    traceback after the work)."""
    from matplotlib.backend_bases import FigureCanvasBase

    folder = os.path.dirname(output) or "."
    if not os.path.isdir(folder):
        raise ConfigError(f"cannot write {output!r}: the directory {folder!r} does not exist")
    ext = os.path.splitext(output)[1][1:].lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if ext and ext not in formats:
        raise ConfigError(f"cannot write {output!r}: unknown image format {ext!r}; "
                          f"use one of {', '.join(sorted(formats))}")


def plot_runs(run_dirs: list[str], output: str | None = None, metrics: list[str] | None = None,
              x: str = M.ENV_STEPS_TOTAL, band_kind: str = "range"):
    """Draw the runs (see the module docstring) and save the figure to ``output``.

    Args:
        run_dirs: run directories, or directories holding them.
        output: the image file (its extension picks the format); None: not saved.
        metrics: result keys, one subplot each (default: ``episode_return_mean`` and,
            where the runs have it, ``eval/episode_return_mean``).
        x: ``env_steps_total``, ``time_total_s`` or ``training_iteration``.
        band_kind: the band over seeds, ``"range"`` (min-max) or ``"std"``.

    Returns:
        The matplotlib ``Figure``.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("rl plot needs matplotlib, which is not installed: "
                          "pip install 'rl[plot]'") from None
    if x not in X_KEYS:
        raise ConfigError(f"x must be one of {', '.join(X_KEYS)}, got {x!r}")
    if output is not None:
        _check_output(output)
    runs = join_resumed([read_run(d) for d in expand_run_dirs(run_dirs)])
    metrics = _metrics(runs, metrics)
    grouped = group_runs(runs)
    labels = _labels(grouped, band_kind)
    fig = Figure(figsize=(7, 2.8 * len(metrics) + 0.6))
    axes = fig.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
    for ax, metric in zip(axes, metrics):
        for color, (group, label) in enumerate(zip(grouped, labels)):
            curves = [run.points(metric, x) for run in group]
            curves = [c for c in curves if len(c[0])]
            if not curves:
                continue
            style = {"color": f"C{color % 10}", "label": label}
            if len(curves) == 1:
                xs, ys = curves[0]
            else:
                xs, ys, low, high = band(curves, band_kind)
                if len(xs) > 1:
                    ax.fill_between(xs, low, high, color=style["color"], alpha=0.2, linewidth=0)
                else:  # a band over one x (one evaluation each) is a bar
                    ax.vlines(xs, low, high, color=style["color"], alpha=0.4, linewidth=4)
            # Evaluations are sparse: mark their points.
            ax.plot(xs, ys, marker="o" if len(xs) <= 20 else None, markersize=3, **style)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(loc="best", fontsize="small")
    axes[-1].set_xlabel(_X_LABELS[x])
    fig.tight_layout()
    if output is not None:
        fig.savefig(output, dpi=100)
    return fig
