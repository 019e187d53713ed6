"""``rl tune FILE [--trials N] [--parallel P] [--sampler tpe|random|grid]
[--pruner asha|median|none|pbt] [--seeds 0,1] [--out DIR] [--resume]
[--backend process|ray] [--address ADDR]``.

Validates the example and its ``tune:`` space (exit 2 with one line before anything
starts), clamps ``--parallel`` to the machine's cores (a trial's env runners count
against them), runs the sweep (``rl.tune.study``; ``--backend ray``: ``rl.tune.ray_study``) with one live line per finished
trial on stderr, and writes ``trials.csv``, ``best.yaml`` and the plots into ``--out``.
Ctrl-C stops every trial, keeps the study and the outputs so far, and exits 130.
``rl.cli`` owns the error handling.
"""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_OUT = "tune_out"
BACKENDS = ("process", "ray")


def add_parser(sub) -> None:
    from rl.cli import positive
    from rl.tune.study import PRUNERS, SAMPLERS

    t = sub.add_parser("tune", help="sweep a tuned example's tune: space (Optuna)",
                       description="Sweep the hyper-parameters of a tuned example's tune: "
                       "section with an embedded Optuna study (DIR/study.db): P trials at a "
                       "time, each in its own process, bad ones pruned early. Needs the "
                       "rl[tune] extra.")
    t.add_argument("file", metavar="FILE", help="tuned example YAML with a tune: section")
    t.add_argument("--trials", type=positive, metavar="N",
                   help="trials to run (default: tune.num_samples)")
    t.add_argument("--parallel", type=positive, default=1, metavar="P",
                   help="trials at a time (1); clamped to the machine's cores")
    t.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="Optuna sampler (tpe)")
    t.add_argument("--pruner", choices=(*PRUNERS, "pbt"), default="asha",
                   help="asha (successive halving), median, none, or pbt (population "
                   "based training; --backend ray only) (asha)")
    t.add_argument("--seeds", default="0", help="comma-separated seeds every trial runs; "
                   "the objective is their mean (0)")
    t.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"output directory: study.db, trials.csv, best.yaml, plots, trial "
                   f"run dirs ({DEFAULT_OUT})")
    t.add_argument("--resume", action="store_true",
                   help="continue the sweep in DIR/study.db: only the missing trials run")
    t.add_argument("--backend", choices=BACKENDS, default="process",
                   help="process: the embedded Optuna study, one process a trial; ray: Ray "
                   "Tune (Optuna its searcher), on a local Ray or --address's cluster "
                   "(process)")
    t.add_argument("--address", metavar="ADDR",
                   help="Ray cluster address (--backend ray; default: start a local Ray "
                   "with this machine's cores)")
    t.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def clamp_parallel(requested: int, cost: int, cores: int) -> tuple[int, str | None]:
    """``--parallel`` within ``cores`` (each trial takes ``cost``), and the message if
    it was lowered."""
    fits = max(1, cores // cost)
    if requested <= fits:
        return requested, None
    return fits, (f"--parallel {requested} needs {requested * cost} cores ({cost} a trial: "
                  f"seeds x (1 driver + num_env_runners)); this machine has {cores}: running "
                  f"{fits} at a time")


def cmd_tune(args) -> int:
    import signal

    from rl.config import ConfigError
    from rl.experiment import load_example
    from rl.tune.report import write_outputs
    from rl.tune.space import grid_space
    from rl.tune.study import TuneOptions, import_optuna, run_study, trial_cost

    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.backend != "ray":
        if args.pruner == "pbt":
            raise ConfigError("--pruner pbt needs --backend ray (population based training "
                              "is Ray Tune's); the process backend prunes with asha, median "
                              "or none")
        if args.address:
            raise ConfigError("--address is a Ray cluster's: it needs --backend ray")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds expects comma-separated integers, got {args.seeds!r}") \
            from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds expects distinct comma-separated integers, got {args.seeds!r}")
    example = load_example(args.file)
    if example.tune is None:
        raise ConfigError(f"{args.file} has no tune: section to sweep (see docs/guides/tune.md)")
    if example.tune.metric == "env_steps_to_pass" and example.pass_criterion is None \
            and example.stop.episode_return_mean is None:
        raise ConfigError(f"{args.file}: tune.metric env_steps_to_pass needs a pass criterion "
                          "(pass:) or a stop.episode_return_mean")
    if args.sampler == "grid":
        grid_space(args.file, example.tune)
    import_optuna()
    if args.backend == "ray":
        return _tune_on_ray(args, example, seeds)
    parallel, note = clamp_parallel(args.parallel, trial_cost(example, len(seeds)), _cores())
    if note:
        print(f"rl tune: {note}", file=sys.stderr)
    options = TuneOptions(out=args.out, trials=args.trials, parallel=parallel,
                          sampler=args.sampler, pruner=args.pruner, seeds=seeds,
                          resume=args.resume)
    interrupted = False
    study = None
    try:
        study = run_study(example, options)
    except KeyboardInterrupt:
        interrupted = True
    if study is None:  # interrupted: reopen what was stored
        from rl.tune.study import open_study

        if not os.path.exists(os.path.join(args.out, "study.db")):
            return 130  # before the study was created: nothing to keep

        options.resume = True
        study = open_study(example, options)
    outputs = write_outputs(study, example, args.out)
    if interrupted:
        print(f"\ninterrupted; the study is kept: rl tune {args.file} --out {args.out} "
              "--resume continues it", file=sys.stderr)
        return 130
    print(f"trials: {outputs['trials']}", file=sys.stderr)
    if outputs["best"]:
        best = study.best_trial
        print(f"best: trial {best.number}, {example.tune.metric} {best.value:.6g}: "
              f"{outputs['best']} (rl train -f {outputs['best']})", file=sys.stderr)
    else:
        print("no trial completed: no best.yaml", file=sys.stderr)
    return 0


def _tune_on_ray(args, example, seeds: list[int]) -> int:
    from rl.tune.ray_study import import_ray_tune, run_ray
    from rl.tune.report import best_trial, write_outputs
    from rl.tune.study import TuneOptions, trial_cost

    import_ray_tune()
    parallel = args.parallel
    if not args.address:  # a local Ray: the same clamp as the process backend
        parallel, note = clamp_parallel(parallel, trial_cost(example, len(seeds)), _cores())
        if note:
            print(f"rl tune: {note}", file=sys.stderr)
    options = TuneOptions(out=args.out, trials=args.trials, parallel=parallel,
                          sampler=args.sampler, pruner=args.pruner, seeds=seeds,
                          resume=args.resume)
    study, interrupted = run_ray(example, options, address=args.address, cores=_cores())
    outputs = write_outputs(study, example, args.out)
    if interrupted:
        print(f"\ninterrupted; Ray keeps the experiment: rl tune {args.file} --backend ray "
              f"--out {args.out} --resume continues it", file=sys.stderr)
        return 130
    print(f"trials: {outputs['trials']}", file=sys.stderr)
    best = best_trial(study)
    if best is not None:
        print(f"best: trial {best.number} ({best.user_attrs['ray_trial_id']}), "
              f"{example.tune.metric} {best.value:.6g}: {outputs['best']} "
              f"(rl train -f {outputs['best']})", file=sys.stderr)
    else:
        print("no trial completed: no best.yaml", file=sys.stderr)
    return 0
