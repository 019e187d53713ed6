"""Algorithm registry: names used by configs, the CLI and checkpoints."""

from __future__ import annotations

import difflib
import importlib

__all__ = ["ALGORITHMS", "UnknownAlgorithmError", "algorithm_class", "config_class"]

# name -> (module, algorithm class, config class)
ALGORITHMS: dict[str, tuple[str, str, str]] = {
    "ppo": ("rl.algorithms.ppo", "PPO", "PPOConfig"),
    "impala": ("rl.algorithms.impala", "IMPALA", "IMPALAConfig"),
    "dqn": ("rl.algorithms.dqn", "DQN", "DQNConfig"),
}


class UnknownAlgorithmError(ValueError):
    """An algorithm name that is not registered."""


def _lookup(name: str) -> tuple[str, str, str]:
    key = name.lower()
    if key not in ALGORITHMS:
        close = difflib.get_close_matches(key, list(ALGORITHMS), n=2)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise UnknownAlgorithmError(
            f"unknown algorithm {name!r}{hint} Valid algorithms: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[key]


def algorithm_class(name: str):
    module, cls, _ = _lookup(name)
    return getattr(importlib.import_module(module), cls)


def config_class(name: str):
    module, _, cfg = _lookup(name)
    return getattr(importlib.import_module(module), cfg)
