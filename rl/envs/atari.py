"""Atari preprocessing (Mnih et al. 2015; Machado et al. 2018), from gymnasium's wrappers.

The stack applied to every ``ALE/...`` env, innermost first:

1. gymnasium's ``AtariPreprocessing``: up to 30 no-op resets, frame skip 4 with a max
   over the last two frames, 84x84 greyscale (the base env is made with frameskip=1);
2. ``RealEpisodeStats``: records the true game's return and length in agent steps
   (before reward clipping and life-loss ends) and reports them in
   ``info["rl_episode"]`` when the game ends, so curves show real scores;
3. ``EpisodicLife`` (training only): a life loss ends the episode for the learner,
   while the game itself continues on the next reset;
4. ``FireReset`` for games that need FIRE to start (after every reset, soft or real);
5. sign reward clipping (``TransformReward(np.sign)``, training only);
6. gymnasium's ``FrameStackObservation(4)``: observations ``uint8 [4, 84, 84]``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["EpisodicLife", "FireReset", "RealEpisodeStats", "make_atari"]


class RealEpisodeStats(gym.Wrapper):
    """Reports ``info["rl_episode"] = (return, length)`` at the end of the real game."""

    reports_real_episodes = True

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._return = 0.0
        self._length = 0

    def reset(self, **kwargs):
        self._return, self._length = 0.0, 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._return += float(reward)
        self._length += 1
        if terminated or truncated:
            info = dict(info)
            info["rl_episode"] = (self._return, self._length)
        return obs, reward, terminated, truncated, info


class FireReset(gym.Wrapper):
    """Press FIRE after reset for games that wait for it (Breakout, Pong, ...)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        self.enabled = len(meanings) >= 3 and meanings[1] == "FIRE"

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        if not self.enabled:
            return obs, info
        for action in (1, 2):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        return obs, info


class EpisodicLife(gym.Wrapper):
    """A lost life is a terminal state for learning; the game goes on after reset.

    Real episode statistics come from ``RealEpisodeStats`` below this wrapper.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self.game_over:
            obs, info = self.env.reset(**kwargs)
        else:
            # Continue the same game: one no-op step from the state after the lost life.
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


def make_atari(env_id: str, env_config: dict[str, Any] | None = None,
               training: bool = True) -> gym.Env:
    """An ALE env with the standard preprocessing stack (see the module docstring).

    ``env_config`` keys go to ``gymnasium.make`` (e.g. ``repeat_action_probability``),
    except ``episodic_life`` and ``clip_rewards`` (default: ``training``) and
    ``frame_stack`` (default 4).
    """
    from rl.envs.registry import load_ale

    load_ale()
    cfg = dict(env_config or {})
    episodic_life = cfg.pop("episodic_life", training)
    clip_rewards = cfg.pop("clip_rewards", training)
    frame_stack = int(cfg.pop("frame_stack", 4))
    cfg.setdefault("frameskip", 1)
    env = gym.make(env_id, **cfg)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84,
                                          grayscale_obs=True, scale_obs=False,
                                          terminal_on_life_loss=False)
    env = RealEpisodeStats(env)
    if episodic_life:
        env = EpisodicLife(env)
    env = FireReset(env)
    if clip_rewards:
        env = gym.wrappers.TransformReward(env, lambda r: float(np.sign(r)))
    return gym.wrappers.FrameStackObservation(env, frame_stack)
