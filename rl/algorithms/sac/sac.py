"""SAC: squashed-Gaussian actors on the workers, replay in the driver, twin soft critics.

Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications"
(arXiv:1812.05905), with automatic entropy tuning. The sample/store/learn rounds, the
replay ratio (``training_intensity``), n-step returns, prioritised replay and the
replay buffer in checkpoints are ``rl.algorithms.off_policy``'s, shared with DQN::

    workers.sample(random=<before learning_starts>)  --transitions-->  replay (driver)
        --training_intensity * new env steps--> SACLearner.update (critics, actor,
          alpha, targets)  --actor weights only-->  board  --> workers

Workers act in the actor's (-1, 1) scale, which the replay stores; the env receives the
action rescaled to its Box bounds. Evaluation is greedy: ``tanh(mean)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from rl.algorithms.off_policy import OffPolicyAlgorithm
from rl.algorithms.sac.config import SACConfig
from rl.config import AlgorithmConfig
from rl.envs import UnsupportedSpaceError
from rl.imports import LazyClass
from rl.policies import ModelSpec
from rl.policies.model_spec import CRITIC, SQUASHED_GAUSSIAN

if TYPE_CHECKING:
    from rl.learner import Learner

__all__ = ["SAC"]


class SAC(OffPolicyAlgorithm):
    """Soft Actor-Critic with twin critics and a learned temperature."""

    config_class = SACConfig
    config: SACConfig
    learner_class = LazyClass("rl.algorithms.sac.learner:SACLearner")
    model_kind = SQUASHED_GAUSSIAN  # forward(obs) -> (mean, log_std); built-in SquashedGaussianActor
    action_spaces = ("Box",)
    action_space_hint = ("Use PPO or IMPALA for discrete or multi-discrete actions, or DQN "
                         "for discrete ones.")

    # ------------------------------------------------------------------ construction
    def builtin_model_kwargs(self, config: AlgorithmConfig | None = None) -> dict[str, Any]:
        cfg = config or self.config
        return {"hiddens": list(cfg.model_hiddens), "activation": cfg.model_activation}

    def make_model_spec(self) -> ModelSpec:
        """The actor's spec; the critics' (``critic_spec``) is built and checked with it,
        so a broken critic fails the build before any process starts."""
        low, high = self.action_space.low, self.action_space.high
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise UnsupportedSpaceError(
                f"SAC needs finite action bounds to rescale tanh-squashed actions onto; "
                f"{self.action_space} has low={low.tolist()}, high={high.tolist()}")
        self.critic_spec = self.make_critic_spec()
        return super().make_model_spec()

    def make_critic_spec(self) -> ModelSpec:
        """The critics' model: ``critic_model_class`` (None: the built-in
        ``ContinuousQCritic``) with ``critic_model_kwargs``, checked in the driver."""
        cfg = self.config
        kwargs = dict(cfg.critic_model_kwargs)
        if cfg.critic_model_class is None:
            kwargs = {**self.builtin_model_kwargs(), **kwargs}
        spec = ModelSpec.create(CRITIC, self.obs_space, self.action_space,
                                cfg.critic_model_class, kwargs)
        spec.check()
        return spec

    def learner_factory(self) -> Callable[[], Learner]:
        cfg = self.config
        return functools.partial(self.learner_class, self.model_spec, cfg, cfg.device,
                                 critic=self.critic_spec)

    # ------------------------------------------------------------------ off-policy hooks
    def learning_starts_steps(self) -> int:
        return self.config.learning_starts

    def sample_request(self) -> dict[str, Any]:
        # Uniform random actions until learning starts: a broad first replay.
        return {"random": self.env_steps_total < self.config.learning_starts}

    def learn(self, num_updates: int) -> dict[str, float]:
        """``num_updates`` SAC updates on replayed batches; mean metrics."""
        return self.replay_updates(num_updates, self.beta() if self.prioritized else None)
