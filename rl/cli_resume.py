"""``rl train --resume``: what a resumed run takes from its checkpoint.

The checkpoint's config and the command line's agreement with it (``resume_config``),
where the resumed run logs (``resume_target``), and the stop criteria it goes on to
(``default_stop``, ``budget_spent``: a criterion already met trains nothing). ``rl.cli``
owns the command itself.
"""

from __future__ import annotations

import os
import sys


def resume_config(args):
    """The checkpoint's config and the stop criteria of ``-f FILE`` (if given), after
    checking that nothing on the command line contradicts the checkpoint."""
    from rl.algorithms.algorithm import Algorithm
    from rl.cli import UsageError
    from rl.experiment import Stop, load_example

    cfg = Algorithm.config_from_checkpoint(args.resume)
    saved = f"the checkpoint's {{}} ({args.resume})"
    if args.algo and args.algo.lower() != cfg.algo_name.lower():
        raise UsageError(f"--algo {args.algo} disagrees with {saved.format('algo')}: "
                         f"{cfg.algo_name}; leave --algo out to resume it")
    if args.env and not same_env(args.env, cfg.env):
        raise UsageError(f"--env {args.env} disagrees with {saved.format('env')}: {cfg.env}; "
                         "leave --env out to resume it")
    if args.seed is not None and args.seed != cfg.seed:
        raise UsageError(f"--seed {args.seed} disagrees with {saved.format('seed')}: "
                         f"{cfg.seed}; a resumed run continues the saved random state (start "
                         "a new run for another seed)")
    stop = Stop()
    if args.file:
        example = load_example(args.file)
        if example.algo.lower() != cfg.algo_name.lower() or not same_env(example.env, cfg.env):
            raise UsageError(f"{args.file} (algo: {example.algo}, env: {example.env}) is not the "
                             f"checkpoint's run ({cfg.algo_name} on {cfg.env}); with --resume, "
                             "-f FILE gives only the stop criteria")
        stop = example.stop
    return cfg, stop


def same_env(a: str, b: str) -> bool:
    """Whether two env names mean the same env (``CartPole`` and ``CartPole-v1`` do)."""
    if a == b:
        return True
    from rl.envs import EnvNameError, resolve_env

    try:
        return resolve_env(a).env_id == resolve_env(b).env_id
    except EnvNameError:
        # Only an unknown name means "another env"; a user module that fails to import
        # (EnvError) is its own error, raised as such.
        return False


def resume_target(checkpoint: str, iteration: int,
                  logdir: str) -> tuple[str | None, str]:
    """Where a resumed run logs when no ``--logdir`` is given: the checkpoint's own run
    directory (returned first) if rl wrote one around it, else a new run directory
    under the logdir returned second (``logdir``, or next to the checkpoint's run)."""
    run_dir = os.path.dirname(os.path.abspath(checkpoint))
    results = os.path.join(run_dir, "result.jsonl")
    if not any(os.path.isfile(os.path.join(run_dir, name))
               for name in ("params.json", "result.jsonl")):
        return None, logdir
    last = last_iteration(run_dir)
    if last > iteration:
        # Appending would draw iterations last+1.. after a second copy of iteration+1..:
        # the curve would fold back on itself.
        print(f"{results} already goes on to iteration {last}, past the checkpoint's "
              f"{iteration}: the resumed run gets a new run dir next to it", file=sys.stderr)
        return None, os.path.dirname(run_dir)
    return run_dir, logdir


def last_iteration(run_dir: str) -> int:
    """The last iteration a run directory's ``result.jsonl`` logged (0 if none)."""
    from rl.metrics import read_results

    if not os.path.isfile(os.path.join(run_dir, "result.jsonl")):
        return 0
    return max((int(r.get("training_iteration", 0)) for r in read_results(run_dir)), default=0)


def default_stop(stop, algo) -> None:
    from rl.experiment import DEFAULT_BUDGET_STEPS, Stop

    if stop.to_dict():
        return
    if algo.stop_criteria:
        # A resumed run goes on to the budget of the run that wrote the checkpoint.
        for key, value in Stop.from_dict(algo.stop_criteria).to_dict().items():
            setattr(stop, key, value)
        return
    threshold = algo.env_spec.reward_threshold
    if threshold is not None:
        stop.episode_return_mean = threshold
    # A checkpoint older than saved stop criteria: its first run's budget.
    stop.env_steps_total = algo.stop_timesteps or DEFAULT_BUDGET_STEPS


def standing(algo) -> dict[str, float]:
    """Where a restored algorithm stands, as the keys of a result that stop criteria read:
    its counters and its smoothed ``episode_return_mean`` (nan before any episode)."""
    from rl import metrics as M

    return {M.TRAINING_ITERATION: algo.iteration, M.ENV_STEPS_TOTAL: algo.env_steps_total,
            M.TIME_TOTAL_S: algo.time_total_s,
            M.EPISODE_RETURN_MEAN: algo.episodes.stats()[M.EPISODE_RETURN_MEAN]}


def budget_spent(stop, algo) -> str | None:
    """The stop criterion a restored checkpoint already meets, as words
    (``episode_return_mean 480.90 >= 475.0``), or None.

    The rule ``fit()`` applies after every iteration (``Stop.reached``), applied to where
    the checkpoint stands: a criterion already met trains nothing, be it a counter or the
    smoothed return.
    """
    now = standing(algo)
    key = stop.reached(now)
    if key is None:
        return None
    value = now[key]
    shown = f"{value:.2f}" if isinstance(value, float) else value
    return f"{key} {shown} >= {getattr(stop, key)}"
