"""The tests' toy envs, in one module that worker processes import by path.

Configs name them as ``"tests.toy_envs:ClassName"`` (``env_config`` reaches the
constructor), so a process or Ray worker builds the same env as the driver.

* Spaces: ``MultiDiscreteEnv`` (Dict observation, MultiDiscrete actions),
  ``MatchBitsEnv`` (Box observation, MultiDiscrete actions), ``MultiBinaryActionEnv``
  (an action space no algorithm supports), ``ConfigurableEnv`` (a Box of
  ``env_config["size"]``), ``SpaceEnv`` (any supported observation space, by name in
  ``OBS_SPACES``, with a Discrete, Box or MultiDiscrete action).
* Images: ``ImageEnv`` (84x84x4 uint8), ``FlashEnv`` (36x36x3 uint8, the smallest frame
  the Nature CNN takes).
* Exact rollouts: ``ScriptedEnv`` (obs = [episode id, t], reward = t).
* Signalling: ``MarkingCartPole`` (CartPole that, once a test creates
  ``$RL_TEST_ARM``, creates ``$RL_TEST_MARK`` from inside a ``step``).
* Failures on purpose: ``FlakyCartPole``, ``HangingCartPole``, ``FlakyResetCartPole``,
  ``NoisyResetEnv``.
* Not gymnasium envs (each must be one clear error): ``RaisingConstructorEnv``,
  ``RaisingResetEnv``, ``OldApiResetEnv`` (``reset`` returns the observation alone),
  ``WrongShapeEnv``, ``NoStepEnv`` (no ``step``).
* ``make_parallel_env``: a PettingZoo-like multi-agent env (spaces are methods of an
  agent, ``reset`` returns dicts) without ``agents``: an incomplete Parallel API.
"""

from __future__ import annotations

import os
import time

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control import CartPoleEnv

# ----------------------------------------------------------------------------- spaces


class _MatchTargetEnv(gym.Env):
    """Reward 1 when the (MultiDiscrete) action matches the target that the subclass's
    ``_obs()`` drew (and stored in ``self.target``); truncated after ``horizon`` steps."""

    def __init__(self, horizon: int):
        self.horizon = horizon

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        reward = float(np.all(np.asarray(action) == self.target))
        self.t += 1
        return self._obs(), reward, False, self.t >= self.horizon, {}


class MultiDiscreteEnv(_MatchTargetEnv):
    """Dict observations; the target is two observed bits (beside noise)."""

    def __init__(self, horizon: int = 20):
        super().__init__(horizon)
        self.observation_space = gym.spaces.Dict({
            "target": gym.spaces.MultiBinary(2),
            "noise": gym.spaces.Box(-1, 1, (2,), np.float32),
        })
        self.action_space = gym.spaces.MultiDiscrete([2, 2])

    def _obs(self):
        self.target = self.np_random.integers(0, 2, 2).astype(np.int8)
        return {"target": self.target, "noise": self.np_random.uniform(-1, 1, 2).astype(np.float32)}


class MatchBitsEnv(_MatchTargetEnv):
    """MultiDiscrete([2, 3]) actions matching the two observed targets."""

    def __init__(self, horizon: int = 8):
        super().__init__(horizon)
        self.observation_space = gym.spaces.Box(0.0, 2.0, (2,), np.float32)
        self.action_space = gym.spaces.MultiDiscrete([2, 3])

    def _obs(self):
        self.target = np.array([self.np_random.integers(2), self.np_random.integers(3)])
        return self.target.astype(np.float32)


class MultiBinaryActionEnv(gym.Env):
    """An action space no algorithm supports."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.MultiBinary(3)

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, True, False, {}


class ConfigurableEnv(gym.Env):
    """A Box observation of ``size`` zeros; every episode is one step of reward 1."""

    def __init__(self, size: int = 3):
        self.observation_space = gym.spaces.Box(-1, 1, (size,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(self.observation_space.shape, np.float32), {}

    def step(self, action):
        return np.zeros(self.observation_space.shape, np.float32), 1.0, True, False, {}


def _obs_spaces() -> dict[str, gym.Space]:
    box, disc = gym.spaces.Box, gym.spaces.Discrete
    return {
        "box": box(-1, 1, (3,), np.float32),
        "box_2d": box(-1, 1, (3, 2), np.float32),
        "image": box(0, 255, (36, 36, 3), np.uint8),
        "discrete": disc(5, start=2),
        "multidiscrete": gym.spaces.MultiDiscrete([3, 4]),
        "multibinary": gym.spaces.MultiBinary(3),
        "tuple": gym.spaces.Tuple((disc(3), box(0, 1, (2, 2), np.float32))),
        "dict": gym.spaces.Dict({
            "pos": box(-1, 1, (2,), np.float32), "flags": gym.spaces.MultiBinary(2),
            "inner": gym.spaces.Tuple((disc(2), gym.spaces.MultiDiscrete([2, 3]))),
        }),
    }


OBS_SPACES = tuple(_obs_spaces())
"""The observation spaces ``SpaceEnv`` offers: every kind rl supports."""


class SpaceEnv(gym.Env):
    """Observations sampled from the space named ``obs`` (see ``OBS_SPACES``); actions
    ``"discrete"``, ``"box"`` or ``"multidiscrete"``; reward 1 a step, 8 steps."""

    def __init__(self, obs: str = "dict", action: str = "discrete"):
        self.observation_space = _obs_spaces()[obs]
        self.action_space = {"discrete": gym.spaces.Discrete(3),
                             "box": gym.spaces.Box(-2, 2, (2,), np.float32),
                             "multidiscrete": gym.spaces.MultiDiscrete([2, 3])}[action]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.observation_space.seed(seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        return self.observation_space.sample(), 1.0, False, self.t >= 8, {}


# ----------------------------------------------------------------------------- images


class ImageEnv(gym.Env):
    """84x84x4 uint8 frames; reward for action 1 when the frame is bright."""

    observation_space = gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._frame(), {}

    def _frame(self):
        self.bright = bool(self.np_random.integers(0, 2))
        return np.full((84, 84, 4), 200 if self.bright else 20, np.uint8)

    def step(self, action):
        reward = float(int(action) == int(self.bright))
        self.t += 1
        return self._frame(), reward, False, self.t >= 10, {}


class FlashEnv(gym.Env):
    """36x36x3 uint8 frames; reward for action 1 on a bright frame; terminates with
    probability 0.1, else truncates after ``horizon`` steps."""

    observation_space = gym.spaces.Box(0, 255, (36, 36, 3), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, horizon: int = 6):
        self.horizon = horizon

    def _frame(self):
        self.bright = bool(self.np_random.integers(2))
        return np.full((36, 36, 3), 220 if self.bright else 30, np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._frame(), {}

    def step(self, action):
        reward = float(int(action) == int(self.bright))
        self.t += 1
        terminated = bool(self.np_random.random() < 0.1)
        return self._frame(), reward, terminated, not terminated and self.t >= self.horizon, {}


# ----------------------------------------------------------------------------- exact rollouts


class ScriptedEnv(gym.Env):
    """obs = [episode id, t], reward = t (after the step), info = {"t": t}, for exact
    rollout tests.

    Episode e lasts ``lengths[e % len(lengths)]`` steps and then terminates, unless a
    time limit (``max_steps``) truncates it first. ``reset(seed=s)`` starts episode
    ``100 * s``.
    """

    def __init__(self, lengths=(3, 5), max_steps=None):
        self.lengths = tuple(lengths)
        self.max_steps = max_steps
        self.observation_space = gym.spaces.Box(-1e6, 1e6, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.episode = -1
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.episode = seed * 100 - 1
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return np.array([self.episode, self.t], np.float32)

    def step(self, action):
        self.t += 1
        length = self.lengths[self.episode % len(self.lengths)]
        terminated = self.t >= length
        truncated = not terminated and self.max_steps is not None and self.t >= self.max_steps
        return self._obs(), float(self.t), terminated, truncated, {"t": self.t}


# ----------------------------------------------------------------------------- signalling


class MarkingCartPole(CartPoleEnv):
    """CartPole that tells a test it is mid-sample: once the file ``$RL_TEST_ARM``
    exists, a ``step`` creates ``$RL_TEST_MARK`` (a worker is inside an iteration)."""

    def step(self, action):
        arm, mark = os.environ.get("RL_TEST_ARM"), os.environ.get("RL_TEST_MARK")
        if arm and mark and os.path.exists(arm) and not os.path.exists(mark):
            open(mark, "w").close()
        return super().step(action)


# ----------------------------------------------------------------------------- failures


class FlakyCartPole(CartPoleEnv):
    """CartPole whose ``step`` raises every ``fail_every`` steps of an instance."""

    def __init__(self, fail_every: int = 20, message: str = "simulator lost its connection"):
        super().__init__()
        self.fail_every = fail_every
        self.message = message
        self.steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps % self.fail_every == 0:
            raise ConnectionError(self.message)
        return super().step(action)


class HangingCartPole(CartPoleEnv):
    """CartPole whose ``step`` hangs forever once, in whichever instance first claims
    ``token`` (a file created with O_EXCL: exactly one process across workers wins)."""

    def __init__(self, token: str, hang_after: int = 5):
        super().__init__()
        self.token = token
        self.hang_after = hang_after
        self.steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps == self.hang_after and self._claim():
            while True:
                time.sleep(3600)
        return super().step(action)

    def _claim(self) -> bool:
        try:
            os.close(os.open(self.token, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True


class FlakyResetCartPole(CartPoleEnv):
    """CartPole whose second ``reset`` of an instance raises (the first one works)."""

    def __init__(self):
        super().__init__()
        self.resets = 0

    def reset(self, *, seed=None, options=None):
        self.resets += 1
        if self.resets == 2:
            raise RuntimeError("reset failed")
        return super().reset(seed=seed, options=options)


class NoisyResetEnv(gym.Env):
    """An env that ignores its seed: a restored episode cannot be replayed exactly."""

    observation_space = gym.spaces.Box(-1e9, 1e9, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset()  # drops the seed on purpose
        return self.np_random.normal(size=1).astype(np.float32), {}

    def step(self, action):
        return self.np_random.normal(size=1).astype(np.float32), 1.0, False, False, {}


# ----------------------------------------------------------------------------- not gymnasium envs


class RaisingConstructorEnv(gym.Env):
    """An env whose constructor raises (a missing licence, a simulator that is down)."""

    def __init__(self):
        raise RuntimeError("simulator licence not found\nsee /opt/sim/README")


class RaisingResetEnv(gym.Env):
    """An env whose every ``reset`` raises."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        raise ValueError("no scenario loaded")

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, False, False, {}


class OldApiResetEnv(gym.Env):
    """The gym<0.26 API: ``reset`` returns the observation without an info dict."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, np.float32)

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, False, {}


class WrongShapeEnv(gym.Env):
    """Observations of shape (3,) from a space that says (2,)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return np.zeros(3, np.float32), {}

    def step(self, action):
        return np.zeros(3, np.float32), 0.0, False, False, {}


class NoStepEnv:
    """Spaces and ``reset``, but no ``step``: not an env at all."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, np.float32), {}


class _ParallelEnv:
    """The shape of a PettingZoo ``ParallelEnv``: agents, per-agent space methods, and
    ``reset``/``step`` over dicts keyed by agent."""

    possible_agents = ["player_0", "player_1"]

    def observation_space(self, agent):
        return gym.spaces.Discrete(4)

    def action_space(self, agent):
        return gym.spaces.Discrete(3)

    def reset(self, seed=None, options=None):
        return {a: 0 for a in self.possible_agents}, {a: {} for a in self.possible_agents}

    def step(self, actions):
        zeros = {a: 0 for a in self.possible_agents}
        return zeros, zeros, zeros, zeros, {a: {} for a in self.possible_agents}


def make_parallel_env(**kwargs):
    """A PettingZoo-style ``parallel_env(**kwargs)`` factory."""
    return _ParallelEnv()


# ----------------------------------------------------------------------------- action masks


class IllegalBestEnv(gym.Env):
    """Action masking: in state ``s`` (one of 4, one-hot) action ``s`` is illegal; it would
    pay ``illegal_reward`` (more than any legal action), but taking it raises. Of the legal
    actions ``(s + 1) % 4`` pays 1, the others 0. Episodes are ``horizon`` steps, so the
    legal optimum is ``horizon``. Observations: ``{"obs": Box(4), "action_mask":
    MultiBinary(4)}`` (``action_mask`` sorts first: the mask leads the flat vector)."""

    illegal_reward = 10.0

    def __init__(self, horizon: int = 8, mask_dtype: str = "int8"):
        self.horizon = horizon
        self.observation_space = gym.spaces.Dict({
            "obs": gym.spaces.Box(0.0, 1.0, (4,), np.float32),
            "action_mask": gym.spaces.Box(0, 1, (4,), np.dtype(mask_dtype)),
        })
        self.action_space = gym.spaces.Discrete(4)
        self.state, self.t = 0, 0

    def _obs(self):
        onehot = np.zeros(4, np.float32)
        onehot[self.state] = 1.0
        mask = np.ones(4, self.observation_space["action_mask"].dtype)
        mask[self.state] = 0
        return {"obs": onehot, "action_mask": mask}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state, self.t = int(self.np_random.integers(4)), 0
        return self._obs(), {}

    def step(self, action):
        action = int(action)
        if action == self.state:
            raise RuntimeError(f"illegal action {action} in state {self.state}")
        reward = 1.0 if action == (self.state + 1) % 4 else 0.0
        self.t += 1
        self.state = int(self.np_random.integers(4))
        return self._obs(), reward, False, self.t >= self.horizon, {}


class MaskedMultiDiscreteEnv(gym.Env):
    """MultiDiscrete([3, 2]) with a mask of width 5: sub-action 0 may never be 0 and
    sub-action 1 never 1; taking either raises. Reward 1 for (2, 0)."""

    def __init__(self, horizon: int = 4):
        self.horizon = horizon
        self.observation_space = gym.spaces.Dict({
            "action_mask": gym.spaces.MultiBinary(5),
            "x": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
        })
        self.action_space = gym.spaces.MultiDiscrete([3, 2])
        self.t = 0

    def _obs(self):
        return {"action_mask": np.array([0, 1, 1, 1, 0], np.int8),
                "x": self.np_random.uniform(-1, 1, 2).astype(np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        a, b = (int(x) for x in action)
        if a == 0 or b == 1:
            raise RuntimeError(f"illegal action {(a, b)}")
        self.t += 1
        return self._obs(), float(a == 2 and b == 0), False, self.t >= self.horizon, {}


class WrongMaskEnv(gym.Env):
    """An ``action_mask`` of width 3 for Discrete(5) actions (a mistake rl must name)."""

    def __init__(self):
        self.observation_space = gym.spaces.Dict({
            "action_mask": gym.spaces.MultiBinary(3), "x": gym.spaces.Box(-1, 1, (2,))})
        self.action_space = gym.spaces.Discrete(5)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, True, {}


class MaskedBoxActionEnv(WrongMaskEnv):
    """An ``action_mask`` with continuous actions, which no mask can apply to."""

    def __init__(self):
        super().__init__()
        self.action_space = gym.spaces.Box(-1, 1, (3,), np.float32)


# ----------------------------------------------------------------------------- memory


class CueEnv(gym.Env):
    """A memory task: the first observation shows a cue (+1 or -1), every later one is 0;
    at the last of ``length`` steps, the action that matches the cue (1 for +1, 0 for -1)
    pays 1. Episodes differ only in the cue, so a policy must remember it, and any state
    leaking from the previous episode shows in its first step's outputs."""

    def __init__(self, length: int = 4):
        self.length = length
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.cue = float(self.np_random.choice([-1.0, 1.0]))
        return np.array([self.cue], np.float32), {}

    def step(self, action):
        self.t += 1
        done = self.t >= self.length
        reward = float(done and int(action) == int(self.cue > 0))
        return np.zeros(1, np.float32), reward, done, False, {}
