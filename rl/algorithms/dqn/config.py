"""DQNConfig: the settings of deep Q-learning with the Rainbow-lite extensions.

Double Q (van Hasselt et al. 2016), dueling heads (Wang et al. 2016), prioritised
replay (Schaul et al. 2016), n-step returns, target networks with hard or Polyak
updates, Huber loss and epsilon-greedy exploration on a schedule of global env steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rl.algorithms.off_policy import (
    OffPolicyConfig,
    fragment_length_setting,
    no_obs_normalization_setting,
)
from rl.config import MODEL_HIDDENS, Check, setting

__all__ = ["DQNConfig"]

#: Steps per sub-env per sample request when ``rollout_fragment_length`` is 'auto':
#: short, so sampling and gradient updates interleave finely.
AUTO_FRAGMENT_LENGTH = 4


@dataclass(eq=False)
class DQNConfig(OffPolicyConfig):
    """DQN with double-Q targets, dueling head, (prioritised) replay and n-step returns.

    Defaults are a sound start for classic-control tasks; see
    ``tuned_examples/dqn/`` for settings that are known to solve a task. The replay,
    n-step and replay-ratio settings are ``OffPolicyConfig``'s.
    """

    algo_name: ClassVar[str] = "dqn"

    # Overrides of shared fields: what they mean for DQN, and DQN-sized defaults.
    num_env_runners: int = setting(1, "Rollout worker actors; 0 samples in the driver process",
                                   section="env_runners", min=0)
    num_envs_per_env_runner: int = setting(4, "Sub-envs each worker steps as one vector",
                                           section="env_runners", min=1)
    rollout_fragment_length: int | str = fragment_length_setting(AUTO_FRAGMENT_LENGTH)
    normalize_obs: bool = no_obs_normalization_setting("DQN")
    lr: float = setting(5e-4, "Adam learning rate (eps 1e-5)", min=0.0)
    train_batch_size: int = setting(128, "Transitions per gradient update (SGD batch)", min=1)
    grad_clip: float | None = setting(10.0, "Global gradient-norm clip; null disables", min=0.0)
    model_hiddens: list[int] = setting([256, 256], "MLP layer widths", check=MODEL_HIDDENS)
    model_activation: str = setting("relu", "MLP activation",
                                    choices=("tanh", "relu", "elu", "silu", "gelu"))
    # targets and loss
    double_q: bool = setting(True, "Double-Q targets: online argmax, target evaluation")
    dueling: bool = setting(True, "Dueling head: Q = V + A - mean(A)")
    td_error_loss_fn: str = setting("huber", "Loss on the TD error", choices=("huber", "mse"))
    target_network_update_freq: int = setting(500, "Env steps between hard target-network "
                                              "updates (when tau is null; checked once per "
                                              "sample round)", min=1)
    tau: float | None = setting(None, "Polyak coefficient applied after every gradient "
                                "update; null = hard updates",
                                check=Check(lambda tau: 0 < tau <= 1, "a float in (0, 1] (0 "
                                            "would freeze the target network)"))
    # replay ratio
    num_steps_sampled_before_learning_starts: int = setting(
        1000, "Env steps sampled (random-ish, at epsilon_initial) before the first update",
        min=0)
    # exploration
    epsilon_initial: float = setting(1.0, "Exploration rate at step 0", min=0.0, max=1.0)
    epsilon_final: float = setting(0.01, "Exploration rate after epsilon_timesteps",
                                   min=0.0, max=1.0)
    epsilon_timesteps: int = setting(10_000, "Env steps (global) of the linear epsilon decay",
                                     min=0)

    def fragment_length(self) -> int:
        """Steps per sub-env per sample call ('auto' is a short fixed length)."""
        if self.rollout_fragment_length == "auto":
            return AUTO_FRAGMENT_LENGTH
        return int(self.rollout_fragment_length)
