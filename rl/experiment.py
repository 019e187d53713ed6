"""Experiments: stop criteria, tuned-example files, and the fit loop around ``train()``.

A tuned example is a YAML file::

    algo: ppo
    env: CartPole-v1
    config: {...}            # exactly what AlgorithmConfig.to_dict() gives (a subset is fine)
    stop: {env_steps_total: 100000, episode_return_mean: 475}
    pass: {metric: eval/episode_return_mean, min: 475, episodes: 10}   # the criterion
    reference: {source: rl-baselines3-zoo benchmark.md, value: 500, std: 0,
                protocol: greedy_eval, episodes: 300, budget: 100000}
    ci: {seeds: [0, 1, 2]}                    # optional: the learning tests run these seeds
    tune: {metric: ..., mode: max, num_samples: 16, space: {...}}   # optional: rl tune

The ``reference`` names the protocol its figure was measured by (``PROTOCOLS``), and
``pass`` checks the metric that protocol gives: a greedy evaluation of ``episodes``
episodes after training (``eval/episode_return_mean``), or the smoothed training return
at the end of training (``episode_return_mean``). ``PassCriterion.measure`` is the one
place that takes that measurement, for the learning tests and ``rl bench`` alike.

An example with ``ci`` is run by the learning tests (``tests/test_learning.py``) once
per listed seed, and must meet its ``pass`` criterion within its
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
from dataclasses import dataclass
from typing import Any

import yaml

from rl import metrics as M
from rl.algorithms.registry import config_class
from rl.config import AlgorithmConfig, ConfigError, coerce, parse_duration, yaml_error
from rl.interrupts import INTERRUPTS, Terminated
from rl.rollout import WorkerFailedError
from rl.tune.space import TuneSpec, parse_tune

__all__ = ["PROTOCOLS", "PassCriterion", "Reference", "Stop", "TunedExample", "Terminated",
           "fit", "load_example"]

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


PROTOCOLS = {
    "greedy_eval": M.EVAL_RETURN_MEAN,
    "training_return": M.EPISODE_RETURN_MEAN,
}
"""How a published figure was measured -> the rl metric measured the same way.

``greedy_eval``: the trained agent's greedy (deterministic) episodes after training,
mean ± std over the episodes (rl-baselines3-zoo's benchmark.md). ``training_return``:
the episodic return of the training episodes at the end of training, mean ± std over
seeds (CleanRL's Atari tables, RLlib's example gates)."""

PASS_METRICS = {metric: protocol for protocol, metric in PROTOCOLS.items()}


def _mapping(path: str, name: str, value: Any, required: tuple[str, ...],
             optional: tuple[str, ...], example: str) -> dict[str, Any]:
    """A YAML mapping with exactly these keys, or an error naming the valid ones."""
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {name} must be a mapping (e.g. {name}: {example}); "
                          f"got {value!r}")
    valid = required + optional
    unknown = sorted(set(value) - set(valid))
    if unknown:
        raise ConfigError(f"{path}: unknown {name} keys {unknown}; valid: {', '.join(valid)} "
                          f"(e.g. {name}: {example})")
    missing = [k for k in required if k not in value]
    if missing:
        raise ConfigError(f"{path}: {name} is missing {', '.join(missing)} "
                          f"(e.g. {name}: {example})")
    return value


def _number(path: str, key: str, value: Any, integer: bool = False,
            minimum: float | None = None) -> Any:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or (
            minimum is not None and value < minimum):
        what = "an integer" if integer else "a number"
        bound = f" >= {minimum:g}" if minimum is not None else ""
        raise ConfigError(f"{path}: {key} must be {what}{bound}; got {value!r}")
    return value if integer else float(value)


@dataclass(frozen=True)
class PassCriterion:
    """The learning criterion: ``metric`` >= ``min`` at the end of a run."""

    metric: str
    """``episode_return_mean`` (training episodes) or ``eval/episode_return_mean``
    (a greedy evaluation after training)."""
    min: float
    episodes: int | None = None
    """Greedy episodes of the evaluation (``eval/`` metrics only)."""

    EXAMPLE = "{metric: eval/episode_return_mean, min: 475, episodes: 10}"

    @classmethod
    def from_dict(cls, path: str, d: Any) -> PassCriterion:
        if isinstance(d, dict) and "metric" not in d and set(d) & set(PASS_METRICS):
            raise ConfigError(f"{path}: pass: {d!r} is the old form; write pass: "
                              f"{{metric: NAME, min: VALUE}} (e.g. pass: {cls.EXAMPLE})")
        d = _mapping(path, "pass", d, ("metric", "min"), ("episodes",), cls.EXAMPLE)
        metric = d["metric"]
        if metric not in PASS_METRICS:
            raise ConfigError(f"{path}: unknown pass.metric {metric!r}; valid: "
                              f"{', '.join(PASS_METRICS)}")
        episodes = d.get("episodes")
        if metric == M.EVAL_RETURN_MEAN:
            if episodes is None:
                raise ConfigError(f"{path}: pass.metric {metric} needs pass.episodes, the "
                                  "number of greedy episodes evaluated after training")
            episodes = _number(path, "pass.episodes", episodes, integer=True, minimum=1)
        elif episodes is not None:
            raise ConfigError(f"{path}: pass.episodes is for a greedy evaluation "
                              f"({M.EVAL_RETURN_MEAN}); {metric} is measured on the "
                              "training episodes")
        return cls(metric=metric, min=_number(path, "pass.min", d["min"]), episodes=episodes)

    @property
    def protocol(self) -> str:
        return PASS_METRICS[self.metric]

    def measure(self, algo, result: dict[str, Any]) -> dict[str, float]:
        """The metric at the end of a run (``result``: its last iteration's): the
        training result's value, or a greedy evaluation of ``episodes`` episodes now,
        whose ``eval/`` keys are returned (and logged, with a logger attached)."""
        if self.episodes is None:
            return {self.metric: float(result.get(self.metric, float("nan")))}
        return algo.evaluate(self.episodes)

    def met(self, measured: dict[str, Any]) -> bool:
        value = measured.get(self.metric)
        return value is not None and not math.isnan(value) and value >= self.min

    def describe(self) -> str:
        what = (f"greedy eval over {self.episodes} episodes" if self.episodes is not None
                else "training return")
        return f"{self.metric} >= {self.min:g} ({what})"


@dataclass(frozen=True)
class Reference:
    """A published figure, and the protocol it was measured by (``PROTOCOLS``)."""

    source: str
    value: float
    protocol: str
    std: float | None = None
    episodes: int | None = None
    """``greedy_eval``: the episodes the figure averages."""
    seeds: int | None = None
    """How many training runs (seeds) the figure averages."""
    budget: int | None = None
    """The env steps the reference trained for."""
    note: str | None = None

    EXAMPLE = ("{source: rl-baselines3-zoo benchmark.md, value: 500, std: 0, "
               "protocol: greedy_eval, episodes: 300, budget: 100000}")

    @classmethod
    def from_dict(cls, path: str, d: Any) -> Reference:
        d = _mapping(path, "reference", d, ("source", "value", "protocol"),
                     ("std", "episodes", "seeds", "budget", "note"), cls.EXAMPLE)
        if d["protocol"] not in PROTOCOLS:
            raise ConfigError(f"{path}: unknown reference.protocol {d['protocol']!r}; valid: "
                              f"{', '.join(PROTOCOLS)}")
        out: dict[str, Any] = {"source": str(d["source"]), "protocol": d["protocol"],
                               "value": _number(path, "reference.value", d["value"])}
        if d.get("std") is not None:
            out["std"] = _number(path, "reference.std", d["std"], minimum=0)
        for key in ("episodes", "seeds", "budget"):
            if d.get(key) is not None:
                out[key] = _number(path, f"reference.{key}", d[key], integer=True, minimum=1)
        if d.get("episodes") is not None and d["protocol"] != "greedy_eval":
            raise ConfigError(f"{path}: reference.episodes is for protocol greedy_eval; "
                              f"this reference's protocol is {d['protocol']}")
        if d.get("note") is not None:
            out["note"] = str(d["note"])
        return cls(**out)

    def describe(self) -> str:
        value = f"{self.value:g}" + (f" ± {self.std:g}" if self.std is not None else "")
        how = ("greedy eval" + (f" over {self.episodes} episodes" if self.episodes else "")
               if self.protocol == "greedy_eval" else "training return")
        if self.seeds:
            how += f", {self.seeds} seed{'s' if self.seeds > 1 else ''}"
        budget = f" @ {self.budget:,} steps" if self.budget else ""
        return f"{value} ({how}){budget} ({self.source})"


@dataclass
class TunedExample:
    """A parsed tuned-example file."""

    path: str
    algo: str
    env: str
    config: AlgorithmConfig
    stop: Stop
    pass_criterion: PassCriterion | None = None
    reference: Reference | None = None
    ci_seeds: tuple[int, ...] = ()
    """The seeds the learning tests run (``ci: {seeds: [...]}``); empty: not in CI."""
    tune: TuneSpec | None = None
    """The ``rl tune`` search (``rl.tune.space``); None: the file has no ``tune:``."""
    data: dict[str, Any] | None = None
    """The file's mapping as written (``rl tune`` writes its best.yaml from it)."""


def _ci_seeds(path: str, ci: Any, pass_criterion: PassCriterion | None, stop: Stop) -> tuple[int, ...]:
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
    if pass_criterion is None:
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
                           "description", "tune"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {sorted(unknown)}; valid: algo, env, "
                          "config, stop, pass, reference, ci, description, tune")
    for key in ("algo", "env"):
        if key not in data:
            raise ConfigError(f"{path}: missing required key {key!r}")
    try:
        cfg = config_class(data["algo"]).from_dict(data.get("config") or {})
        cfg.set(env=data["env"])
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    stop = Stop.from_dict(data.get("stop"))
    criterion = (PassCriterion.from_dict(path, data["pass"])
                 if data.get("pass") is not None else None)
    reference = (Reference.from_dict(path, data["reference"])
                 if data.get("reference") is not None else None)
    if criterion is not None and reference is not None and \
            criterion.protocol != reference.protocol:
        raise ConfigError(
            f"{path}: pass.metric {criterion.metric} does not measure what the reference "
            f"does (protocol {reference.protocol}); compare like with like: use pass.metric "
            f"{PROTOCOLS[reference.protocol]}")
    tune = parse_tune(path, data["tune"], cfg) if data.get("tune") is not None else None
    return TunedExample(path=path, algo=data["algo"], env=data["env"], config=cfg, stop=stop,
                        pass_criterion=criterion, reference=reference,
                        ci_seeds=_ci_seeds(path, data.get("ci"), criterion, stop), tune=tune,
                        data=data)


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
