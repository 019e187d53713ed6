"""Callbacks: user hooks into episodes (in the rollout workers) and into training (in
the driver), and the custom metrics they record.

Subclass ``Callbacks``, override the hooks you need, and name the class in the config
(``callbacks_class="mypkg.mycallbacks:MyCallbacks"``)::

    class EpisodeStats(rl.Callbacks):
        def on_episode_step(self, episode, env_index, info):
            episode.user_data.setdefault("speed", []).append(abs(info["velocity"]))

        def on_episode_end(self, episode, env_index, info):
            episode.custom_metrics["max_speed"] = max(episode.user_data["speed"])

Worker-side hooks run in every rollout worker, on its own instance, for every episode
of its training sub-envs (not for evaluation episodes): ``on_episode_start(episode,
env_index)`` after each reset, ``on_episode_step(episode, env_index, info)`` after
each step, ``on_episode_end(episode, env_index, info)`` when the episode terminates or
is truncated (an episode a failing sub-env broke ends without it). ``env_index`` is the
sub-env's global index across all workers. A hook that is not overridden is never
called: the per-step loop does not even look it up (``EpisodeHooks``).

Driver-side hooks run in the training process on the driver's instance:
``on_algorithm_init(algorithm)``, ``on_train_result(algorithm, result)`` (may add keys
to ``result`` before it is logged), ``on_evaluate_end(algorithm, result)`` (likewise
for the ``eval/`` metrics) and ``on_checkpoint(algorithm, path)``.

Every value put in ``episode.custom_metrics`` reaches the iteration's result (and
``result.jsonl`` and TensorBoard) as ``custom/<name>_mean``, ``custom/<name>_min`` and
``custom/<name>_max`` over the episodes that ended in that iteration.

A hook that raises stops training: the error becomes a ``CallbackError`` naming the
hook and carrying the user's traceback, never retried (a worker whose hook raised is
not restarted); ``rl train`` prints it and exits 1.
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING, Any

from rl.config import ConfigError, error_line
from rl.imports import import_attr

if TYPE_CHECKING:
    from rl.algorithms.algorithm import Algorithm

__all__ = ["CallbackError", "Callbacks", "Episode", "EpisodeHooks", "call_hook",
           "resolve_callbacks_class"]

WORKER_HOOKS = ("on_episode_start", "on_episode_step", "on_episode_end")


class Episode:
    """One running episode as the worker-side hooks see it.

    Attributes:
        length: steps taken so far.
        total_reward: the sum of its rewards so far.
        custom_metrics: name -> float, filled by the user; reported when it ends.
        user_data: anything the user keeps for the episode (dropped when it ends).
    """

    __slots__ = ("custom_metrics", "length", "total_reward", "user_data")

    def __init__(self) -> None:
        self.length = 0
        self.total_reward = 0.0
        self.custom_metrics: dict[str, float] = {}
        self.user_data: dict[str, Any] = {}

    def __repr__(self) -> str:
        return (f"Episode(length={self.length}, total_reward={self.total_reward:g}, "
                f"custom_metrics={self.custom_metrics})")


class Callbacks:
    """Base class of user callbacks; every hook is a no-op. See the module docstring."""

    def on_episode_start(self, episode: Episode, env_index: int) -> None:
        """A sub-env was reset: ``episode`` is new (length 0)."""

    def on_episode_step(self, episode: Episode, env_index: int, info: dict) -> None:
        """The sub-env stepped; ``episode.length`` and ``total_reward`` include the step."""

    def on_episode_end(self, episode: Episode, env_index: int, info: dict) -> None:
        """The episode terminated or was truncated; ``info`` is its last step's."""

    def on_algorithm_init(self, algorithm: Algorithm) -> None:
        """The algorithm was built: its workers and learners run."""

    def on_train_result(self, algorithm: Algorithm, result: dict[str, Any]) -> None:
        """An iteration ended; keys added to ``result`` are logged with it."""

    def on_evaluate_end(self, algorithm: Algorithm, result: dict[str, Any]) -> None:
        """An evaluation ended; keys added to ``result`` are logged with it."""

    def on_checkpoint(self, algorithm: Algorithm, path: str) -> None:
        """A checkpoint was written at ``path``."""


class CallbackError(RuntimeError):
    """A user's hook raised. Training stops; it is never retried.

    Attributes:
        hook: ``"Class.method"``.
        user_traceback: the formatted traceback of the user's code.
    """

    def __init__(self, hook: str, error: str, user_traceback: str):
        super().__init__(f"callback {hook} raised {error}\n{user_traceback.rstrip()}")
        self.hook = hook
        self.error = error
        self.user_traceback = user_traceback

    def __reduce__(self):
        return (type(self), (self.hook, self.error, self.user_traceback))


def call_hook(callbacks: Callbacks, name: str, *args: Any) -> None:
    """``callbacks.<name>(*args)``; any exception becomes a ``CallbackError``."""
    try:
        getattr(callbacks, name)(*args)
    except Exception as e:
        tb = e.__traceback__
        frames = traceback.format_exception(type(e), e, tb.tb_next if tb is not None else None)
        raise CallbackError(f"{type(callbacks).__name__}.{name}", error_line(e),
                            "".join(frames)) from e


def overrides(callbacks: Callbacks, name: str) -> bool:
    """Whether ``callbacks``' class overrides hook ``name`` of the base class."""
    return getattr(type(callbacks), name) is not getattr(Callbacks, name)


def resolve_callbacks_class(name: str) -> type[Callbacks]:
    """The class a ``callbacks_class`` string (``module:Class``) names.

    Raises:
        ConfigError: not ``module:Class``, not importable, or not a ``Callbacks`` subclass.
    """
    if ":" not in name:
        raise ConfigError(f"callbacks_class must be 'package.module:Class', got {name!r}")
    cls = import_attr(name, "callbacks_class")
    if not (isinstance(cls, type) and issubclass(cls, Callbacks)):
        what = "not found" if cls is None else f"{cls!r}, not a subclass of rl.Callbacks"
        raise ConfigError(f"callbacks_class {name!r}: {what}")
    return cls


class EpisodeHooks:
    """The worker-side hooks of one ``Callbacks`` instance, for the sub-envs of a vector
    env: one ``Episode`` per sub-env, the custom metrics of the episodes that ended.

    ``on_step`` is None unless ``on_episode_step`` is overridden, so the vector env's
    loop pays one ``is None`` test per sub-env step for it and nothing more.
    """

    def __init__(self, callbacks: Callbacks, num_envs: int, first_index: int):
        self.callbacks = callbacks
        self.first_index = first_index
        self.episodes = [Episode() for _ in range(num_envs)]
        self._start = overrides(callbacks, "on_episode_start")
        self._end = overrides(callbacks, "on_episode_end")
        self.on_step = self._step if overrides(callbacks, "on_episode_step") else None
        self.finished: dict[str, list[float]] = {}

    def start(self, i: int) -> None:
        """Sub-env ``i`` was reset: a new episode."""
        episode = self.episodes[i] = Episode()
        if self._start:
            call_hook(self.callbacks, "on_episode_start", episode, self.first_index + i)

    def _step(self, i: int, total_reward: float, length: int, info: dict) -> None:
        episode = self.episodes[i]
        episode.total_reward, episode.length = float(total_reward), int(length)
        call_hook(self.callbacks, "on_episode_step", episode, self.first_index + i, info)

    def end(self, i: int, total_reward: float, length: int, info: dict) -> None:
        """Sub-env ``i``'s episode ended (before its reset)."""
        episode = self.episodes[i]
        episode.total_reward, episode.length = float(total_reward), int(length)
        if self._end:
            call_hook(self.callbacks, "on_episode_end", episode, self.first_index + i, info)
        for key, value in episode.custom_metrics.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise CallbackError(
                    f"{type(self.callbacks).__name__}.on_episode_end", "TypeError: "
                    f"custom_metrics[{key!r}] = {value!r} is not a number",
                    "custom metrics must be floats (or convertible to float)\n") from None
            self.finished.setdefault(str(key), []).append(number)

    def drain(self) -> dict[str, list[float]]:
        """The custom metrics of the episodes that ended since the last drain."""
        out, self.finished = self.finished, {}
        return out
