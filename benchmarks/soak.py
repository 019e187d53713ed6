"""Endurance: PPO and IMPALA for a long run each while rollout workers are SIGKILLed.

Each algorithm trains on CartPole-v1 with the process backend (2 workers x 8 envs) in
this process, through the Python API, for ``--minutes``. A background thread of the
same process, the *sampler*, every ``--sample-every`` seconds reads the process tree
(this driver and all its descendants: multiprocessing's forkserver and resource tracker,
the workers) from ``/proc``:

- memory: driver RSS, tree RSS and tree PSS (``/proc/PID/smaps_rollup``);
- open descriptors (``/proc/PID/fd``) and threads, of the driver and of the tree;
- ``/dev/shm``: all entries (count, bytes) and the library's own segments, named
  ``rl_<driver pid>_...`` (``rl.runtime.shm.driver_prefix``);
- the number of descendant processes; env steps, iterations, worker restarts and
  healthy workers of the last ``train()`` result.

Every ``--kill-every`` seconds the sampler records a ``pre_kill`` row, SIGKILLs one
rollout worker (in turn; pids from ``algo.workers.workers``), and ``--settle`` seconds
later records a ``post_kill`` row. The library notices the death and starts a
replacement (``rl.rollout.worker_set``); its restart budget is raised above the number of
kills.

Criteria (the summary prints them; exit status 1 when one fails):

- driver RSS growth at most ``--max-rss-growth`` % (default 5): the median over the last
  minute against the median over the first minute after ``--warmup`` seconds;
- after every kill, the tree's descriptors, the library's ``/dev/shm`` segments and the
  descendant processes are back at their pre-kill level in the ``post_kill`` row (the
  summary gives the largest deviation of each), and the worker was restarted.

Outputs, in ``--out``: ``soak_<algo>.csv`` (one row per sample) and ``soak_<algo>.png``
(matplotlib).

    python benchmarks/soak.py [--minutes 30] [--kill-every 120] [--sample-every 10]
        [--warmup 300] [--settle 20] [--algos ppo impala] [--out soak_out]

Measured 2026-12-07 with the defaults (the 2-core dev machine, shared), PASS:

=========================  ====================  ====================
                           PPO                   IMPALA
=========================  ====================  ====================
env steps in 30 min        11.05M                94.09M
workers killed / restarted 14 / 14               14 / 14
driver RSS after warm-up   +0.36 %               +0.20 %
tree descriptors           59, +0 after a kill   61, +0 after a kill
rl's /dev/shm segments     1, +0 after a kill    1, +0 after a kill
descendant processes       4, +0 after a kill    4, +0 after a kill
=========================  ====================  ====================
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from rl import PPOConfig
from rl.algorithms.algorithm import Algorithm
from rl.experiment import load_example
from rl.runtime import shm

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
IMPALA_EXAMPLE = os.path.join(ROOT, "tuned_examples", "impala", "cartpole.yaml")
NUM_WORKERS = 2
MIB = 1024 * 1024
COLUMNS = ["t_s", "event", "iterations", "env_steps", "restarts", "healthy",
           "driver_rss_mib", "tree_rss_mib", "tree_pss_mib", "driver_fds", "tree_fds",
           "driver_threads", "tree_threads", "children", "shm_entries", "shm_mib",
           "rl_shm_entries", "rl_shm_mib"]
LEVELS = ("tree_fds", "rl_shm_entries", "children")
"""The levels that must come back after each restart."""


# --------------------------------------------------------------------------- /proc


def _descendants(root: int) -> list[int]:
    """Every live descendant of ``root``, from one scan of ``/proc/*/stat``."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # exited during the scan
        # The command name (field 2) may hold spaces and parentheses: split after it.
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of ``pid`` in KiB, from ``smaps_rollup``; zeros if it exited."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _threads(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _shm(prefix: str = "") -> tuple[int, int]:
    """(entries, bytes) in ``/dev/shm`` whose name starts with ``prefix``."""
    count = size = 0
    for name in os.listdir(shm.SHM_DIR):
        if name.startswith(prefix):
            try:
                size += os.stat(os.path.join(shm.SHM_DIR, name)).st_size
            except OSError:
                continue
            count += 1
    return count, size


def measure_tree(driver: int) -> dict[str, Any]:
    """The process tree's resource columns of one sample."""
    kids = _descendants(driver)
    mem = [_memory_kib(p) for p in [driver, *kids]]
    shm_all, shm_rl = _shm(), _shm(shm.driver_prefix(driver))
    return {
        "driver_rss_mib": mem[0][0] / 1024, "tree_rss_mib": sum(m[0] for m in mem) / 1024,
        "tree_pss_mib": sum(m[1] for m in mem) / 1024,
        "driver_fds": _fds(driver), "tree_fds": sum(_fds(p) for p in [driver, *kids]),
        "driver_threads": _threads(driver),
        "tree_threads": sum(_threads(p) for p in [driver, *kids]),
        "children": len(kids), "shm_entries": shm_all[0], "shm_mib": shm_all[1] / MIB,
        "rl_shm_entries": shm_rl[0], "rl_shm_mib": shm_rl[1] / MIB,
    }


# --------------------------------------------------------------------------- the run


@dataclass
class Progress:
    """What the training loop last reported; read by the sampler thread."""

    iterations: int = 0
    env_steps: int = 0
    restarts: int = 0
    healthy: int = NUM_WORKERS

    def update(self, result: dict[str, Any]) -> None:
        self.iterations = int(result["training_iteration"])
        self.env_steps = int(result["env_steps_total"])
        self.restarts = int(result["workers/restarts"])
        self.healthy = int(result["workers/healthy"])


@dataclass
class Soak:
    """One algorithm's soak: the sampler/killer thread and its rows."""

    algo: Algorithm
    seconds: float
    kill_every: float
    sample_every: float
    settle: float
    progress: Progress = field(default_factory=Progress)
    rows: list[dict[str, Any]] = field(default_factory=list)
    kills: int = 0
    stopped: threading.Event = field(default_factory=threading.Event)

    def record(self, t0: float, event: str = "") -> None:
        p = self.progress
        row = {"t_s": round(time.monotonic() - t0, 2), "event": event,
               "iterations": p.iterations, "env_steps": p.env_steps,
               "restarts": p.restarts, "healthy": p.healthy}
        row.update({k: round(v, 3) if isinstance(v, float) else v
                    for k, v in measure_tree(os.getpid()).items()})
        self.rows.append(row)

    def kill_one(self) -> None:
        worker = self.algo.workers.workers[self.kills % NUM_WORKERS]
        try:
            os.kill(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it died on its own: the restart is exercised all the same
        self.kills += 1

    def sampler(self, t0: float) -> None:
        """Samples on the ``sample_every`` grid; kills on the ``kill_every`` grid, each
        bracketed by a ``pre_kill`` and a ``post_kill`` row ``settle`` s later."""
        next_sample, next_kill, post_at = 0.0, self.kill_every, None
        while True:
            now = time.monotonic() - t0
            if post_at is not None and now >= post_at:
                self.record(t0, "post_kill")
                post_at = None
            if now >= next_sample:
                self.record(t0)
                next_sample += self.sample_every
            if post_at is None and now >= next_kill and now + self.settle < self.seconds:
                self.record(t0, "pre_kill")
                self.kill_one()
                post_at = now + self.settle
                next_kill += self.kill_every
            wake = min(x for x in (next_sample, next_kill, post_at) if x is not None)
            if self.stopped.wait(max(0.0, wake - (time.monotonic() - t0))):
                return

    def run(self) -> None:
        t0 = time.monotonic()
        thread = threading.Thread(target=self.sampler, args=(t0,), name="soak-sampler",
                                  daemon=True)
        thread.start()
        try:
            while time.monotonic() - t0 < self.seconds:
                self.progress.update(self.algo.train())
        finally:
            self.stopped.set()
            thread.join()
        self.record(t0, "end")


def make_config(name: str, max_restarts: int):
    if name == "ppo":
        cfg = (PPOConfig().environment("CartPole-v1").resources(backend="process")
               .env_runners(num_env_runners=NUM_WORKERS, num_envs_per_env_runner=8)
               .debugging(seed=0))
    else:
        cfg = load_example(IMPALA_EXAMPLE).config
    return cfg.set(max_restarts_per_env_runner=max_restarts)


# --------------------------------------------------------------------------- verdict


def rss_growth(rows: list[dict[str, Any]], warmup: float) -> tuple[float, float, float]:
    """(first-minute median, last-minute median, growth %) of driver RSS after warm-up."""
    after = [r for r in rows if r["t_s"] >= warmup and r["event"] == ""]
    if not after:
        raise SystemExit(f"no sample after the warm-up of {warmup} s: run longer than that")
    end = after[-1]["t_s"]
    first = statistics.median(r["driver_rss_mib"] for r in after if r["t_s"] < warmup + 60)
    last = statistics.median(r["driver_rss_mib"] for r in after if r["t_s"] >= end - 60)
    return first, last, 100.0 * (last - first) / first


def kill_pairs(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    pre = [r for r in rows if r["event"] == "pre_kill"]
    post = [r for r in rows if r["event"] == "post_kill"]
    return list(zip(pre, post, strict=False))


def verdict(name: str, soak: Soak, warmup: float, max_growth: float) -> list[str]:
    """Print the summary of one algorithm; returns the failed criteria."""
    rows, failures = soak.rows, []
    first, last, growth = rss_growth(rows, warmup)
    print(f"\n{name}: {rows[-1]['t_s']:.0f} s, {rows[-1]['iterations']} iterations, "
          f"{rows[-1]['env_steps']} env steps, {soak.kills} kills, "
          f"{rows[-1]['restarts']} restarts, {rows[-1]['healthy']} healthy workers")
    print(f"  driver RSS after {warmup:.0f} s warm-up: {first:.1f} -> {last:.1f} MiB "
          f"({growth:+.2f} %, limit {max_growth} %); tree RSS {rows[-1]['tree_rss_mib']:.1f}"
          f" MiB, PSS {rows[-1]['tree_pss_mib']:.1f} MiB at the end")
    if growth > max_growth:
        failures.append(f"{name}: driver RSS grew {growth:.2f} % > {max_growth} %")
    pairs = kill_pairs(rows)
    for level in LEVELS:
        devs = [post[level] - pre[level] for pre, post in pairs]
        worst = max(devs, key=abs, default=0)
        print(f"  {level}: pre-kill {[pre[level] for pre, _ in pairs]}, "
              f"max deviation {worst:+d} after {len(pairs)} restarts")
        if worst:
            failures.append(f"{name}: {level} did not return to its pre-kill level "
                            f"(max deviation {worst:+d})")
    not_restarted = [i for i, (pre, post) in enumerate(pairs)
                     if post["restarts"] <= pre["restarts"] or post["healthy"] < NUM_WORKERS]
    if not pairs:
        failures.append(f"{name}: no kill happened (run longer than --kill-every + --settle)")
    if not_restarted:
        failures.append(f"{name}: kills {not_restarted} not followed by a restart within "
                        f"{soak.settle} s")
    return failures


def write_csv(path: str, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)


def plot(path: str, name: str, rows: list[dict[str, Any]], warmup: float) -> None:
    from matplotlib.figure import Figure

    t = [r["t_s"] / 60 for r in rows]
    kills = [r["t_s"] / 60 for r in rows if r["event"] == "pre_kill"]
    panels = [("memory (MiB)", ["driver_rss_mib", "tree_rss_mib", "tree_pss_mib"]),
              ("descriptors", ["driver_fds", "tree_fds"]),
              ("threads", ["driver_threads", "tree_threads"]),
              ("/dev/shm entries", ["rl_shm_entries", "shm_entries"]),
              ("processes", ["children", "healthy"]),
              ("env steps", ["env_steps"])]
    fig = Figure(figsize=(14, 7), layout="constrained")
    axes = fig.subplots(2, 3, sharex=True).ravel()
    for ax, (title, cols) in zip(axes, panels, strict=True):
        for col in cols:
            ax.plot(t, [r[col] for r in rows], label=col, lw=1)
        for k in kills:
            ax.axvline(k, color="red", lw=0.5, alpha=0.5)
        ax.axvline(warmup / 60, color="grey", ls="--", lw=0.8)
        ax.set_title(title)
        ax.legend(fontsize=7)
    for ax in axes[3:]:
        ax.set_xlabel("minutes (red: worker SIGKILLed, dashed: end of warm-up)")
    fig.suptitle(f"soak: {name}, CartPole-v1, process backend, {NUM_WORKERS} workers")
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0, help="training time per algorithm")
    p.add_argument("--kill-every", type=float, default=120.0, help="s between worker kills")
    p.add_argument("--sample-every", type=float, default=10.0, help="s between samples")
    p.add_argument("--warmup", type=float, default=300.0, help="s before RSS is judged")
    p.add_argument("--settle", type=float, default=20.0,
                   help="s after a kill at which the levels are compared")
    p.add_argument("--max-rss-growth", type=float, default=5.0, help="driver RSS limit, %%")
    p.add_argument("--algos", nargs="+", default=["ppo", "impala"], choices=["ppo", "impala"])
    p.add_argument("--out", default="soak_out", help="directory for the CSVs and PNGs")
    args = p.parse_args(argv)
    if args.settle >= args.kill_every:
        p.error(f"--settle ({args.settle}) must be shorter than --kill-every "
                f"({args.kill_every}): the level after a kill is read before the next one")
    os.makedirs(args.out, exist_ok=True)
    seconds = args.minutes * 60
    max_restarts = int(seconds // args.kill_every) + 1  # every kill may hit one worker
    failures: list[str] = []
    for name in args.algos:
        with make_config(name, max_restarts).build() as algo:
            soak = Soak(algo, seconds, args.kill_every, args.sample_every, args.settle)
            soak.run()
        left = shm.list_segments(shm.driver_prefix())
        print(f"{name} stopped: {len(left)} library /dev/shm segments left, "
              f"{len(_descendants(os.getpid()))} child processes (multiprocessing's forkserver "
              "and resource tracker stay for the next runtime)")
        if left:
            failures.append(f"{name}: /dev/shm segments left after stop(): {left}")
        write_csv(os.path.join(args.out, f"soak_{name}.csv"), soak.rows)
        plot(os.path.join(args.out, f"soak_{name}.png"), name, soak.rows, args.warmup)
        failures += verdict(name, soak, args.warmup, args.max_rss_growth)
    print("\nPASS" if not failures else "\nFAIL\n  " + "\n  ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
