"""The ``tune:`` section of a tuned example: metric, mode, trials and a search space.

::

    tune:
      metric: episode_return_mean   # any result key; or env_steps_to_pass
      mode: max                     # max | min (env_steps_to_pass: min)
      num_samples: 16               # trials (--trials overrides)
      space:                        # config field -> one distribution
        lr: {loguniform: [1.0e-4, 3.0e-3]}
        clip_param: {choice: [0.1, 0.2, 0.3]}
        num_epochs: {int: [4, 20]}
        gae_lambda: {uniform: [0.9, 1.0]}
        minibatch_size: {grid: [64, 128]}

``parse_tune`` checks all of it before anything runs: every field must exist in the
algorithm's config, and every bound or choice must be a value that field accepts (the
same ``AlgorithmConfig.set`` check and message as ``--set``); a range must not be
empty and a ``loguniform`` bound must be > 0. ``suggest`` draws one trial's values
through an Optuna trial, so Optuna's samplers see the real distributions. ``choice``
and ``grid`` are both categorical; under ``--sampler grid`` they (and ``int`` ranges,
enumerated) make the grid, and a continuous range is an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rl.config import AlgorithmConfig, ConfigError

__all__ = ["DISTRIBUTIONS", "ENV_STEPS_TO_PASS", "Dist", "TuneSpec", "grid_space", "parse_tune",
           "suggest"]

ENV_STEPS_TO_PASS = "env_steps_to_pass"
DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice", "grid")
EXAMPLE = "lr: {loguniform: [1.0e-4, 3.0e-3]}"


@dataclass(frozen=True)
class Dist:
    """One field's distribution: ``kind`` (``DISTRIBUTIONS``) and its bounds or values."""

    kind: str
    values: tuple

    def to_dict(self) -> dict[str, list]:
        return {self.kind: list(self.values)}


@dataclass
class TuneSpec:
    """A validated ``tune:`` section."""

    metric: str
    mode: str
    num_samples: int
    space: dict[str, Dist] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "mode": self.mode, "num_samples": self.num_samples,
                "space": {k: d.to_dict() for k, d in self.space.items()}}


def parse_tune(path: str, data: Any, config: AlgorithmConfig) -> TuneSpec:
    """Validate a ``tune:`` mapping against ``config``'s fields (errors name ``path``)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: tune must be a mapping with metric, mode, num_samples and "
                          f"space; got {data!r}")
    valid = ("metric", "mode", "num_samples", "space")
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ConfigError(f"{path}: unknown tune keys {unknown}; valid: {', '.join(valid)}")
    metric = data.get("metric", "episode_return_mean")
    if not isinstance(metric, str) or not metric:
        raise ConfigError(f"{path}: tune.metric must be a result key (e.g. "
                          f"episode_return_mean) or {ENV_STEPS_TO_PASS}; got {metric!r}")
    mode = data.get("mode", "min" if metric == ENV_STEPS_TO_PASS else "max")
    if mode not in ("max", "min"):
        raise ConfigError(f"{path}: tune.mode must be max or min; got {mode!r}")
    if metric == ENV_STEPS_TO_PASS and mode != "min":
        raise ConfigError(f"{path}: tune.metric {ENV_STEPS_TO_PASS} is minimised: mode must "
                          "be min (or left out)")
    num = data.get("num_samples", 16)
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ConfigError(f"{path}: tune.num_samples must be a whole number >= 1; got {num!r}")
    space = data.get("space")
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{path}: tune.space must map config fields to distributions "
                          f"(e.g. space: {{{EXAMPLE}}}); got {space!r}")
    return TuneSpec(metric=metric, mode=mode, num_samples=num,
                    space={name: _dist(path, name, d, config) for name, d in space.items()})


def _dist(path: str, name: str, d: Any, config: AlgorithmConfig) -> Dist:
    where = f"{path}: tune.space.{name}"
    if name not in config.field_names():
        raise ConfigError(f"{path}: tune.space: {config.unknown_key_error(name)}")
    if not isinstance(d, dict) or len(d) != 1:
        raise ConfigError(f"{where} must be one distribution, {{KIND: VALUES}} with KIND one "
                          f"of {', '.join(DISTRIBUTIONS)} (e.g. {EXAMPLE}); got {d!r}")
    ((kind, values),) = d.items()
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: unknown distribution {kind!r}; valid: "
                          f"{', '.join(DISTRIBUTIONS)}")
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: {kind} takes a non-empty list (e.g. {EXAMPLE}); "
                          f"got {values!r}")
    if kind in ("uniform", "loguniform", "int"):
        if len(values) != 2:
            raise ConfigError(f"{where}: {kind} takes [low, high]; got {values!r}")
        number = int if kind == "int" else (int, float)
        if not all(isinstance(v, number) and not isinstance(v, bool) for v in values):
            what = "whole numbers" if kind == "int" else "numbers"
            raise ConfigError(f"{where}: {kind} bounds must be {what}; got {values!r}")
        lo, hi = values
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
            raise ConfigError(f"{where}: {kind} [{lo}, {hi}] is an empty range: low must be "
                              "below high")
        if kind == "loguniform" and lo <= 0:
            raise ConfigError(f"{where}: loguniform bounds must be > 0; got [{lo}, {hi}]")
        values = [float(v) for v in values] if kind != "int" else values
    elif len(set(map(repr, values))) != len(values):
        raise ConfigError(f"{where}: {kind} lists a value twice: {values!r}")
    elif not all(v is None or isinstance(v, bool | int | float | str) for v in values):
        raise ConfigError(f"{where}: {kind} values must be numbers, strings, booleans or "
                          f"null; got {values!r}")
    for value in values:  # every bound and choice is a value the field itself accepts
        try:
            config.copy().set(**{name: value})
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    return Dist(kind=kind, values=tuple(values))


def suggest(trial, spec: TuneSpec) -> dict[str, Any]:
    """One trial's values, drawn through the Optuna ``trial``."""
    params: dict[str, Any] = {}
    for name, d in spec.space.items():
        if d.kind == "uniform":
            params[name] = trial.suggest_float(name, *d.values)
        elif d.kind == "loguniform":
            params[name] = trial.suggest_float(name, *d.values, log=True)
        elif d.kind == "int":
            params[name] = trial.suggest_int(name, *d.values)
        else:
            params[name] = trial.suggest_categorical(name, list(d.values))
    return params


def grid_space(path: str, spec: TuneSpec) -> dict[str, list]:
    """The grid of ``--sampler grid``: every ``choice``/``grid`` list, ``int`` ranges
    enumerated; a continuous range has no grid."""
    out: dict[str, list] = {}
    for name, d in spec.space.items():
        if d.kind in ("uniform", "loguniform"):
            raise ConfigError(f"{path}: tune.space.{name} is a continuous {d.kind} range: "
                              "--sampler grid needs choice, grid or int for every field")
        out[name] = list(range(d.values[0], d.values[1] + 1)) if d.kind == "int" \
            else list(d.values)
    return out
