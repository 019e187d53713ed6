"""A sweep's outputs, written from the study alone (so a resumed or interrupted sweep
writes the same files): ``trials.csv``, ``best.yaml`` and the PNG plots.

* ``trials.csv``: one row per trial: ``number``, ``state`` (complete / pruned / failed /
  running), ``final`` (the objective: the metric at the end, mean over seeds; a pruned
  trial's last reported value), ``best`` (the best intermediate value), one column per
  searched field, ``duration_s``, ``error`` and ``dir``.
* ``best.yaml``: the example with the best complete trial's values in its ``config``
  (its ``tune:`` section left out): ``rl train -f DIR/best.yaml`` trains it.
* ``history.png`` (optimisation history), ``importances.png`` (parameter importances,
  with at least two complete trials), ``curves.png`` (the metric against env steps of
  the best complete trials, each seed a line). Plots need matplotlib (``rl[tune]``).
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from typing import Any

import yaml

from rl.experiment import TunedExample

__all__ = ["STATES", "write_best", "write_outputs", "write_plots", "write_trials_csv"]

STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
          "WAITING": "waiting"}
BEST_CURVES = 3


def _complete(study) -> list:
    import optuna

    return [t for t in study.get_trials(deepcopy=False)
            if t.state == optuna.trial.TrialState.COMPLETE]


def write_trials_csv(study, example: TunedExample, path: str) -> str:
    names = list(example.tune.space)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["number", "state", "final", "best", *names, "duration_s", "error",
                         "dir"])
        for t in study.get_trials(deepcopy=False):
            final = t.value if t.value is not None else (
                t.intermediate_values[t.last_step] if t.last_step is not None else None)
            best = t.user_attrs.get("best")
            if best is None and t.intermediate_values:
                values = list(t.intermediate_values.values())
                best = max(values) if example.tune.mode == "max" else min(values)
            writer.writerow([t.number, STATES.get(t.state.name, t.state.name.lower()),
                             _cell(final), _cell(best), *(_cell(t.params.get(n)) for n in names),
                             _cell(t.user_attrs.get("duration_s")), t.user_attrs.get("error", ""),
                             t.user_attrs.get("dir", "")])
    return path


def _cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return v


def best_trial(study):
    """The best complete trial, or None."""
    return study.best_trial if _complete(study) else None


def write_best(study, example: TunedExample, path: str) -> str | None:
    """``best.yaml``: the example with the best trial's values; None without one."""
    best = best_trial(study)
    if best is None:
        return None
    data = {k: v for k, v in (example.data or {}).items() if k not in ("tune", "ci")}
    data["config"] = {**(data.get("config") or {}), **best.params}
    header = (f"# rl tune: the best of {len(study.trials)} trials of {example.path}: trial "
              f"{best.number}, {example.tune.metric} {best.value:.6g} (mean over "
              f"{len(json.loads(study.user_attrs.get('signature', '{}')).get('seeds', [0]))} "
              f"seeds)\n# searched: {', '.join(f'{k}={v!r}' for k, v in best.params.items())}\n")
    with open(path, "w") as f:
        f.write(header + yaml.safe_dump(data, sort_keys=False))
    return path


def write_plots(study, example: TunedExample, out: str) -> list[str]:
    """The PNGs; the ones that cannot be drawn (no matplotlib, too few trials) are skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as ovm
    except ImportError:
        return []
    written = []
    complete = _complete(study)
    plots = [("history.png", ovm.plot_optimization_history, 1),
             ("importances.png", ovm.plot_param_importances, 2)]
    for name, plot, needed in plots:
        if len(complete) < needed or (name == "importances.png" and len(example.tune.space) < 1):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna's matplotlib module is "experimental"
            try:
                ax = plot(study)
            except (ValueError, RuntimeError):  # e.g. every complete trial has one value
                continue
        path = os.path.join(out, name)
        ax.figure.tight_layout()
        ax.figure.savefig(path, dpi=100)
        plt.close(ax.figure)
        written.append(path)
    curves = _plot_curves(study, example, os.path.join(out, "curves.png"), plt)
    return written + ([curves] if curves else [])


def _plot_curves(study, example: TunedExample, path: str, plt) -> str | None:
    metric = example.tune.metric
    key = "episode_return_mean" if metric == "env_steps_to_pass" else metric
    best = sorted(_complete(study), key=lambda t: t.value,
                  reverse=example.tune.mode == "max")[:BEST_CURVES]
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = 0
    for t in best:
        for i, run_dir in enumerate(t.user_attrs.get("run_dirs", [])):
            xs, ys = _curve(run_dir, key)
            if xs:
                ax.plot(xs, ys, color=f"C{best.index(t)}",
                        label=f"trial {t.number} ({t.value:.4g})" if i == 0 else None)
                drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("env steps")
    ax.set_ylabel(key)
    ax.set_title(f"best trials of {os.path.basename(example.path)}")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _curve(run_dir: str, key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    try:
        with open(os.path.join(run_dir, "result.jsonl")) as f:
            for line in f:
                row = json.loads(line)
                value = row.get(key)
                if isinstance(value, int | float) and math.isfinite(value):
                    xs.append(row.get("env_steps_total", 0))
                    ys.append(value)
    except (OSError, ValueError):
        pass
    return xs, ys


def write_outputs(study, example: TunedExample, out: str) -> dict[str, Any]:
    """Every output; returns their paths (``best``: None without a complete trial)."""
    return {"trials": write_trials_csv(study, example, os.path.join(out, "trials.csv")),
            "best": write_best(study, example, os.path.join(out, "best.yaml")),
            "plots": write_plots(study, example, out)}
