"""The ``rl`` command line: ``rl train | evaluate | bench | plot | list | export | serve | tune``.

User errors (unknown algorithm, env, config key or value, missing or broken file,
an action space the algorithm cannot handle) exit 2 with one line that says what
was wrong and what is valid, before any process starts; ``--debug`` shows the
traceback. Ctrl-C writes a checkpoint, ends every child and exits 130 (SIGTERM:
143). Workers failing past their restart budget: a checkpoint, one error line, exit 1.
``--as-test`` exits 1 when the stop reward was not reached.

The current directory is importable (as with ``python -m``), in the CLI and in every
worker and learner process, so ``--env myenvs:Pole3`` finds ``./myenvs.py``;
``--import MODULE`` imports a user's module first, so that the names its
``rl.register_env`` calls add can be given as ``--env NAME``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import os
import re
import signal
import sys
import time
from typing import Any

from rl import cli_export, cli_resume, cli_serve, cli_tune
from rl.runtime import BACKENDS

EXIT_FAILED = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
DEFAULT_LOGDIR = "./runs"


def _user_errors() -> tuple[type[BaseException], ...]:
    from rl.algorithms.registry import UnknownAlgorithmError
    from rl.checkpoint import CheckpointError
    from rl.config import ConfigError
    from rl.envs import EnvNameError, UnsupportedSpaceError
    from rl.runtime import UnschedulableError

    return (ConfigError, EnvNameError, UnsupportedSpaceError, UnknownAlgorithmError,
            CheckpointError, UnschedulableError)


class UsageError(Exception):
    """A command-line mistake (exit 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: what was wrong and where the usage is, not the
    whole usage text; negative numbers in every notation ``parse_number`` reads are
    values, not options."""

    # argparse takes only -200 and -.5 for negative numbers; anything else starting with
    # "-" (-1.5e2, -2k) it reads as an unknown option ("expected one argument").
    NEGATIVE_NUMBER = re.compile(
        r"^-(\d[\d_]*(\.[\d_]*)?|\.\d[\d_]*)([eE][-+]?\d+)?[kKmMgGbB]?$")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = self.NEGATIVE_NUMBER

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} "
                                   f"(see `{self.prog} --help`)\n")


def integer(text: str) -> int:
    """An integer flag: ``100000``, ``1e5``, ``100_000`` and ``100k`` all work."""
    from rl.config import parse_number

    try:
        return int(parse_number(text, integer=True))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number (e.g. 100000, 1e5, "
                                         f"100_000, 100k), got {text!r}") from None


def positive(text: str) -> int:
    """A whole-number flag that must be at least 1 (``--episodes``, ``--stop-iters``)."""
    value = integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def nonnegative(text: str) -> int:
    """A whole-number flag where 0 means "off" (``--checkpoint-every``)."""
    value = integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def number(text: str) -> float:
    """A float flag: ``475``, ``-1.5e2``, ``2k`` all work."""
    from rl.config import parse_number

    try:
        return float(parse_number(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def duration(text: str) -> float:
    """A time flag in seconds: ``90``, ``1.5e3``, ``90s``, ``5m``, ``1.5h`` all work."""
    from rl.config import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="rl", description="Reinforcement learning: train, "
                                "evaluate and list algorithms.")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train an agent", description="Train an agent. With no "
                       "stop flags it stops at the env's reward threshold or at "
                       "1,000,000 env steps.")
    t.add_argument("--algo", help="algorithm (see `rl list`)")
    t.add_argument("--env", help="env: gymnasium id, short name, or module:Class")
    t.add_argument("-f", "--file", help="tuned example YAML (algo, env, config, stop)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="set a config field (repeatable); `--help-config` lists them")
    t.add_argument("--stop-reward", type=number, help="stop at this episode_return_mean")
    t.add_argument("--stop-timesteps", type=positive, help="stop after this many env steps")
    t.add_argument("--stop-iters", type=positive, help="stop after this many iterations")
    t.add_argument("--stop-time", type=duration,
                   help="stop after this long: seconds, or with a unit s, m, h (90, 5m, 1.5h)")
    t.add_argument("--num-env-runners", type=nonnegative, help="rollout worker processes")
    t.add_argument("--num-envs-per-env-runner", type=positive, help="envs per worker")
    t.add_argument("--backend", choices=BACKENDS, help="actor runtime")
    t.add_argument("--address", help="Ray cluster address (with --backend ray)")
    t.add_argument("--seed", type=integer, help="random seed")
    t.add_argument("--logdir", help="root of run directories (default ./runs; a resumed run "
                   "continues its own run dir unless --logdir is given)")
    t.add_argument("--checkpoint-every", type=nonnegative, default=0, metavar="N",
                   help="checkpoint every N iterations (always at the end)")
    t.add_argument("--resume", metavar="CHECKPOINT", help=(
        "resume from a checkpoint dir: algorithm, env, seed and config come from it "
        "(--algo/--env/--seed, if given, must match it); --num-env-runners, "
        "--num-envs-per-env-runner, --backend, --device, --address and --set override its "
        "config; stop flags count from the original start and set the new budget (default: "
        "the stop criteria of the run that wrote the checkpoint); rows go on in the checkpoint's run dir unless "
        "--logdir is given"))
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], help="learner device")
    t.add_argument("--as-test", action="store_true",
                   help="exit 1 if the stop reward was not reached")
    t.add_argument("--json", action="store_true",
                   help="print the final result as one JSON line (last line of stdout)")
    t.add_argument("--no-eval", action="store_true", help="skip the final evaluation")
    t.add_argument("--help-config", action="store_true",
                   help="list the algorithm's config fields and exit")
    t.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)

    e = sub.add_parser("evaluate", help="evaluate a checkpoint with greedy episodes",
                       description="Evaluate a checkpoint with greedy episodes (its "
                       "observation filter frozen); optionally record or show them.")
    e.add_argument("checkpoint")
    e.add_argument("--episodes", type=positive, default=10, help="how many episodes (10)")
    e.add_argument("--json", action="store_true", help="print the result as one JSON line")
    shown = e.add_mutually_exclusive_group()
    shown.add_argument("--video", metavar="DIR", help="record every episode as an MP4 in DIR "
                       "(needs the rl[video] extra)")
    shown.add_argument("--render", action="store_true",
                       help="show the episodes in a window (needs a display)")
    e.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)

    b = sub.add_parser("bench", help="run tuned examples over seeds and write a report")
    b.add_argument("paths", nargs="*", default=["tuned_examples"], metavar="FILE_OR_DIR",
                   help="tuned-example files or directories (default: tuned_examples)")
    b.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (0,1,2)")
    b.add_argument("--out", default="bench_out", help="report directory (bench_out)")
    b.add_argument("--backend", choices=BACKENDS,
                   help="override each example's backend")
    b.add_argument("--as-test", action="store_true", help="exit 1 if any example fails")
    b.add_argument("--stop-timesteps", type=integer, metavar="N",
                   help="cap every run at N env steps (a quick look; criteria still checked)")
    b.add_argument("--stop-iters", type=integer, metavar="N", help="cap every run at N iterations")
    b.add_argument("--stop-time", type=duration, metavar="T",
                   help="cap every run at T: seconds, or with a unit s, m, h (90, 5m, 1.5h)")
    b.add_argument("--stop-reward", type=number, metavar="R",
                   help="stop every run once episode_return_mean reaches R")
    b.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)

    pl = sub.add_parser("plot", help="plot learning curves from run directories",
                        description="Plot learning curves: a subplot per metric, a line per "
                        "run (a resumed run's pieces joined), runs that differ only in seed "
                        "as their mean with a band over the seeds. Needs matplotlib: pip install "
                        "'rl[plot]' (the bench extra includes it).")
    pl.add_argument("run_dirs", nargs="+", metavar="RUN",
                    help="run directories, or directories holding them (e.g. runs/)")
    pl.add_argument("--metric", action="append", metavar="KEY", help="a result key to plot "
                    "(repeatable; default: episode_return_mean, and eval/episode_return_mean "
                    "where present)")
    pl.add_argument("--x", default="env_steps_total",
                    choices=["env_steps_total", "time_total_s", "training_iteration"],
                    help="the x axis (env_steps_total)")
    pl.add_argument("--band", default="range", choices=["range", "std"],
                    help="the band over seeds: min-max range or mean ± std (range)")
    pl.add_argument("-o", "--output", default="curves.png",
                    help="image file; its extension picks the format (curves.png)")
    pl.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)

    sub.add_parser("list", help="list algorithms and example envs")
    cli_export.add_parser(sub)
    cli_serve.add_parser(sub)
    cli_tune.add_parser(sub)
    for command in (t, e):
        command.add_argument("--import", dest="imports", action="append", default=[],
                             metavar="MODULE", help="import MODULE before anything runs "
                             "(repeatable), e.g. the one whose rl.register_env() calls add "
                             "the env's name; a path (./myenvs.py) loads that file")
    return p


# ---------------------------------------------------------------------------- train
def _parse_sets(cfg, sets: list[str]) -> None:
    from rl.config import ConfigError, parse_value

    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip()
        if key not in cfg.field_names():
            raise cfg.unknown_key_error(key)
        hint = cfg.field_types()[key]
        value: Any = parse_value(text)
        if hint is str or (value is not None and str(hint) == "str | None"):
            value = text
        if "list" in str(hint) and not isinstance(value, list):
            value = [value]
        cfg.set(**{key: value})


def _make_config(args):
    from rl.algorithms.registry import config_class
    from rl.experiment import Stop, load_example

    if args.resume:
        cfg, stop = cli_resume.resume_config(args)
        if args.help_config:
            return cfg, None, None
        return _apply_flags(cfg, stop, args), stop, None
    example = None
    if args.file:
        example = load_example(args.file)
        cfg, stop = example.config, example.stop
        if args.algo and args.algo.lower() != example.algo.lower():
            raise UsageError(f"--algo {args.algo} disagrees with {args.file} (algo: "
                             f"{example.algo})")
        if args.env:
            cfg.set(env=args.env)
    else:
        if not args.algo:
            raise UsageError("missing --algo (or -f FILE, or --resume CHECKPOINT); valid "
                             "algorithms: see `rl list`")
        cfg = config_class(args.algo)()
        if args.help_config:
            return cfg, None, None
        if not args.env:
            raise UsageError("missing --env NAME (e.g. --env CartPole-v1)")
        cfg.set(env=args.env)
        stop = Stop()
    if args.seed is not None:
        cfg.set(seed=args.seed)
    return _apply_flags(cfg, stop, args), stop, example


def _apply_flags(cfg, stop, args):
    """The layout, resource and ``--set`` flags onto ``cfg``, the stop flags onto ``stop``;
    only flags given on the command line (a resumed run keeps the rest of its config)."""
    flags = {"num_env_runners": args.num_env_runners, "backend": args.backend,
             "num_envs_per_env_runner": args.num_envs_per_env_runner,
             "device": args.device, "ray_address": args.address}
    cfg.set(**{k: v for k, v in flags.items() if v is not None})
    _parse_sets(cfg, args.set)
    if args.stop_reward is not None:
        stop.episode_return_mean = args.stop_reward
    if args.stop_timesteps is not None:
        stop.env_steps_total = args.stop_timesteps
    if args.stop_iters is not None:
        stop.training_iteration = args.stop_iters
    if args.stop_time is not None:
        stop.time_total_s = args.stop_time
    cfg.validate()
    return cfg


def _print_config_help(cfg) -> None:
    """Every field by builder section: name, default, doc line and the values it takes
    (from the metadata the setter checks, so help and error messages agree)."""
    import dataclasses

    print(f"{cfg.algo_name} config fields (set with --set KEY=VALUE, or in Python with the "
          f"builder section named above them):")
    fields = dataclasses.fields(cfg)
    for section in dict.fromkeys(f.metadata.get("section") for f in fields):
        print(f"\n.{section}()")
        for f in fields:
            if f.metadata.get("section") == section:
                default = json.dumps(getattr(cfg, f.name))
                print(f"  {f.name:<34} {default:<14} {f.metadata.get('doc', '')}; "
                      f"valid: {cfg.valid_values(f.name)}")


def cmd_train(args) -> int:
    # A shell that starts us in the background leaves SIGINT ignored; `rl train`
    # promises Ctrl-C semantics (checkpoint, clean exit 130), so take it back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.backend in (None, "process") and not args.help_config:
        from rl.runtime import prestart

        prestart("process")
    _import_modules(args.imports)
    cfg, stop, _ = _make_config(args)
    if args.help_config:
        _print_config_help(cfg)
        return 0
    from rl.experiment import Terminated, fit
    from rl.rollout import WorkerFailedError

    # Only what the command line says overrides a checkpoint's config (_make_config): a
    # default here must not change the saved run's layout (its worker states would not fit).
    algo = cfg.build(checkpoint=args.resume)
    status = 0
    checkpoint = None
    try:
        if args.resume:
            algo.restore(args.resume)
            print(f"resuming {args.resume}: iteration {algo.iteration}, "
                  f"{algo.env_steps_total:,} env steps", file=sys.stderr)
        cli_resume.default_stop(stop, algo)
        spent = cli_resume.budget_spent(stop, algo) if args.resume else None
        if spent is not None:
            print(f"{args.resume} is already past its stop criteria ({spent}): nothing to "
                  "train; give stop flags it has not met (a larger --stop-timesteps or "
                  "--stop-iters) to go on", file=sys.stderr)
            if args.json:  # the promised last line: where the run stands
                print(json.dumps(_finite({**cli_resume.standing(algo),
                                          "stop_reason": spent.split()[0], "run_dir": None,
                                          "checkpoint": args.resume})))
            return 0
        budget = stop.env_steps_total
        run_dir, logdir = (cli_resume.resume_target(args.resume, algo.iteration,
                                                      DEFAULT_LOGDIR)
                           if args.resume and args.logdir is None else (None, args.logdir))
        if run_dir is not None:
            algo.attach_logger(run_dir=run_dir, console=sys.stderr, budget_steps=budget)
        else:
            algo.attach_logger(logdir or DEFAULT_LOGDIR, console=sys.stderr,
                               budget_steps=budget)
        run = algo.config
        print(f"{algo.name} on {algo.env_spec.env_id} ({run.backend} backend, "
              f"{run.num_env_runners} workers x {run.num_envs_per_env_runner} envs); "
              f"stop: {stop.to_dict()}; run dir: {algo.run_dir}"
              f"{' (continued)' if run_dir is not None else ''}", file=sys.stderr)
        try:
            result, checkpoint = fit(algo, stop, checkpoint_every=args.checkpoint_every)
        except KeyboardInterrupt:
            print(f"\ninterrupted; checkpoint: {algo.last_checkpoint}", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Terminated:
            print(f"\nterminated; checkpoint: {algo.last_checkpoint}", file=sys.stderr)
            return EXIT_TERMINATED
        except WorkerFailedError as e:
            if args.debug:
                raise
            print(f"rl train: error: {e}\ncheckpoint: {algo.last_checkpoint}", file=sys.stderr)
            return EXIT_FAILED
        if not args.no_eval:
            result.update(algo.evaluate())  # logged: a result.jsonl row, eval/ scalars
        if algo.logger is not None:
            algo.logger.close()
            algo.logger = None
        reached = stop.episode_return_mean is not None and \
            result.get("episode_return_mean", -math.inf) >= stop.episode_return_mean
        summary = {k: result.get(k) for k in ("training_iteration", "env_steps_total",
                                                "episode_return_mean", "eval/episode_return_mean",
                                                "time_total_s", "stop_reason")}
        print("done: " + ", ".join(f"{k}={_fmt(v)}" for k, v in summary.items()),
              file=sys.stderr)
        print(f"run dir: {algo.run_dir}\ncheckpoint: {checkpoint}", file=sys.stderr)
        if args.as_test and stop.episode_return_mean is not None and not reached:
            print(f"FAILED: episode_return_mean {_fmt(result.get('episode_return_mean'))} < "
                  f"{stop.episode_return_mean}", file=sys.stderr)
            status = 1
        if args.json:
            out = {k: v for k, v in result.items() if isinstance(v, int | float | str | None)}
            out.update(run_dir=algo.run_dir, checkpoint=checkpoint)
            print(json.dumps(_finite(out)))
    finally:
        algo.stop()
    return status


def _fmt(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in d.items()}


# ---------------------------------------------------------------------------- evaluate / list
def cmd_evaluate(args) -> int:
    from rl.algorithms.algorithm import Algorithm
    from rl.checkpoint import load_state

    _import_modules(args.imports)
    load_state(args.checkpoint)  # clear error for a wrong path, before any process starts
    # A fresh driver-side worker plays the episodes: the checkpoint's workers (their
    # layout, their running episodes) are a resume's business, not an evaluation's.
    # Its learner too: the learner state loads on the CPU whatever the saved run used,
    # so a checkpoint of a multi-learner or GPU run evaluates on any machine.
    algo = Algorithm.from_checkpoint(args.checkpoint, num_env_runners=0, backend="inline",
                                     workers=False, num_learners=0, num_gpus_per_learner=0,
                                     device="auto")
    started = time.time()
    try:
        result = algo.evaluate(args.episodes, video_dir=args.video, render=args.render)
    finally:
        algo.stop()
    mean, std = result["eval/episode_return_mean"], result["eval/episode_return_std"]
    videos = _videos_since(args.video, started) if args.video else []
    if args.json:
        out = {"episode_return_mean": mean, "episode_return_std": std,
               "episodes": args.episodes, "checkpoint": args.checkpoint}
        if args.video:
            out["videos"] = videos
        print(json.dumps(out))
    else:
        print(f"{args.episodes} episodes: return {mean:.2f} ± {std:.2f}")
        if args.video:
            print(f"videos: {len(videos)} MP4 files in {args.video}")
    return 0


def _videos_since(folder: str, started: float) -> list[str]:
    """The MP4s in ``folder`` written by this evaluation (older ones may share it)."""
    paths = (os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".mp4"))
    # One second of slack: some filesystems keep modification times in whole seconds.
    return sorted(p for p in paths if os.path.getmtime(p) >= started - 1.0)


def cmd_bench(args) -> int:
    from rl.bench import collect_examples, run_bench
    from rl.config import ConfigError
    from rl.experiment import Stop

    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds expects comma-separated integers, got {args.seeds!r}") from None
    cap = Stop(episode_return_mean=args.stop_reward, env_steps_total=args.stop_timesteps,
               training_iteration=args.stop_iters, time_total_s=args.stop_time)
    runs = run_bench(collect_examples(args.paths), seeds, args.out, backend=args.backend,
                     cap=cap if cap.to_dict() else None)
    failed = [f"{path} seed {r.seed}" for path, rs in runs.items() for r in rs if not r.passed]
    print(f"report: {os.path.join(args.out, 'report.md')}", file=sys.stderr)
    if failed:
        print("failed: " + "; ".join(failed), file=sys.stderr)
    return 1 if args.as_test and failed else 0


def cmd_plot(args) -> int:
    from rl.plot import plot_runs

    plot_runs(args.run_dirs, args.output, metrics=args.metric, x=args.x, band_kind=args.band)
    print(args.output)
    return 0


def cmd_list(args) -> int:
    from rl.algorithms.registry import ALGORITHMS

    print("algorithms:")
    for name, (module, cls) in ALGORITHMS.items():
        print(f"  {name:<8} {cls}  ({module})")
    print("example envs:")
    for env in ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1",
                "LunarLander-v3 (box2d extra)", "ALE/Pong-v5 (atari extra)"):
        print(f"  {env}")
    print("any gymnasium id, a short name (cartpole), or package.module:EnvClass")
    return 0


# ---------------------------------------------------------------------------- user modules
def _cwd_importable() -> None:
    """Put the current directory first on ``sys.path``, as ``python -m`` does.

    The ``rl`` script's own ``sys.path[0]`` is the venv's ``bin``. Worker and learner
    processes start with the driver's ``sys.path`` (multiprocessing sends it to each
    forkserver or spawn child as it starts it; Ray adds the driver's directory itself),
    so ``module:Class`` names from the current directory work there too.
    """
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def _import_modules(names: list[str]) -> None:
    """``--import MODULE``: import a user's modules before anything else runs."""
    from rl.config import error_line

    for name in names:
        module = name
        try:
            if name.endswith(".py") or os.sep in name or "/" in name:
                module = _import_file(name)
            else:
                importlib.import_module(module)
        except UsageError:
            raise
        except (Exception, SystemExit) as e:
            raise UsageError(f"--import {name}: importing module {module!r} raised "
                             f"{error_line(e)}") from e


def _import_file(path: str) -> str:
    """Load the Python file at ``path`` as the module named by its stem; returns that name.

    The module goes into ``sys.modules`` under its stem, and its directory onto
    ``sys.path``: worker processes (forkserver, spawn, Ray) re-import a user's classes by
    module name, and find the file the same way.
    """
    import importlib.util

    file = os.path.abspath(path)
    if not os.path.isfile(file):
        raise UsageError(f"--import {path}: no such file")
    stem = os.path.splitext(os.path.basename(file))[0]
    folder = os.path.dirname(file)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(stem, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[stem] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(stem, None)
        raise
    return stem


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 0
    from rl.callbacks import CallbackError

    handlers = {"train": cmd_train, "evaluate": cmd_evaluate, "bench": cmd_bench,
                "plot": cmd_plot, "list": cmd_list, "export": cli_export.cmd_export,
                "serve": cli_serve.cmd_serve,
                "tune": cli_tune.cmd_tune}
    _cwd_importable()
    try:
        return handlers[args.command](args)
    except UsageError as e:
        if args.debug:
            raise
        print(f"rl {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except CallbackError as e:  # the user's hook raised: its traceback, no retry
        if args.debug:
            raise
        print(f"rl {args.command}: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        # `rl ... | head` closed our stdout: not an error. Point stdout at /dev/null so
        # the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:
        if isinstance(e, _user_errors()) and not args.debug:
            print(f"rl {args.command}: error: {e}", file=sys.stderr)
            return EXIT_USER_ERROR
        raise


if __name__ == "__main__":
    # `python -m rl.cli` runs this file as `__main__`, and the subcommand modules import
    # `rl.cli` a second time: run that copy's main, so that the one UsageError they raise
    # is the one main catches (exit 2, not a traceback and 1).
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    from rl.cli import main as _main

    sys.exit(_main())
