"""The embedded sweep: an Optuna study in ``DIR/study.db``, P trial processes at a time.

::

    rl tune  ──ask──▶  Optuna study (SQLite, DIR/study.db; this process its one writer)
       │  params            ▲ report(value, step) / should_prune / tell(state)
       ▼                    │
    python -m rl.tune.trial  ──JSON lines on stdout──▶  selectors loop here
    (own session: its workers inside; SIGTERM = stop)   one live line per finished trial

The sweep process asks Optuna for a trial, samples its values (``rl.tune.space``) and
starts ``rl.tune.trial`` for it, up to ``parallel`` at once. Each intermediate value a
trial prints is reported to Optuna at ``step = env_steps_total``; when the pruner says
so, the trial gets SIGTERM and is told ``PRUNED`` (its last reported value kept). A
trial that exits with an error is ``FAIL`` with the error in its ``error`` user
attribute; the sweep goes on.

SIGTERM goes to the trial process alone: it is the driver of its runtimes and stops its
own workers in order, as ``rl train`` does (workers killed under it would turn the stop
into a recovery from dead workers). Whatever way a trial ends, the sweep then cleans up
after it (``_reap``): SIGKILL for anything left in its session, and the trial's
``/dev/shm`` segments removed by its driver prefix (``rl.runtime.shm``) while the exited
process, not yet reaped, still holds its pid. So a trial killed mid-shutdown leaks no
segment.

Ctrl-C (or SIGTERM): every running trial gets SIGTERM, then SIGKILL for its whole
session after a grace period; the running trials are recorded ``FAIL`` with error
``interrupted``, the outputs are written from what the study holds, and the exception
propagates (the CLI exits 130). ``--resume`` reopens the study: finished trials (complete,
pruned, failed with an error of their own) are kept and count; an interrupted trial
(``interrupted``, or one still ``RUNNING`` because the sweep was killed) is marked
failed and run again as a new trial, so exactly the missing number runs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rl.config import ConfigError
from rl.runtime import shm
from rl.tune.space import TuneSpec, grid_space, suggest

if TYPE_CHECKING:
    from rl.experiment import TunedExample

__all__ = ["INTERRUPTED", "PRUNERS", "SAMPLERS", "TuneOptions", "import_optuna", "launch_trial",
           "run_study", "trial_cost", "trial_environment"]

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("asha", "median", "none")
INTERRUPTED = "interrupted"
STUDY_NAME = "rl-tune"
GRACE_S = 10.0


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("rl tune needs Optuna, which is not installed: "
                          "pip install 'rl[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@dataclass
class TuneOptions:
    """What ``rl tune``'s flags set (None: the example's ``tune:`` value)."""

    out: str
    trials: int | None = None
    parallel: int = 1
    sampler: str = "tpe"
    pruner: str = "asha"
    seeds: list[int] = field(default_factory=lambda: [0])
    resume: bool = False


def trial_cost(example: TunedExample, seeds: int) -> int:
    """Cores one trial takes: per seed its driver (with the learner) and each env runner;
    a ``num_env_runners`` in the space counts at its largest."""
    runners = example.config.num_env_runners
    d = example.tune.space.get("num_env_runners")
    if d is not None:
        runners = max(d.values) if d.kind != "int" else d.values[1]
    return seeds * (1 + int(runners or 0))


def _sampler(optuna, name: str, example: TunedExample):
    if name == "random":
        return optuna.samplers.RandomSampler(seed=0)
    if name == "grid":
        return optuna.samplers.GridSampler(grid_space(example.path, example.tune), seed=0)
    return optuna.samplers.TPESampler(seed=0)


def _pruner(optuna, name: str):
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "median":
        # Sweeps of RL trials are small (tens): two finished trials make a median.
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    return optuna.pruners.NopPruner()


def open_study(example: TunedExample, options: TuneOptions):
    """Create ``DIR/study.db`` (or, with ``resume``, reopen it) for this sweep."""
    optuna = import_optuna()
    db = os.path.join(options.out, "study.db")
    if os.path.exists(db) and not options.resume:
        raise ConfigError(f"{db} exists (an earlier sweep): pass --resume to continue it, or "
                          "--out another directory")
    if options.resume and not os.path.exists(db):
        raise ConfigError(f"--resume: there is no study at {db} to continue")
    os.makedirs(options.out, exist_ok=True)
    signature = json.dumps({"example": os.path.abspath(example.path),
                            "tune": example.tune.to_dict(), "seeds": options.seeds,
                            "sampler": options.sampler}, sort_keys=True)
    study = optuna.create_study(
        storage=f"sqlite:///{os.path.abspath(db)}", study_name=STUDY_NAME,
        load_if_exists=options.resume, sampler=_sampler(optuna, options.sampler, example),
        pruner=_pruner(optuna, options.pruner),
        direction="maximize" if example.tune.mode == "max" else "minimize")
    stored = study.user_attrs.get("signature")
    if stored is None:
        study.set_user_attr("signature", signature)
    elif stored != signature:
        raise ConfigError(f"--resume: {db} is a sweep of another file, space, seeds or "
                          "sampler; resume it with the same ones, or --out another directory")
    for t in study.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.RUNNING:  # the sweep was killed
            # A FrozenTrial has no setter; the running trial's handle is Trial(study, id).
            optuna.trial.Trial(study, t._trial_id).set_user_attr("error", INTERRUPTED)
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return study


def _finished(study) -> int:
    """Trials that count towards the total: all but the interrupted ones."""
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
            optuna.trial.TrialState.FAIL)
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in done and t.user_attrs.get("error") != INTERRUPTED)


#: The environment variables that size the thread pools of torch and numpy's BLAS.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def trial_environment(threads: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a trial process: ``base`` (``os.environ``) with its thread
    pools at most ``threads`` wide.

    Each trial's driver would otherwise size torch's pool to the whole machine, and P
    trials side by side oversubscribe the cores: OpenMP threads spin-wait, and two
    2-thread PPO trials on 2 cores ran 10x slower than two 1-thread ones (measured with
    ``benchmarks/tune.py``). A smaller value the user set is kept.
    """
    env = dict(os.environ if base is None else base)
    for name in THREAD_VARIABLES:
        try:
            own = int(env.get(name, ""))
        except ValueError:
            own = 0
        env[name] = str(min(own, threads) if own > 0 else threads)
    return env


def launch_trial(spec: dict[str, Any], spec_path: str, log) -> subprocess.Popen:
    """Start ``rl.tune.trial`` for ``spec`` (written to ``spec_path``) in its own session,
    its thread pools ``spec["threads"]`` wide (the cores its drivers were given)."""
    with open(spec_path, "w") as f:
        json.dump(spec, f, indent=1)
    return subprocess.Popen([sys.executable, "-m", "rl.tune.trial", spec_path],
                            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                            start_new_session=True,
                            env=trial_environment(int(spec.get("threads", 1))))


@dataclass
class _Running:
    trial: Any
    proc: subprocess.Popen
    dir: str
    started: float
    buffer: bytes = b""
    last: dict[str, Any] = field(default_factory=dict)
    steps: set[int] = field(default_factory=set)
    pruned: bool = False
    spec_metric: str = ""


def run_study(example: TunedExample, options: TuneOptions, console=sys.stderr,
              launch: Callable[..., subprocess.Popen] = launch_trial):
    """Run the sweep to ``options.trials`` (or ``tune.num_samples``) finished trials;
    returns the study. ``launch(spec, spec_path, log)``: how a trial process starts."""
    import optuna

    spec: TuneSpec = example.tune
    study = open_study(example, options)
    total = options.trials or spec.num_samples
    if options.sampler == "grid":
        grid = grid_space(example.path, spec)
        total = min(total, math.prod(len(v) for v in grid.values()))
    running: dict[int, _Running] = {}
    selector = selectors.DefaultSelector()
    launched = _finished(study)
    if console is not None and launched:
        console.write(f"resuming {options.out}: {launched} of {total} trials done\n")
    try:
        while launched < total or running:
            while launched < total and len(running) < options.parallel:
                trial = study.ask()
                params = suggest(trial, spec)
                trial_dir = os.path.join(options.out, f"trial_{trial.number:04d}")
                os.makedirs(trial_dir, exist_ok=True)
                trial.set_user_attr("dir", trial_dir)
                with open(os.path.join(trial_dir, "trial.log"), "ab") as log:
                    proc = launch({"example": os.path.abspath(example.path), "params": params,
                                   "number": trial.number,
                                   "seeds": options.seeds, "metric": spec.metric,
                                   "mode": spec.mode, "dir": trial_dir,
                                   # trial_cost's share for the drivers (and learners)
                                   "threads": len(options.seeds)},
                                  os.path.join(trial_dir, "spec.json"), log)
                running[proc.stdout.fileno()] = _Running(trial, proc, trial_dir, time.time(),
                                                        spec_metric=spec.metric)
                selector.register(proc.stdout, selectors.EVENT_READ)
                launched += 1
            for key, _ in selector.select():
                run = running[key.fd]
                chunk = os.read(key.fd, 65536)
                run.buffer += chunk
                *lines, run.buffer = run.buffer.split(b"\n")
                for line in lines:
                    _message(run, line, study)
                if not chunk:  # EOF: the trial is over
                    selector.unregister(key.fileobj)
                    del running[key.fd]
                    _tell(study, run, _reap(run.proc), console, total)
    except BaseException:
        _stop_all(list(running.values()), study, optuna)
        raise
    finally:
        selector.close()
    return study


def _message(run: _Running, line: bytes, study) -> None:
    try:
        message = json.loads(line)
    except ValueError:
        return
    if "step" in message:
        step, value = int(message["step"]), float(message["value"])
        if run.pruned or step in run.steps or math.isnan(value):
            return
        run.steps.add(step)
        run.trial.report(value, step)
        run.last = {"value": value, "step": step}
        if run.trial.should_prune():
            run.pruned = True
            _signal(run.proc, signal.SIGTERM)
    else:
        run.last.update(message)


def _tell(study, run: _Running, code: int, console, total: int) -> None:
    import optuna

    trial, last = run.trial, run.last
    trial.set_user_attr("duration_s", round(time.time() - run.started, 2))
    if run.pruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        state = "pruned"
    elif code == 0 and "final" in last:
        trial.set_user_attr("best", last["best"])
        trial.set_user_attr("run_dirs", last.get("run_dirs", []))
        study.tell(trial, last["final"])
        state = "complete"
    else:
        error = last.get("error") or f"the trial process exited with code {code} (see " \
                                      f"{os.path.join(run.dir, 'trial.log')})"
        trial.set_user_attr("error", error)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        state = "failed"
    if console is not None:
        console.write(_live_line(study, trial.number, state, last, total,
                                 run.spec_metric) + "\n")
        console.flush()


def _live_line(study, number: int, state: str, last: dict[str, Any], total: int,
               metric: str) -> str:
    t = study.get_trials(deepcopy=False)[number]
    params = " ".join(f"{k}={_short(v)}" for k, v in t.params.items())
    if state == "complete":
        what = f"{metric} {t.value:.6g}"
    elif state == "pruned":
        what = f"at {last.get('step', 0):,} steps ({last.get('value', math.nan):.6g})"
    else:
        what = t.user_attrs.get("error", "")
    try:
        best = f"best #{study.best_trial.number} {study.best_value:.6g}"
    except ValueError:
        best = "best -"
    duration = t.user_attrs.get("duration_s", 0)
    return f"[{number + 1:>3}/{total}] trial {number:<3} {state:<8} {what:<24} {best:<18} " \
           f"{duration:>6.1f}s  {params}"


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _signal(proc: subprocess.Popen, sig: int) -> None:
    """Signal the trial process (not its workers: it stops them itself)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(proc.pid, sig)


def _exited(proc: subprocess.Popen, timeout: float | None) -> bool:
    """Wait up to ``timeout`` for the trial to exit, without reaping it: until it is
    reaped its pid (and so its segments' driver prefix) cannot be another process's."""
    if proc.returncode is not None:
        return True
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd (not Linux): reaping is the only wait
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def _reap(proc: subprocess.Popen, grace: float | None = None) -> int:
    """End a trial and leave nothing of it behind; returns its exit code.

    Waits ``grace`` seconds (None: as long as it takes) for it to exit, then SIGKILLs
    its whole session (the trial itself if it is still running, and any worker that
    outlived it), removes its segments from ``/dev/shm`` and reaps it."""
    _exited(proc, grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    _exited(proc, None)
    if proc.returncode is None:  # exited and not reaped: the pid is still the trial's
        shm.sweep(shm.driver_prefix(proc.pid))
    return proc.wait()


def _stop_all(runs: list[_Running], study, optuna) -> None:
    """Ctrl-C: SIGTERM every trial, SIGKILL the session of each that outlives the grace
    period, record the trials as interrupted failures."""
    for run in runs:
        _signal(run.proc, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    for run in runs:
        _reap(run.proc, max(0.0, deadline - time.monotonic()))
        try:
            run.trial.set_user_attr("error", INTERRUPTED)
            study.tell(run.trial, state=optuna.trial.TrialState.FAIL)
        except Exception:  # noqa: BLE001 - a second Ctrl-C mid-write: resume marks it
            pass
