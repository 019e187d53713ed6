"""The Ray Tune sweep (``rl tune --backend ray``): the same ``TuneSpec`` and trial, run by
Ray Tune on a local Ray or a cluster (``--address``).

::

    rl tune ──Tuner(param_space from the space)──▶ Ray Tune (experiment in DIR/ray)
                 searcher: OptunaSearch (tpe, random, grid)   │ one actor per trial,
                 scheduler: ASHA | MedianStoppingRule | FIFO  │ {"cpu": trial_cost}
                            | PBT (its own sampling)          ▼
                                      trainable: trial.run_trial, emit -> tune.report

Each trial is ``rl.tune.trial.run_trial`` in a Ray actor: every round's intermediate
value becomes ``tune.report({"value", "env_steps"})`` and the end one more report with
``final``, ``best`` and ``run_dirs``; a trial a scheduler stopped never made that report
(``pruned``), one that raised is ``failed`` with its error (``DIR/trial_<id>/error.txt``).
Under ``--pruner pbt`` each report carries an rl checkpoint of every seed, and a trial
PBT exploits restores its seeds from the checkpoint Ray hands it (``restored_from`` in
its later reports); mutations are drawn from the space and kept within its bounds.

The finished experiment (Ray's ``ResultGrid``) becomes an in-memory Optuna study of the
same trials, so ``rl.tune.report`` writes the same ``trials.csv``, ``best.yaml`` and
plots as the embedded sweep. ``--resume`` restores the experiment in ``DIR/ray``
(``Tuner.restore``) and runs it until ``--trials`` (or ``tune.num_samples``) trials
exist, like the embedded sweep (a PBT population keeps its size); Ctrl-C stops the
trials (Ray keeps the experiment's state) and the CLI exits 130. Without ``--address``
a local Ray is started with the machine's cores and shut down at the end.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import tempfile
from typing import TYPE_CHECKING, Any

from rl.config import ConfigError, error_line
from rl.tune.space import TuneSpec, grid_space
from rl.tune.study import INTERRUPTED, TuneOptions, import_optuna, trial_cost

if TYPE_CHECKING:
    from rl.experiment import TunedExample

__all__ = ["EXPERIMENT", "import_ray_tune", "ray_space", "run_ray"]

EXPERIMENT = "ray"  # Ray's experiment directory under DIR
ERROR_FILE = "error.txt"
PBT_ROUNDS = 4  # PBT perturbs this many times over a trial's budget


def import_ray_tune():
    try:
        from ray import tune
    except ImportError:
        raise ConfigError("rl tune --backend ray needs Ray Tune, which is not installed: "
                          "pip install 'rl[ray]'") from None
    return tune


def ray_space(spec: TuneSpec, sampler: str, path: str) -> dict[str, Any]:
    """The space as Ray Tune domains (one to one); under ``grid`` every field is a
    categorical of its grid values (Optuna's GridSampler enumerates them)."""
    tune = import_ray_tune()
    if sampler == "grid":
        return {k: tune.choice(v) for k, v in grid_space(path, spec).items()}
    out: dict[str, Any] = {}
    for name, d in spec.space.items():
        if d.kind == "uniform":
            out[name] = tune.uniform(*d.values)
        elif d.kind == "loguniform":
            out[name] = tune.loguniform(*d.values)
        elif d.kind == "int":
            out[name] = tune.randint(d.values[0], d.values[1] + 1)  # Ray's upper is open
        else:
            out[name] = tune.choice(list(d.values))
    return out


def _mutations(spec: TuneSpec) -> dict[str, Any]:
    """PBT's mutations: a range is resampled or scaled (x0.8 / x1.2), a ``choice`` or
    ``grid`` list moves to a neighbouring value."""
    ranges = ray_space(spec, "tpe", "")
    return {k: ranges[k] if d.kind in ("uniform", "loguniform", "int") else list(d.values)
            for k, d in spec.space.items()}


def _clip(spec: TuneSpec):
    """PBT's explore: its x0.8 / x1.2 perturbations kept within the space's bounds."""
    def explore(config: dict[str, Any]) -> dict[str, Any]:
        for name, d in spec.space.items():
            if d.kind in ("uniform", "loguniform", "int") and name in config:
                value = min(max(config[name], d.values[0]), d.values[1])
                config[name] = int(round(value)) if d.kind == "int" else float(value)
        return config
    return explore


def _budget_iterations(example: TunedExample) -> int:
    steps = example.stop.env_steps_total
    batch = getattr(example.config, "train_batch_size", None) or 0
    return max(1, int(steps) // int(batch)) if steps and batch else 100


def _scheduler(example: TunedExample, options: TuneOptions):
    from ray.tune import schedulers

    one_round = max(1, int(getattr(example.config, "train_batch_size", 0) or 1))
    if options.pruner == "asha":
        # No max_t of its own: the trial's stop budget ends it, with its final report
        # (ASHA stops a trial at max_t before that report).
        return schedulers.ASHAScheduler(time_attr="env_steps", max_t=2**40,
                                        grace_period=one_round)
    if options.pruner == "median":
        return schedulers.MedianStoppingRule(time_attr="env_steps", grace_period=one_round,
                                             min_samples_required=2)
    if options.pruner == "pbt":
        interval = max(1, _budget_iterations(example) // PBT_ROUNDS)
        # Synchronous: at every boundary the whole population has reported, so the bottom
        # quantile always exploits the top one (asynchronous PBT compares against whichever
        # trials happen to have reported, and may exploit nothing).
        return schedulers.PopulationBasedTraining(
            time_attr="training_iteration", perturbation_interval=interval,
            hyperparam_mutations=_mutations(example.tune),
            custom_explore_fn=_clip(example.tune), synch=True)
    return schedulers.FIFOScheduler()


def _searcher(example: TunedExample, options: TuneOptions):
    if options.pruner == "pbt":
        return None  # PBT samples (and mutates) on its own
    optuna = import_optuna()
    from ray.tune.search.optuna import OptunaSearch

    if options.sampler == "random":
        sampler = optuna.samplers.RandomSampler(seed=0)
    elif options.sampler == "grid":
        sampler = optuna.samplers.GridSampler(grid_space(example.path, example.tune), seed=0)
    else:
        sampler = optuna.samplers.TPESampler(seed=0)
    return OptunaSearch(sampler=sampler)


def _trainable(base: dict[str, Any], pbt: bool):
    """The function trainable: ``run_trial`` with ``emit`` as ``tune.report``."""
    def trainable(config: dict[str, Any]) -> None:
        import ray.tune

        from rl.tune.trial import run_trial

        if base["cwd"] not in sys.path:  # module:Class names from the sweep's directory
            sys.path.insert(0, base["cwd"])
        trial_id = ray.tune.get_context().get_trial_id()
        spec = {**base, "params": dict(config),
                "dir": os.path.join(base["out"], f"trial_{trial_id}")}
        os.makedirs(spec["dir"], exist_ok=True)
        given = ray.tune.get_checkpoint()
        restored = {"from": None}
        pending: dict[str, Any] = {"step": 0}

        def restore(algos) -> None:
            if given is None:
                return
            with given.as_directory() as d:
                for i, algo in enumerate(algos):
                    algo.restore(os.path.join(d, f"seed_{i}"))
                with open(os.path.join(d, "trial.json")) as f:
                    restored["from"] = json.load(f)["trial_id"]

        def save(algos) -> None:
            d = tempfile.mkdtemp(prefix="rl-pbt-")
            for i, algo in enumerate(algos):
                algo.save(os.path.join(d, f"seed_{i}"))
            with open(os.path.join(d, "trial.json"), "w") as f:
                json.dump({"trial_id": trial_id}, f)
            pending["dir"] = d

        def emit(message: dict[str, Any]) -> None:
            if "step" not in message:
                return
            pending["step"] = message["step"]
            metrics = {"value": message["value"], "env_steps": message["step"]}
            if restored["from"]:
                metrics["restored_from"] = restored["from"]
            d = pending.pop("dir", None)
            ray.tune.report(metrics, checkpoint=d and ray.tune.Checkpoint.from_directory(d))
            if d:  # Ray has copied it into the experiment's storage
                shutil.rmtree(d, ignore_errors=True)

        try:
            out = run_trial(spec, emit, restore=restore if pbt else None,
                            save=save if pbt else None)
        except Exception as e:
            with open(os.path.join(spec["dir"], ERROR_FILE), "w") as f:
                f.write(error_line(e, limit=400))
            raise
        ray.tune.report({"value": out["final"], "final": out["final"], "best": out["best"],
                         "run_dirs": json.dumps(out["run_dirs"]),
                         "env_steps": pending["step"]})

    trainable.__name__ = trainable.__qualname__ = "rltrial"
    return trainable


def _interrupt_to_ray(flag: dict[str, bool]):
    """Ctrl-C: remember it and stop Ray Tune gracefully (its SIGUSR1 handler)."""
    def handler(sig, frame) -> None:
        if flag["interrupted"]:
            raise KeyboardInterrupt
        flag["interrupted"] = True
        os.kill(os.getpid(), signal.SIGUSR1)
    return handler


def run_ray(example: TunedExample, options: TuneOptions, address: str | None = None,
            cores: int | None = None, console=sys.stderr) -> tuple[Any, bool]:
    """Run the sweep on Ray; returns (an in-memory Optuna study of its trials, whether
    Ctrl-C stopped it)."""
    import ray

    tune = import_ray_tune()
    out = os.path.abspath(options.out)
    exp_dir = os.path.join(out, EXPERIMENT)
    if os.path.exists(exp_dir) and not options.resume:
        raise ConfigError(f"{exp_dir} exists (an earlier sweep): pass --resume to continue "
                          "it, or --out another directory")
    if options.resume and not tune.Tuner.can_restore(exp_dir):
        raise ConfigError(f"--resume: there is no Ray Tune experiment at {exp_dir} to continue")
    spec: TuneSpec = example.tune
    cost = trial_cost(example, len(options.seeds))
    total = options.trials or spec.num_samples
    if options.sampler == "grid" and options.pruner != "pbt":
        total = min(total, math.prod(len(v) for v in grid_space(example.path, spec).values()))
    os.makedirs(out, exist_ok=True)
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:  # a trial wider than the machine still runs, one at a time
            ray.init(address="local", num_cpus=max(cores or os.cpu_count() or 1, cost),
                     log_to_driver=False, include_dashboard=False)
        started = True
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    flag = {"interrupted": False}
    previous = signal.signal(signal.SIGINT, _interrupt_to_ray(flag))
    try:
        base = {"example": os.path.abspath(example.path), "seeds": options.seeds,
                "metric": spec.metric, "mode": spec.mode, "out": out, "cwd": os.getcwd()}
        trainable = tune.with_resources(_trainable(base, options.pruner == "pbt"),
                                        {"cpu": cost})
        live = _LiveLines(console, total, spec)
        if options.resume:
            tuner = tune.Tuner.restore(exp_dir, trainable=trainable)
            _resume_to(tuner, total, options, live)
        else:
            tuner = tune.Tuner(
                trainable, param_space=ray_space(spec, options.sampler, example.path),
                tune_config=tune.TuneConfig(
                    metric="value", mode=spec.mode, num_samples=total,
                    max_concurrent_trials=options.parallel,
                    search_alg=_searcher(example, options),
                    scheduler=_scheduler(example, options)),
                run_config=tune.RunConfig(name=EXPERIMENT, storage_path=out, verbose=0,
                                          callbacks=[live]))
        grid = tuner.fit()
        ended = live.ended if flag["interrupted"] else None
        return to_study(grid, example, options, ended), flag["interrupted"]
    finally:
        signal.signal(signal.SIGINT, previous)
        if started:
            ray.shutdown()


def _resume_to(tuner, total: int, options: TuneOptions, live) -> None:
    """A restored experiment runs until ``total`` trials exist, as the embedded sweep
    does: Ray restores its searcher's sample count (and, after Ctrl-C, its "finished"
    flag), which would ignore ``--trials``; a ``SearchGenerator`` that takes ``total``
    over the restored count replaces the pickled searcher's wrapper. PBT's population is
    fixed when it starts: a different ``--trials`` is refused. The console lines are
    this run's ``live`` (the pickled callback would count against the old total)."""
    from ray.tune.search import SearchGenerator

    # Tuner.restore takes no new TuneConfig or RunConfig: set them on the restored one
    internal = tuner._local_tuner
    if internal is None:  # Ray client mode (ray://): the tuner lives on the cluster
        if options.trials is not None:
            raise ConfigError(f"--resume --trials {options.trials}: a sweep restored through "
                              "a ray:// client keeps the trial count it started with; give "
                              "the cluster's address (auto or HOST:PORT) or leave out --trials")
        return
    internal._run_config.callbacks = [live]
    config = internal._tune_config
    if config.search_alg is None:  # PBT: Ray's variant generator, all trials made at once
        if options.trials is not None and options.trials != config.num_samples:
            raise ConfigError(f"--resume --trials {options.trials}: this PBT sweep's "
                              f"population is {config.num_samples} trials, fixed when it "
                              f"started; resume it without --trials (or with "
                              f"--trials {config.num_samples})")
        return

    class ToTotal(SearchGenerator):
        def set_state(self, state: dict[str, Any]) -> None:
            super().set_state({**state, "total_samples": total,
                               "finished": state["counter"] >= total})

    searcher = config.search_alg
    config.search_alg = ToTotal(searcher.searcher if isinstance(searcher, SearchGenerator)
                                else searcher)


class _LiveLines:
    """One line on the console per finished trial (a ``ray.tune.Callback``)."""

    def __new__(cls, console, total: int, spec: TuneSpec):
        from ray.tune import Callback

        class Live(Callback):
            def __init__(self):
                self.done = 0
                self.ended: set[str] = set()

            def _line(self, trial, state: str) -> None:
                self.ended.add(trial.trial_id)
                if console is None:
                    return
                self.done += 1
                last = trial.last_result or {}
                what = f"{spec.metric} {last['final']:.6g}" if "final" in last else \
                    f"at {last.get('env_steps', 0):,} steps" if state != "failed" else "error"
                params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in (trial.config or {}).items())
                console.write(f"[{self.done:>3}/{total}] trial {trial.trial_id} {state:<8} "
                              f"{what:<24} {params}\n")
                console.flush()

            def on_trial_complete(self, iteration, trials, trial, **info):
                self._line(trial, "complete" if "final" in (trial.last_result or {})
                           else "pruned")

            def on_trial_error(self, iteration, trials, trial, **info):
                self._line(trial, "failed")

        return Live()


def to_study(grid, example: TunedExample, options: TuneOptions,
             interrupted: set[str] | None = None):
    """Ray's ``ResultGrid`` as an in-memory Optuna study (trials in creation order), the
    records ``rl.tune.report`` writes from. ``interrupted``: after Ctrl-C, the ids of
    the trials that ended on their own (the others were stopped: failed, ``interrupted``)."""
    optuna = import_optuna()
    spec = example.tune
    study = optuna.create_study(direction="maximize" if spec.mode == "max" else "minimize")
    study.set_user_attr("signature", json.dumps({"seeds": options.seeds}))
    dists = _distributions(optuna, spec)
    for result in sorted(grid, key=_created):
        trial_id = _trial_id(result)
        metrics = result.metrics or {}
        trial_dir = os.path.join(os.path.abspath(options.out), f"trial_{trial_id}")
        params = {k: v for k, v in (result.config or {}).items() if k in dists}
        steps = _intermediate(result)
        attrs: dict[str, Any] = {"dir": trial_dir, "ray_trial_id": trial_id}
        if metrics.get("time_total_s") is not None:
            attrs["duration_s"] = round(float(metrics["time_total_s"]), 2)
        value = None
        if result.error is not None:
            state = optuna.trial.TrialState.FAIL
            attrs["error"] = _error(trial_dir, result.error)
        elif interrupted is not None and trial_id not in interrupted:
            state = optuna.trial.TrialState.FAIL  # Ctrl-C stopped it: --resume runs it
            attrs["error"] = INTERRUPTED
        elif "final" in metrics:
            state, value = optuna.trial.TrialState.COMPLETE, float(metrics["final"])
            attrs["best"] = float(metrics["best"])
            attrs["run_dirs"] = json.loads(metrics.get("run_dirs") or "[]")
        elif steps:
            state = optuna.trial.TrialState.PRUNED
        else:  # stopped before its first report
            state = optuna.trial.TrialState.FAIL
            attrs["error"] = INTERRUPTED
        study.add_trial(optuna.trial.create_trial(
            state=state, value=value, params=params,
            distributions={k: dists[k] for k in params}, intermediate_values=steps,
            user_attrs=attrs))
    return study


def _trial_id(result) -> str:
    """Ray's trial id: reported with every result, and in the trial directory's name
    (``rltrial_<id>_<counter>_<params>_<date>``)."""
    trial_id = (result.metrics or {}).get("trial_id")
    return str(trial_id) if trial_id else os.path.basename(result.path or "").split("_")[1]


def _created(result) -> int:
    """The trial's place in the sweep: the counter in its directory's name."""
    try:
        return int(os.path.basename(result.path or "").split("_")[2])
    except (IndexError, ValueError):
        return 0


def _intermediate(result) -> dict[int, float]:
    df = result.metrics_dataframe
    if df is None or "value" not in df or "env_steps" not in df:
        return {}
    rows = df[df["final"].isna()] if "final" in df else df
    return {int(s): float(v) for s, v in zip(rows["env_steps"], rows["value"], strict=True)
            if not math.isnan(float(v))}


def _error(trial_dir: str, error: BaseException) -> str:
    try:
        with open(os.path.join(trial_dir, ERROR_FILE)) as f:
            return f.read().strip()
    except OSError:
        return error_line(error, limit=400)


def _distributions(optuna, spec: TuneSpec) -> dict[str, Any]:
    d = optuna.distributions
    out = {}
    for name, dist in spec.space.items():
        if dist.kind in ("uniform", "loguniform"):
            out[name] = d.FloatDistribution(*dist.values, log=dist.kind == "loguniform")
        elif dist.kind == "int":
            out[name] = d.IntDistribution(*dist.values)
        else:
            out[name] = d.CategoricalDistribution(list(dist.values))
    return out
