"""``import_attr``: the object a ``"package.module:attr"`` setting names, with the error
every such setting raises (``callbacks_class``, ``policy_mapping_fn``, ``model_class``)."""

from __future__ import annotations

import importlib
from typing import Any

from rl.config_fields import ConfigError

__all__ = ["LazyClass", "import_attr"]


def import_attr(name: str, setting: str, error: type[Exception] = ConfigError,
                hint: str = "") -> Any:
    """Import ``module`` and return ``attr`` (dotted: ``Outer.Inner``) of
    ``"module:attr"``, or None where the module lacks it.

    Raises:
        ``error``: the module does not import (the user's module may raise anything
            while importing), its message naming ``setting``, ``name`` and ``hint``.
    """
    module_name, _, attr = name.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as e:
        from rl.config import error_line

        raise error(f"{setting} {name!r}: cannot import {module_name!r} ({error_line(e)})"
                    f"{hint}") from e
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


class LazyClass:
    """A class attribute that names a class as ``"module:Class"`` and imports it on
    first read: ``learner_class = LazyClass("rl.algorithms.ppo.learner:PPOLearner")``
    keeps torch (which every learner imports) off the algorithm module's import. A
    subclass may still assign the class itself."""

    def __init__(self, path: str):
        self.path = path

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        module, _, name = self.path.partition(":")
        return getattr(importlib.import_module(module), name)
