"""Envs that render for people: MP4s of episodes, or a window.

``RenderingEnvFactory`` is ``env_factory`` with a render mode, for a ``VectorEnv``
that evaluates:

* ``"rgb_array"`` with a ``video_dir``: each sub-env is wrapped in gymnasium's
  ``RecordVideo``, which writes ``<env>-env<i>-episode-<k>.mp4`` for the first
  ``episodes[i]`` episodes of sub-env ``i`` (the episodes an evaluation counts).
  Writing MP4s needs moviepy, which brings ffmpeg as the imageio-ffmpeg wheel; the
  classic-control envs draw their frames with pygame: the ``rl[video]`` extra has both.
* ``"human"``: the env draws itself in a window, which needs a display.

The render mode reaches the env through its creation: a ``gymnasium.make`` keyword,
an env class's constructor argument, or ``env_config["render_mode"]`` for a creator
given to ``rl.register_env`` (which must pass it on). What cannot render that way is a
``ConfigError`` naming the env, before any episode runs; so is a missing package
(``rendering_errors``).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence

import gymnasium as gym

from rl.config import ConfigError
from rl.envs import EnvError, EnvSpec, make_env

__all__ = ["VIDEO_EXTRA", "RenderingEnvFactory", "has_display", "rendering_errors"]

VIDEO_EXTRA = "pip install 'rl[video]'"

# pygame greets on import, on stdout: that would land in `rl evaluate --json`'s output.
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")


def has_display() -> bool:
    """Whether a window can be opened: always on macOS and Windows; on Linux and the
    other Unixes only with an X11 or Wayland display."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class RenderingEnvFactory:
    """Creates the sub-envs of an evaluation's ``VectorEnv`` with ``render_mode``.

    Args:
        spec: the env.
        env_config: its config (``render_mode`` is set on a copy).
        render_mode: ``"rgb_array"`` (with ``video_dir``) or ``"human"``.
        video_dir: where the MP4s go (created); None: no recording.
        episodes: per sub-env, in creation order, how many of its first episodes to
            record (with ``video_dir``).
    """

    def __init__(self, spec: EnvSpec, env_config: dict, render_mode: str,
                 video_dir: str | None = None, episodes: Sequence[int] = ()):
        if render_mode not in ("rgb_array", "human"):
            raise ValueError(f"render_mode must be rgb_array or human, got {render_mode!r}")
        if video_dir is not None and render_mode != "rgb_array":
            raise ValueError("videos are recorded from rgb_array frames")
        if render_mode == "human" and not has_display():
            raise ConfigError(f"cannot show {spec.env_id} in a window: there is no display "
                              "(neither DISPLAY nor WAYLAND_DISPLAY is set); record videos "
                              "instead (rl evaluate --video DIR)")
        if render_mode == "rgb_array" and not has_display():
            # Frames need only off-screen surfaces; without this SDL (under pygame)
            # probes for a display and prints its failure to stderr.
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        if video_dir is not None:
            try:
                import moviepy  # noqa: F401
            except ImportError:
                raise ConfigError(f"recording videos needs moviepy: {VIDEO_EXTRA}") from None
            os.makedirs(video_dir, exist_ok=True)
        self.spec = spec
        self.env_config = {**env_config, "render_mode": render_mode}
        self.render_mode = render_mode
        self.video_dir = video_dir
        self.episodes = list(episodes)
        # The env's name, made safe for a file name (import paths hold ':').
        self.name_prefix = re.sub(r"[^A-Za-z0-9._-]+", "-", spec.env_id).strip("-")
        self.created = 0

    def __call__(self) -> gym.Env:
        index, self.created = self.created, self.created + 1
        env_id, mode = self.spec.env_id, self.render_mode
        try:
            env = make_env(self.spec, self.env_config)
        except EnvError as e:  # the env's own failure, wrapped by make_env
            cause = e.__cause__
            if isinstance(cause, gym.error.DependencyNotInstalled):
                raise cause from None  # rendering_errors names the extra to install
            if not isinstance(cause, TypeError | gym.error.Error):
                raise
            raise ConfigError(f"env {env_id} cannot be created with render_mode={mode!r}: "
                              f"{type(cause).__name__}: {cause}") from cause
        if env.render_mode != mode:
            env.close()
            hint = (" (a creator given to rl.register_env must pass env_config['render_mode'] "
                    "on to the env)" if self.spec.kind == "registered" else "")
            raise ConfigError(f"env {env_id} does not render {mode!r} frames: asked for "
                              f"render_mode={mode!r}, it has {env.render_mode!r}{hint}")
        if self.video_dir is None:
            return env
        quota = self.episodes[index] if index < len(self.episodes) else 0
        # Every sub-env's recorder shares the folder; gymnasium warns about that folder
        # existing, which here is by design.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Overwriting existing videos")
            return gym.wrappers.RecordVideo(
                env, self.video_dir, episode_trigger=lambda episode: episode < quota,
                name_prefix=f"{self.name_prefix}-env{index}", disable_logger=True)


@contextlib.contextmanager
def rendering_errors(env_id: str) -> Iterator[None]:
    """Turn the errors of rendering without its packages, or without a usable window,
    into one ``ConfigError`` naming the env."""
    try:
        yield
    except gym.error.DependencyNotInstalled as e:
        raise ConfigError(f"rendering {env_id} needs a package that is not installed: {e} "
                          f"(the classic-control envs draw with pygame: {VIDEO_EXTRA})") from e
    except Exception as e:
        # pygame reports a display it cannot open as pygame.error, from reset or step.
        if type(e).__module__.startswith("pygame") and "video" in str(e).lower():
            raise ConfigError(f"cannot show {env_id} in a window: {e}") from e
        raise
