"""One config field: its metadata and the values it takes.

A field is declared with ``setting(default, doc, section=..., min=..., max=...,
choices=..., check=...)``. That metadata is the one source of truth about what the
field accepts: ``check_value()`` enforces it (every builder call, ``set()``,
``from_dict()``, ``from_yaml()``, ``validate()`` and ``--set`` go through it) and
``valid_values()`` describes it (``rl train --help-config``), so the help and the
error message cannot drift apart. A check here looks at one value alone; rules
between fields belong to ``AlgorithmConfig.validate()``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import decimal
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Check", "ConfigError", "check_value", "coerce", "parse_number", "setting",
           "valid_values"]


class ConfigError(ValueError):
    """A config key or value that is not valid; the message says what is."""


@dataclass(frozen=True)
class Check:
    """A rule on one field's value that bounds and choices cannot state.

    Attributes:
        ok: whether a (type-checked, non-null) value is valid.
        text: what is valid, completing "NAME must be ...": the error message says
            ``f"{name} must be {text}, got {value!r}"`` and ``--help-config`` prints it.
    """

    ok: Callable[[Any], bool]
    text: str


def setting(default: Any, doc: str, *, choices: tuple | None = None, section: str = "training",
            min: float | None = None, max: float | None = None,  # noqa: A002
            check: Check | None = None) -> Any:
    """A config field with its doc line, builder section and constraints (``min`` and
    ``max`` inclusive; ``choices`` the only values allowed; ``check`` any other rule on
    the value alone). A null value, where the type allows it, is always valid."""
    meta = {"doc": doc, "choices": choices, "section": section, "min": min, "max": max,
            "check": check}
    if isinstance(default, list | dict):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def check_value(name: str, tp: Any, meta: Mapping[str, Any], value: Any) -> Any:
    """``value`` for the field ``name`` (annotation ``tp``, ``setting`` metadata ``meta``):
    coerced to the type, then checked against the choices, the check and the bounds.

    Raises:
        ConfigError: the value is not valid, saying what is.
    """
    value = coerce(name, tp, value)
    if value is None:
        return None
    choices, check = meta.get("choices"), meta.get("check")
    if choices and value not in choices:
        raise ConfigError(f"{name}={value!r} is not valid; choose one of: "
                          f"{', '.join(map(str, choices))}")
    if check is not None and not check.ok(value):
        raise ConfigError(f"{name} must be {check.text}, got {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        lo, hi = meta.get("min"), meta.get("max")
        if lo is not None and value < lo:
            raise ConfigError(f"{name} must be >= {lo}, got {value}")
        if hi is not None and value > hi:
            raise ConfigError(f"{name} must be <= {hi}, got {value}")
    return value


def valid_values(f: dataclasses.Field, tp: Any) -> str:
    """What the field ``f`` (annotation ``tp``) accepts, in words, from the same metadata
    ``check_value`` enforces: ``float in [0.0, 1.0]``, ``one of: tanh, relu``, ..."""
    meta = f.metadata
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union,
                                                            types.UnionType) else (tp,)
    nullable = type(None) in args
    kinds = " or ".join(_type_text(a) for a in args if a is not type(None))
    lo, hi = meta.get("min"), meta.get("max")
    if meta.get("choices"):
        text = f"one of: {', '.join(map(str, meta['choices']))}"
    elif meta.get("check") is not None:
        text = meta["check"].text
    elif lo is not None and hi is not None:
        text = f"{kinds} in [{lo}, {hi}]"
    elif lo is not None:
        text = f"{kinds} >= {lo}"
    elif hi is not None:
        text = f"{kinds} <= {hi}"
    else:
        return f"{kinds} or null" if nullable else kinds
    return f"{text}, or null" if nullable else text


def _type_text(tp: Any) -> str:
    if tp is bool:
        return "true or false"
    if tp is dict or typing.get_origin(tp) is dict:
        return "mapping"
    if tp is list or typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp) or (Any,)
        return f"list of {_type_text(item)}"
    return _type_name(tp)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


_MULTIPLIERS = {"k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}


def parse_number(text: str, integer: bool = False) -> int | float:
    """A number as people type it: ``100000``, ``1e5``, ``100_000``, ``100k``, ``2.5M``
    (k = 10^3, M = 10^6, G or B = 10^9; case-insensitive).

    Raises:
        ValueError: not a number, or (with ``integer``) not a whole one.
    """
    t = text.strip().replace("_", "")
    mult = 1
    if t[-1:].lower() in _MULTIPLIERS and t[:-1]:
        mult, t = _MULTIPLIERS[t[-1].lower()], t[:-1]
    # Exact decimal arithmetic: in binary floating point 4.1 * 10**6 is 4099999.9999999995,
    # so "4.1M" would not be a whole number.
    try:
        exact = decimal.Decimal(t) * mult
    except decimal.InvalidOperation:
        raise ValueError(f"{text!r} is not a number") from None
    if not exact.is_finite():
        raise ValueError(f"{text!r} is not a finite number")
    if integer:
        if exact != exact.to_integral_value():
            raise ValueError(f"{text!r} is not a whole number")
        return int(exact)
    value = float(exact)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def coerce(name: str, tp: Any, value: Any) -> Any:
    """Check ``value`` against the annotation ``tp``: int -> float, and numbers written
    as text (``"1e5"``, ``"100k"``, which YAML and the command line hand over as
    strings) -> int or float."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            with contextlib.suppress(ConfigError):
                return coerce(name, arg, value)
        raise ConfigError(f"{name}: expected {_type_name(tp)}, got {value!r}")
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return parse_number(value, integer=True)
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return parse_number(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is list or tp is list:
        if isinstance(value, list | tuple):
            (item,) = typing.get_args(tp) or (Any,)
            return [coerce(f"{name}[{i}]", item, v) for i, v in enumerate(value)]
    elif origin is dict or tp is dict:
        if isinstance(value, dict):
            return dict(value)
    raise ConfigError(f"{name}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
