"""Algorithm registry: the names used by configs, the CLI and checkpoints.

It maps a name to its algorithm class, and only that: each algorithm names its own
config (``Algorithm.config_class``), and a config's ``algo_name`` is the key back here.
"""

from __future__ import annotations

import difflib
import importlib

__all__ = ["ALGORITHMS", "UnknownAlgorithmError", "algorithm_class", "config_class"]

# name -> (module, algorithm class); imported on first use (each pulls in torch).
ALGORITHMS: dict[str, tuple[str, str]] = {
    "ppo": ("rl.algorithms.ppo", "PPO"),
    "impala": ("rl.algorithms.impala", "IMPALA"),
    "dqn": ("rl.algorithms.dqn", "DQN"),
    "sac": ("rl.algorithms.sac", "SAC"),
}


class UnknownAlgorithmError(ValueError):
    """An algorithm name that is not registered."""


def algorithm_class(name: str):
    """The algorithm class registered as ``name`` (case-insensitive)."""
    key = name.lower()
    if key not in ALGORITHMS:
        close = difflib.get_close_matches(key, list(ALGORITHMS), n=2)
        hint = f"; did you mean {close[0]}?" if close else "."
        raise UnknownAlgorithmError(
            f"unknown algorithm {name!r}{hint} Valid algorithms: {', '.join(ALGORITHMS)}")
    module, cls = ALGORITHMS[key]
    return getattr(importlib.import_module(module), cls)


def config_class(name: str):
    """The config class of the algorithm registered as ``name``."""
    return algorithm_class(name).config_class
