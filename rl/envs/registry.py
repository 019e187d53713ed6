"""Env registry and name resolution: from a user's string to an env creator.

Accepted names, in the order they are tried:

1. a name given to ``rl.register_env(name, creator)``;
2. ``package.module:EnvClass`` (or ``:make_env`` function) import paths;
3. an exact gymnasium id (``CartPole-v1``, ``ALE/Pong-v5``);
4. a short name without version, case-insensitive (``CartPole``, ``cartpole``,
   ``ALE/Pong``), which resolves to the highest registered version.

Unknown or ambiguous names raise ``EnvNameError`` listing the closest valid names.

Creating a user's env is wrapped once, here (``EnvSpec.make``), and probing it once, in
``rl.envs.spaces.probe_spaces``: whatever the env's module, constructor, ``reset`` or
spaces raise, or an object that is not a gymnasium env (no ``step``, spaces that are not
``gymnasium.spaces.Space``, ``reset`` not returning ``(obs, info)``), becomes one
``EnvError`` (a ``ConfigError``) naming the env, the call that failed and the cause.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from rl.config import ConfigError, error_line

__all__ = ["EnvError", "EnvNameError", "EnvSpec", "env_call", "register_env",
           "registered_env_names", "resolve_env"]

EnvCreator = Callable[[dict], gym.Env]

_USER_ENVS: dict[str, EnvCreator] = {}
_VERSION_RE = re.compile(r"^(?P<base>.+?)-v(?P<version>\d+)$")
_ALE_LOADED = False


class EnvNameError(ValueError):
    """An env name that cannot be resolved."""


class EnvError(ConfigError):
    """A user's env failed while being created or probed (or is not a gymnasium env);
    the message names the env, the call and the cause."""


@contextlib.contextmanager
def env_call(env_id: str, call: str) -> Iterator[None]:
    """Turn whatever ``call`` (user code of the env ``env_id``) raises into ``EnvError``.

    rl's own one-line errors (a bad name, a bad config) pass through as they are.
    """
    try:
        yield
    except (ConfigError, EnvNameError):
        raise
    except Exception as e:
        raise EnvError(f"env {env_id!r}: {call} raised {error_line(e)}") from e


def check_gym_env(env_id: str, env: Any, call: str) -> None:
    """Raise ``EnvError`` unless ``env`` (what ``call`` returned) looks like a
    single-agent ``gymnasium.Env`` (``reset`` and ``step`` methods, ``Space`` spaces) or
    a PettingZoo env (``rl.envs.multi_agent``)."""
    from rl.envs.multi_agent import is_multi_agent_env

    if is_multi_agent_env(env):
        return
    what = f"{call} returned {type(env).__name__}"
    for method in ("reset", "step"):
        if not callable(getattr(env, method, None)):
            raise EnvError(f"env {env_id!r}: {what}, which is not a gymnasium env: it has no "
                           f"{method}() method (rl trains gymnasium.Env envs and PettingZoo Parallel envs)")
    for attr in ("observation_space", "action_space"):
        with env_call(env_id, f"reading {attr}"):
            space = getattr(env, attr, None)
        if not isinstance(space, gym.spaces.Space):
            kind = "a method" if callable(space) else repr(space)
            raise EnvError(f"env {env_id!r}: {what}, which is not a gymnasium env: its {attr} "
                           f"is {kind}, not a gymnasium.spaces.Space (rl trains gymnasium.Env "
                           "envs and PettingZoo Parallel envs)")


@dataclass(frozen=True)
class EnvSpec:
    """A resolved env: its canonical id and how to create one instance.

    Attributes:
        env_id: the canonical name (gymnasium id, registered name or import path).
        kind: ``"registered"``, ``"import"`` or ``"gymnasium"``.
    """

    env_id: str
    kind: str
    user_creator: EnvCreator | None = field(default=None, compare=False, repr=False)

    def make(self, env_config: dict | None = None, check: bool = False) -> gym.Env:
        """Create one env instance with ``env_config`` (creator argument or
        ``gymnasium.make`` keyword arguments); ``ALE/`` ids get the Atari
        preprocessing of ``rl.envs.atari``. ``check`` keeps gymnasium's passive env
        checker (the driver's probe env uses it; workers skip its per-step wrapper)."""
        env_config = dict(env_config or {})
        if self.kind in ("registered", "import"):
            if self.kind == "registered":
                # The creator travels with the spec, so worker processes need no registry.
                creator = self.user_creator or _USER_ENVS[self.env_id]
                call = f"its creator {_name(creator)}(env_config)"
                make = functools.partial(creator, env_config)
            else:
                target = _import_target(self.env_id)
                by_dict = _takes_config(target)
                call = f"{_name(target)}({'env_config' if by_dict else '**env_config'})"
                make = functools.partial(target, env_config) if by_dict else \
                    functools.partial(target, **env_config)
            with env_call(self.env_id, call):
                env = make()
            check_gym_env(self.env_id, env, call)
            from rl.envs.multi_agent import to_parallel

            return to_parallel(env, self.env_id)
        env_config.setdefault("disable_env_checker", not check)
        if self.kind == "atari":
            from rl.envs.atari import make_atari

            load_ale()
            with env_call(self.env_id, f"making the Atari env {self.env_id!r}"):
                return make_atari(self.env_id, env_config)
        with env_call(self.env_id, f"gymnasium.make({self.env_id!r}, **env_config)"):
            return gym.make(self.env_id, **env_config)

    @property
    def reward_threshold(self) -> float | None:
        if self.kind not in ("gymnasium", "atari"):
            return None
        return gym.spec(self.env_id).reward_threshold


def register_env(name: str, creator: EnvCreator) -> None:
    """Register ``creator(env_config) -> gymnasium.Env`` (or a PettingZoo Parallel env,
    ``rl.envs.multi_agent``) under ``name``.

    The creator is shipped to worker processes with cloudpickle, so lambdas and
    closures work.
    """
    if not callable(creator):
        raise TypeError(f"register_env({name!r}, ...): creator must be callable, got {creator!r}")
    _USER_ENVS[name] = creator


def registered_env_names() -> list[str]:
    """Names added with ``register_env``."""
    return sorted(_USER_ENVS)


def user_env_creators() -> dict[str, EnvCreator]:
    """The registered creators (shipped to worker processes)."""
    return dict(_USER_ENVS)


def load_ale() -> None:
    global _ALE_LOADED
    if _ALE_LOADED:
        return
    try:
        import ale_py
    except ImportError as e:
        raise EnvNameError(
            "Atari envs need the 'atari' extra: pip install 'rl[atari]' (ale-py)"
        ) from e
    gym.register_envs(ale_py)
    _ALE_LOADED = True


def _import_target(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        hint = (" (is it in the current directory or on PYTHONPATH?)"
                if e.name == module_name.split(".")[0] else "")
        raise EnvNameError(f"cannot import module {module_name!r} for env {path!r}: "
                           f"{e}{hint}") from e
    except Exception as e:
        raise EnvError(f"env {path!r}: importing module {module_name!r} raised "
                       f"{error_line(e)}") from e
    try:
        return getattr(module, attr)
    except AttributeError:
        names = [n for n in dir(module) if not n.startswith("_")]
        close = difflib.get_close_matches(attr, names, n=3)
        raise EnvNameError(
            f"module {module_name!r} has no attribute {attr!r}"
            + (f"; did you mean {', '.join(close)}?" if close else "")
        ) from None


def _takes_config(target: Any) -> bool:
    """Env classes take keyword arguments; plain functions take the config dict, unless
    they take no positional argument at all (``make(**kwargs)``, ``make()``)."""
    if isinstance(target, type):
        return False
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                  inspect.Parameter.VAR_POSITIONAL)
    return any(p.kind in positional for p in params)


def _name(target: Any) -> str:
    return getattr(target, "__qualname__", None) or type(target).__name__


def _gym_ids() -> list[str]:
    return list(gym.registry.keys())


def resolve_env(name: str) -> EnvSpec:
    """Resolve a user-given env name; see the module docstring for the rules."""
    if not isinstance(name, str) or not name:
        raise EnvNameError(f"env must be a non-empty string, got {name!r}")
    if name in _USER_ENVS:
        return EnvSpec(name, "registered", _USER_ENVS[name])
    if ":" in name:
        target = _import_target(name)
        if not callable(target):
            raise EnvNameError(f"{name!r} is not a class or function")
        return EnvSpec(name, "import")
    if name.startswith("ALE/"):
        load_ale()
    ids = _gym_ids()
    if name in ids:
        return EnvSpec(name, "atari" if name.startswith("ALE/") else "gymnasium")
    # Short name: match the base name case-insensitively, take the highest version.
    wanted = name.lower()
    candidates: dict[str, list[tuple[int, str]]] = {}
    for env_id in ids:
        m = _VERSION_RE.match(env_id)
        base = m.group("base") if m else env_id
        if base.lower() == wanted or env_id.lower() == wanted:
            version = int(m.group("version")) if m else -1
            candidates.setdefault(base, []).append((version, env_id))
    if len(candidates) == 1:
        (versions,) = candidates.values()
        env_id = max(versions)[1]
        return EnvSpec(env_id, "atari" if env_id.startswith("ALE/") else "gymnasium")
    if len(candidates) > 1:
        options = sorted(max(v)[1] for v in candidates.values())
        raise EnvNameError(f"env name {name!r} is ambiguous; did you mean one of: {', '.join(options)}?")
    pool = ids + list(_USER_ENVS)
    lowered = {p.lower(): p for p in pool}
    close = difflib.get_close_matches(wanted, list(lowered), n=5, cutoff=0.5)
    hint = f" Closest valid names: {', '.join(lowered[c] for c in close)}." if close else ""
    raise EnvNameError(
        f"unknown env {name!r}.{hint} Use a gymnasium id (e.g. CartPole-v1), "
        "'package.module:EnvClass', or a name given to rl.register_env() (from the CLI: "
        "--import the module that registers it)."
    )
