"""``rl bench``: run tuned examples over seeds, write a report with curves.

``run_bench`` runs every tuned example once per seed (sequentially, each in this
process, logging to ``<out>/runs/``), then writes ``<out>/report.md``: one row per
example with the seeds that passed, the median env steps and wall time to the pass
criterion, the final training return mean ± std over seeds, rl's figure measured by
the protocol of the example's reference (``rl.experiment.PROTOCOLS``) beside that
reference; and one learning-curve PNG per example (training return vs env steps: mean
and min-max range over seeds, a training-return pass threshold drawn). Plots need
matplotlib (the ``bench`` extra).

The pass criterion is measured as the learning tests measure it
(``PassCriterion.measure``): a training-return criterion passes at the first
iteration that meets it; a greedy-evaluation criterion is checked once, by the
evaluation of ``pass.episodes`` episodes after the run, whose end is then its "steps
and time to pass".

A ``cap`` (``rl bench --stop-timesteps N`` and the other stop flags) shortens every
run for a quick look: each run stops at whichever comes first, its example's own
criterion or the cap's. The pass criteria stay the examples', and the report says
that the runs were capped (a capped run may fail only for want of budget).
"""

from __future__ import annotations

import glob
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rl import metrics as M
from rl.config import ConfigError
from rl.envs import probe_spaces, resolve_env
from rl.experiment import PassCriterion, Stop, TunedExample, fit, load_example
from rl.plot import band

__all__ = ["SeedRun", "capped", "collect_examples", "measured_like", "pass_criterion",
           "run_bench", "write_report"]


@dataclass
class SeedRun:
    """The outcome of one (example, seed) run."""

    seed: int
    passed: bool
    steps_to_pass: int | None
    time_to_pass_s: float | None
    final_return: float
    env_steps: int
    wall_s: float
    run_dir: str
    curve: list[tuple[int, float]] = field(default_factory=list)
    eval_return: float | None = None
    """The greedy evaluation after the run (a greedy-evaluation criterion): mean, std
    and number of its episodes."""
    eval_std: float | None = None
    eval_episodes: int = 0


def collect_examples(paths: list[str]) -> list[str]:
    """YAML files from files and directories (recursively), sorted."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            files += glob.glob(os.path.join(path, "**", "*.yaml"), recursive=True)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise ConfigError(f"{path!r} is neither a tuned-example file nor a directory")
    if not files:
        raise ConfigError(f"no tuned-example .yaml files found in {paths}")
    return sorted(files)


def capped(stop: Stop, cap: Stop | None) -> Stop:
    """``stop`` with every criterion ``cap`` sets lowered to the cap's value (or added):
    a run stops at whichever comes first."""
    if cap is None:
        return stop
    out = Stop(**stop.to_dict())
    for key, limit in cap.to_dict().items():
        own = getattr(out, key)
        setattr(out, key, limit if own is None else min(own, limit))
    return out


def run_seed(example: TunedExample, seed: int, out: str, backend: str | None = None,
             cap: Stop | None = None) -> SeedRun:
    cfg = example.config.copy().set(seed=seed)
    if backend:
        cfg.set(backend=backend)
    criterion = pass_criterion(example)
    during_training = criterion is not None and criterion.episodes is None
    first_pass: dict[str, Any] = {}
    curve: list[tuple[int, float]] = []
    start = time.perf_counter()

    def on_result(result: dict[str, Any]) -> None:
        ret = result.get("episode_return_mean")
        if ret is not None and not math.isnan(ret):
            curve.append((int(result["env_steps_total"]), float(ret)))
        if during_training and not first_pass and criterion.met(result):
            first_pass.update(steps=result["env_steps_total"], time=time.perf_counter() - start)

    with cfg.build() as algo:
        algo.attach_logger(os.path.join(out, "runs"), console=None)
        # bench prints its own line per run: no progress line of fit()'s in between.
        result, _ = fit(algo, capped(example.stop, cap), checkpoint_at_end=False,
                        on_result=on_result, verbose=False)
        evaluation: dict[str, float] = {}
        if criterion is not None and not during_training:
            trained = time.perf_counter() - start
            evaluation = criterion.measure(algo, result)
            if criterion.met(evaluation):
                first_pass.update(steps=result["env_steps_total"], time=trained)
        run_dir = algo.run_dir or ""
    return SeedRun(seed=seed, passed=bool(first_pass), steps_to_pass=first_pass.get("steps"),
                   time_to_pass_s=first_pass.get("time"),
                   final_return=float(result.get("episode_return_mean", float("nan"))),
                   env_steps=int(result.get("env_steps_total", 0)),
                   wall_s=time.perf_counter() - start, run_dir=run_dir, curve=curve,
                   eval_return=evaluation.get(M.EVAL_RETURN_MEAN),
                   eval_std=evaluation.get(M.EVAL_RETURN_STD),
                   eval_episodes=int(evaluation.get("eval/episodes", 0)))


def pass_criterion(example: TunedExample) -> PassCriterion | None:
    """The example's ``pass``, or else its stop reward as a training-return criterion."""
    if example.pass_criterion is not None:
        return example.pass_criterion
    if example.stop.episode_return_mean is not None:
        return PassCriterion(metric=M.EPISODE_RETURN_MEAN, min=example.stop.episode_return_mean)
    return None


def run_bench(files: list[str], seeds: list[int], out: str, backend: str | None = None,
              console: Any = "stderr", cap: Stop | None = None) -> dict[str, list[SeedRun]]:
    """Run every example for every seed; returns ``{file: [SeedRun, ...]}``.

    ``console``: a text stream for progress, ``"stderr"`` (the current one) or None.
    ``cap``: stop criteria that shorten every run (see the module docstring).
    """
    if console == "stderr":
        console = sys.stderr
    examples = [load_example(f) for f in files]  # every file validated before any run
    for example in examples:  # and every env created once: a missing extra fails now
        probe_spaces(resolve_env(example.config.env), example.config.env_config)
    os.makedirs(out, exist_ok=True)
    runs: dict[str, list[SeedRun]] = {}
    total, done = len(examples) * len(seeds), 0
    for example in examples:
        runs[example.path] = []
        for seed in seeds:
            done += 1
            if console is not None:
                console.write(f"[{done}/{total}] {example.algo} {example.env} seed {seed} ... ")
                console.flush()
            run = run_seed(example, seed, out, backend, cap)
            runs[example.path].append(run)
            if console is not None:
                verdict = "PASS" if run.passed else "FAIL"
                greedy = (f", greedy eval {run.eval_return:.1f} ± {run.eval_std:.1f}"
                          if run.eval_return is not None else "")
                console.write(f"{verdict} training return {run.final_return:.1f}{greedy} at "
                              f"{run.env_steps:,} steps in {run.wall_s:.0f}s\n")
        write_report(examples, runs, out, cap)
    return runs


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def write_report(examples: list[TunedExample], runs: dict[str, list[SeedRun]], out: str,
                 cap: Stop | None = None) -> str:
    """Write ``report.md`` (and one PNG per example when matplotlib is installed)."""
    lines = ["# rl bench report", ""]
    if cap is not None and cap.to_dict():
        limits = ", ".join(f"{k} {'≥' if k == 'episode_return_mean' else '≤'} {v:g}"
                           for k, v in cap.to_dict().items())
        lines += [f"Capped for a quick look: every run stopped at {limits} if its example's "
                  "own stop criteria had not ended it first. The pass criteria are the "
                  "examples' own, so a capped run may fail for want of budget alone.", ""]
    lines += ["| algo | env | pass criterion | passed | median steps to pass | "
              "median time to pass | final training return (mean ± std) | "
              "rl, by the reference's protocol | reference |",
              "|---|---|---|---|---|---|---|---|---|"]
    images: list[str] = []
    for example in examples:
        seed_runs = runs.get(example.path, [])
        if not seed_runs:
            continue
        passed = sum(r.passed for r in seed_runs)
        steps = _median([r.steps_to_pass for r in seed_runs])
        wall = _median([r.time_to_pass_s for r in seed_runs])
        finals = [r.final_return for r in seed_runs]
        criterion = pass_criterion(example)
        ref = example.reference
        lines.append(
            f"| {example.algo} | {example.env} | "
            f"{criterion.describe() if criterion else '—'} | {passed}/{len(seed_runs)} | "
            f"{f'{steps:,.0f}' if steps is not None else '—'} | "
            f"{f'{wall:.1f} s' if wall is not None else '—'} | "
            f"{np.mean(finals):.1f} ± {np.std(finals):.1f} | "
            f"{measured_like(ref.protocol, seed_runs) if ref else '—'} | "
            f"{ref.describe() if ref else '—'} |")
        png = _png_name(example)
        threshold = (criterion.min if criterion is not None
                     and criterion.metric == M.EPISODE_RETURN_MEAN else None)
        if plot_curves({f"seed {r.seed}": r.curve for r in seed_runs},
                       os.path.join(out, png), f"{example.algo} {example.env}", threshold):
            images.append(f"![{example.algo} {example.env}]({png})")
    # Curves go below the table: a line between rows would end the markdown table.
    lines += [""] + [line for image in images for line in (image, "")]
    path = os.path.join(out, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "runs.json"), "w") as f:
        json.dump({k: [r.__dict__ for r in v] for k, v in runs.items()}, f, indent=1)
    return path


def measured_like(protocol: str, seed_runs: list[SeedRun]) -> str:
    """rl's figure measured as the reference's was (``PROTOCOLS``): for ``greedy_eval``
    the mean ± std over every evaluation episode of every seed (rl-zoo's std is over
    the episodes of its one run), for ``training_return`` the final training return,
    mean ± std over seeds."""
    seeds = f"{len(seed_runs)} seed{'s' if len(seed_runs) > 1 else ''}"
    if protocol == "training_return":
        finals = [r.final_return for r in seed_runs]
        return f"{np.mean(finals):.1f} ± {np.std(finals):.1f} (training return, {seeds})"
    runs = [r for r in seed_runs if r.eval_episodes]
    if not runs:
        return "— (no greedy evaluation: the example's pass criterion is not one)"
    n = np.array([r.eval_episodes for r in runs], float)
    means = np.array([r.eval_return for r in runs])
    mean = float(np.sum(n * means) / n.sum())
    # Pooled over all episodes: E[x^2] of each run is std^2 + mean^2.
    second = np.sum(n * (np.array([r.eval_std for r in runs]) ** 2 + means ** 2)) / n.sum()
    std = math.sqrt(max(float(second) - mean ** 2, 0.0))
    return f"{mean:.1f} ± {std:.1f} (greedy eval over {int(n.sum())} episodes, {seeds})"


def _png_name(example: TunedExample) -> str:
    stem = os.path.splitext(os.path.basename(example.path))[0]
    return f"{example.algo}_{stem}.png"


def plot_curves(curves: dict[str, list[tuple[int, float]]], path: str, title: str,
                threshold: float | None = None) -> bool:
    """Mean and min-max range of return-vs-steps curves; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    # A curve ends when its run stopped (often on reaching the threshold): hold its
    # last value so the mean stays defined out to the longest run.
    grid, mean, lo, hi = band([(np.asarray([p[0] for p in c], float),
                                np.asarray([p[1] for p in c], float)) for c in curves.values()],
                              hold_last=True)
    ax.fill_between(grid, lo, hi, alpha=0.25, label=f"range over {len(curves)} runs")
    ax.plot(grid, mean, label="mean")
    if threshold is not None:
        ax.axhline(threshold, color="k", linestyle="--", linewidth=1, label=f"pass {threshold:g}")
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode_return_mean")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
