"""SACConfig: the settings of Soft Actor-Critic with automatic entropy tuning.

Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications"
(arXiv:1812.05905): twin Q-functions with Polyak-averaged targets, a tanh-squashed
Gaussian actor, a learned temperature alpha with a target entropy. The replay, n-step
and replay-ratio settings are ``OffPolicyConfig``'s (the same names as DQN's). The actor
is ``model_class``/``model_kwargs`` (contract ``squashed_gaussian``), the critics
``critic_model_class``/``critic_model_kwargs`` (contract ``critic``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rl.algorithms.off_policy import (
    OffPolicyConfig,
    fragment_length_setting,
    no_obs_normalization_setting,
)
from rl.config import MODEL_HIDDENS, Check, ConfigError, setting

__all__ = ["SACConfig"]

#: Steps per sub-env per sample request when ``rollout_fragment_length`` is 'auto':
#: one, so every env step is followed by its gradient update, as in the paper.
AUTO_FRAGMENT_LENGTH = 1


def _is_target_entropy(value: float | str) -> bool:
    return value == "auto" if isinstance(value, str) else True


@dataclass(eq=False)
class SACConfig(OffPolicyConfig):
    """SAC for Box action spaces.

    The defaults solve Pendulum-v1 (mean return >= -200) within 20k env steps; see
    ``tuned_examples/sac/`` for settings known to solve a task.
    """

    algo_name: ClassVar[str] = "sac"

    # Overrides of shared fields: what they mean for SAC, and SAC-sized defaults.
    num_env_runners: int = setting(0, "Rollout worker actors; 0 samples in the driver "
                                   "process (fastest for one small env)",
                                   section="env_runners", min=0)
    num_envs_per_env_runner: int = setting(1, "Sub-envs each worker steps as one vector",
                                           section="env_runners", min=1)
    rollout_fragment_length: int | str = fragment_length_setting(AUTO_FRAGMENT_LENGTH)
    normalize_obs: bool = no_obs_normalization_setting("SAC")
    lr: float = setting(1e-3, "Not used by SAC: see actor_lr, critic_lr and alpha_lr",
                        min=0.0)
    train_batch_size: int = setting(256, "Transitions per gradient update (SGD batch)", min=1)
    grad_clip: float | None = setting(None, "Global gradient-norm clip of each of the three "
                                      "losses; null disables", min=0.0)
    model_hiddens: list[int] = setting([256, 256], "MLP layer widths of the actor and of each "
                                       "critic", check=MODEL_HIDDENS)
    model_activation: str = setting("relu", "MLP activation",
                                    choices=("tanh", "relu", "elu", "silu", "gelu"))
    replay_buffer_capacity: int = setting(1_000_000, "Transitions the replay buffer holds "
                                          "(oldest overwritten)", min=1)
    n_step: int = setting(1, "Steps per return (stops at termination, bootstraps at "
                          "truncation with gamma^k)", min=1)
    training_intensity: float = setting(
        1.0, "Gradient updates per sampled env step, whatever the number of workers and envs",
        check=Check(lambda n: n > 0, "> 0 gradient updates per env step"))
    # SAC
    actor_lr: float = setting(1e-3, "Adam learning rate of the actor", min=0.0)
    critic_lr: float = setting(1e-3, "Adam learning rate of the twin critics", min=0.0)
    alpha_lr: float = setting(1e-3, "Adam learning rate of log(alpha), the temperature",
                              min=0.0)
    tau: float = setting(0.005, "Polyak coefficient of the target critics, applied after "
                         "every gradient update",
                         check=Check(lambda tau: 0 < tau <= 1, "a float in (0, 1] (0 would "
                                     "freeze the target critics)"))
    initial_alpha: float = setting(1.0, "The temperature alpha at step 0",
                                   check=Check(lambda a: a > 0, "> 0 (alpha is learned as "
                                               "log(alpha))"))
    target_entropy: float | str = setting(
        "auto", "Entropy the temperature is tuned towards; 'auto' = -dim(A)",
        check=Check(_is_target_entropy, "'auto' or a number"))
    learning_starts: int = setting(1000, "Env steps of uniform random actions before the "
                                   "first update", min=0)
    critic_model_class: str | None = setting(
        None, "Your own critic, forward(obs, actions) -> q [B]: 'package.module:Class' or a "
        "name given to rl.register_model(); null = the built-in MLP critic (model_hiddens, "
        "model_activation). model_class is the actor's",
        check=Check(lambda v: bool(v.strip()), "'package.module:Class', a registered name or "
                    "null"))
    critic_model_kwargs: dict = setting(
        {}, "Keyword arguments of the critic's constructor (JSON on the command line); with "
        "the built-in critic they add to and override its settings",
        check=Check(lambda v: all(isinstance(k, str) for k in v),
                    "a dict with string keys (keyword arguments)"))

    def validate(self) -> None:
        super().validate()
        if self.learning_starts > self.replay_buffer_capacity:
            raise ConfigError(f"learning_starts ({self.learning_starts}) must be <= "
                              f"replay_buffer_capacity ({self.replay_buffer_capacity}): the "
                              "random warm-up would overwrite itself")

    def fragment_length(self) -> int:
        """Steps per sub-env per sample call ('auto' is a short fixed length)."""
        if self.rollout_fragment_length == "auto":
            return AUTO_FRAGMENT_LENGTH
        return int(self.rollout_fragment_length)
