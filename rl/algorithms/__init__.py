"""Algorithms: the base loop (``algorithm.py``) and one subpackage per algorithm."""

from rl.algorithms.algorithm import Algorithm
from rl.algorithms.registry import ALGORITHMS, algorithm_class, config_class

__all__ = ["ALGORITHMS", "Algorithm", "algorithm_class", "config_class"]
