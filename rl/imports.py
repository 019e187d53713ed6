"""``import_attr``: the object a ``"package.module:attr"`` setting names, with the error
every such setting raises (``callbacks_class``, ``policy_mapping_fn``, ``model_class``)."""

from __future__ import annotations

import importlib
from typing import Any

from rl.config_fields import ConfigError

__all__ = ["import_attr"]


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
