"""Experiments: stop criteria, tuned-example files, and the fit loop around ``train()``.

A tuned example is a YAML file::

    algo: ppo
    env: CartPole-v1
    config: {...}            # exactly what AlgorithmConfig.to_dict() gives (a subset is fine)
    stop: {env_steps_total: 100000, episode_return_mean: 475}
    pass: {episode_return_mean: 475}          # optional: the learning criterion
    reference: {value: "500 ± 0", budget: 100000, source: rl-baselines3-zoo}
    ci: {seeds: [0, 1, 2]}                    # optional: the learning tests run these seeds

An example with ``ci`` is run by the learning tests (``tests/test_learning.py``) once
per listed seed, and must reach every ``pass`` criterion within its
``stop.env_steps_total`` budget; it therefore needs both.

``fit()`` runs iterations until a stop criterion holds, writes periodic checkpoints,
and on Ctrl-C / SIGTERM, or when workers fail past their restart budget, stops at the
next safe point, writes a checkpoint and re-raises (see ``rl.interrupts``).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from rl import metrics as M
from rl.algorithms.registry import config_class
from rl.config import AlgorithmConfig, ConfigError, coerce, parse_duration, yaml_error
from rl.interrupts import INTERRUPTS, Terminated
from rl.rollout import WorkerFailedError

__all__ = ["Stop", "TunedExample", "Terminated", "fit", "load_example"]

DEFAULT_BUDGET_STEPS = 1_000_000

log = logging.getLogger("rl")


@dataclass
class Stop:
    """Stop when any set criterion holds."""

    episode_return_mean: float | None = None
    env_steps_total: int | None = None
    training_iteration: int | None = None
    time_total_s: float | None = None

    KEYS = ("episode_return_mean", "env_steps_total", "training_iteration", "time_total_s")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Stop:
        d = dict(d or {})
        hints = typing.get_type_hints(cls)
        aliases = {"timesteps": "env_steps_total", "iters": "training_iteration",
                   "reward": "episode_return_mean", "time_s": "time_total_s"}
        out = {}
        for k, v in d.items():
            key = aliases.get(k, k)
            if key not in cls.KEYS:
                raise ConfigError(f"unknown stop criterion {k!r}; valid: {', '.join(cls.KEYS)}")
            if key == "time_total_s" and isinstance(v, str):
                # "5m" here is five minutes, not the five million of a number field.
                try:
                    out[key] = parse_duration(v)
                except ValueError as e:
                    raise ConfigError(f"stop.{key}: {e}") from None
                continue
            out[key] = coerce(f"stop.{key}", hints[key], v)
        return cls(**out)

    def reached(self, result: dict[str, Any]) -> str | None:
        """The name of the first criterion that holds, or None."""
        ret = result.get(M.EPISODE_RETURN_MEAN, float("nan"))
        if self.episode_return_mean is not None and not math.isnan(ret) \
                and ret >= self.episode_return_mean:
            return "episode_return_mean"
        for key in ("env_steps_total", "training_iteration", "time_total_s"):
            limit = getattr(self, key)
            if limit is not None and result.get(key, 0) >= limit:
                return key
        return None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.KEYS if getattr(self, k) is not None}


@dataclass
class TunedExample:
    """A parsed tuned-example file."""

    path: str
    algo: str
    env: str
    config: AlgorithmConfig
    stop: Stop
    pass_criteria: dict[str, float] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    ci_seeds: tuple[int, ...] = ()
    """The seeds the learning tests run (``ci: {seeds: [...]}``); empty: not in CI."""


def _ci_seeds(path: str, ci: Any, pass_criteria: dict[str, Any], stop: Stop) -> tuple[int, ...]:
    """Validate the ``ci`` key: ``{seeds: [distinct ints >= 0, ...]}``."""
    if ci is None:
        return ()
    if not isinstance(ci, dict) or set(ci) != {"seeds"}:
        raise ConfigError(f"{path}: ci must be a mapping with exactly one key, seeds "
                          f"(e.g. ci: {{seeds: [0, 1, 2]}}); got {ci!r}")
    seeds = ci["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ConfigError(f"{path}: ci.seeds must be a non-empty list of integers >= 0; "
                          f"got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{path}: ci.seeds lists a seed twice: {seeds}")
    if not pass_criteria:
        raise ConfigError(f"{path}: an example with ci needs pass criteria to check")
    if stop.env_steps_total is None:
        raise ConfigError(f"{path}: an example with ci needs a stop.env_steps_total budget")
    return tuple(seeds)


def load_example(path: str) -> TunedExample:
    """Parse and validate a tuned-example YAML file (errors name the file)."""
    if not os.path.isfile(path):
        raise ConfigError(f"tuned example file {path!r} does not exist")
    with open(path) as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {yaml_error(e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with algo, env, config, stop")
    unknown = set(data) - {"algo", "env", "config", "stop", "pass", "reference", "ci",
                           "description"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {sorted(unknown)}; valid: algo, env, "
                          "config, stop, pass, reference, ci, description")
    for key in ("algo", "env"):
        if key not in data:
            raise ConfigError(f"{path}: missing required key {key!r}")
    try:
        cfg = config_class(data["algo"]).from_dict(data.get("config") or {})
        cfg.set(env=data["env"])
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    stop = Stop.from_dict(data.get("stop"))
    pass_criteria = dict(data.get("pass") or {})
    return TunedExample(path=path, algo=data["algo"], env=data["env"], config=cfg, stop=stop,
                        pass_criteria=pass_criteria,
                        reference=dict(data.get("reference") or {}),
                        ci_seeds=_ci_seeds(path, data.get("ci"), pass_criteria, stop))


def _progress(algo, stop: Stop, verbose: bool | None) -> M.Progress | None:
    """fit()'s own progress line: with ``verbose`` (None: when stderr is a TTY), unless
    the algorithm's logger already prints one (``rl train`` attaches it with a console)."""
    stream = sys.stderr
    if verbose is None:
        verbose = stream.isatty()
    if not verbose or (algo.logger is not None and algo.logger.progress is not None):
        return None
    return M.Progress(stream, budget_steps=stop.env_steps_total)


def fit(algo, stop: Stop, checkpoint_every: int = 0, checkpoint_at_end: bool = True,
        on_result=None, verbose: bool | None = None) -> tuple[dict[str, Any], str | None]:
    """Train until ``stop`` holds; returns the last result and the final checkpoint.

    ``verbose``: show the progress line on stderr, the one ``rl train`` shows (None:
    when stderr is a TTY; False silences it). A logger attached with a console
    (``attach_logger(..., console=...)``) prints that line itself.

    Ctrl-C (KeyboardInterrupt), SIGTERM (``Terminated``) and ``WorkerFailedError`` end
    the run with a checkpoint (``algo.last_checkpoint``) and propagate. A signal
    abandons the iteration while it waits for workers, and otherwise takes effect once
    the learner's update is whole (``rl.interrupts``); a second signal stops at once,
    without a checkpoint.
    """
    if stop.env_steps_total and not algo.stop_timesteps:
        algo.stop_timesteps = int(stop.env_steps_total)
    algo.stop_criteria = stop.to_dict()
    result: dict[str, Any] = {}
    progress = _progress(algo, stop, verbose)
    with INTERRUPTS.installed():
        try:
            while True:
                result = algo.train()
                if progress is not None:
                    progress.update(result)
                if on_result is not None:
                    on_result(result)
                reason = stop.reached(result)
                if checkpoint_every and algo.iteration % checkpoint_every == 0 and not reason:
                    algo.save()
                INTERRUPTS.check()
                if reason:
                    result["stop_reason"] = reason
                    break
            path = algo.save() if checkpoint_at_end else None
            INTERRUPTS.check()
        except (KeyboardInterrupt, Terminated, WorkerFailedError):
            if not INTERRUPTS.forced:
                try:
                    algo.save()
                except Exception:
                    log.exception("the checkpoint after the interruption could not be written")
            raise
        finally:
            if progress is not None:
                progress.close()
    return result, path
