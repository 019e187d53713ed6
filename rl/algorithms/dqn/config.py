"""DQNConfig: the settings of deep Q-learning with the Rainbow-lite extensions.

Double Q (van Hasselt et al. 2016), dueling heads (Wang et al. 2016), prioritised
replay (Schaul et al. 2016), n-step returns, target networks with hard or Polyak
updates, Huber loss and epsilon-greedy exploration on a schedule of global env steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rl.config import FRAGMENT_LENGTH, MODEL_HIDDENS, AlgorithmConfig, Check, ConfigError, setting

__all__ = ["DQNConfig"]

#: Steps per sub-env per sample request when ``rollout_fragment_length`` is 'auto':
#: short, so sampling and gradient updates interleave finely.
AUTO_FRAGMENT_LENGTH = 4


@dataclass(eq=False)
class DQNConfig(AlgorithmConfig):
    """DQN with double-Q targets, dueling head, (prioritised) replay and n-step returns.

    Defaults are a sound start for classic-control tasks; see
    ``tuned_examples/dqn/`` for settings that are known to solve a task.
    """

    algo_name: ClassVar[str] = "dqn"

    # Overrides of shared fields: what they mean for DQN, and DQN-sized defaults.
    num_env_runners: int = setting(1, "Rollout worker actors; 0 samples in the driver process",
                                   section="env_runners", min=0)
    num_envs_per_env_runner: int = setting(4, "Sub-envs each worker steps as one vector",
                                           section="env_runners", min=1)
    rollout_fragment_length: int | str = setting(
        AUTO_FRAGMENT_LENGTH, "Steps per sub-env per sample request; small, so sampling and "
        f"learning interleave ('auto' = {AUTO_FRAGMENT_LENGTH})", section="env_runners",
        check=FRAGMENT_LENGTH)
    normalize_obs: bool = setting(
        False, "Observation normalisation: not supported by DQN", section="environment",
        check=Check(lambda on: not on, "false for DQN: replayed observations would be scaled "
                    "by statistics that have since moved"))
    lr: float = setting(1e-3, "Adam learning rate (eps 1e-5)", min=0.0)
    train_batch_size: int = setting(128, "Transitions per gradient update (SGD batch)", min=1)
    grad_clip: float | None = setting(10.0, "Global gradient-norm clip; null disables", min=0.0)
    model_hiddens: list[int] = setting([256, 256], "MLP layer widths", check=MODEL_HIDDENS)
    model_activation: str = setting("relu", "MLP activation",
                                    choices=("tanh", "relu", "elu", "silu", "gelu"))
    # replay
    replay_buffer_capacity: int = setting(100_000, "Transitions the replay buffer holds "
                                          "(oldest overwritten)", min=1)
    prioritized_replay: bool = setting(False, "Proportional prioritised replay (sum tree)")
    prioritized_replay_alpha: float = setting(0.6, "How strongly priorities skew sampling "
                                              "(0 = uniform)", min=0.0)
    prioritized_replay_beta: float = setting(0.4, "Initial importance-weight exponent",
                                             min=0.0, max=1.0)
    prioritized_replay_beta_final: float = setting(1.0, "Importance-weight exponent reached "
                                                   "linearly at schedule_timesteps", min=0.0,
                                                   max=1.0)
    prioritized_replay_eps: float = setting(1e-6, "Added to |TD error| in priorities", min=0.0)
    store_buffer_in_checkpoints: bool = setting(False, "Save the replay buffer in checkpoints "
                                                "(can be large)")
    # targets and loss
    n_step: int = setting(3, "Steps per return (stops at termination, bootstraps at "
                          "truncation with gamma^k)", min=1)
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
    training_intensity: float = setting(
        0.5, "Gradient updates per sampled env step, whatever the number of workers and envs",
        check=Check(lambda n: n > 0, "> 0 gradient updates per env step"))
    min_sample_timesteps_per_iteration: int = setting(
        1000, "Env steps per training iteration (one result row): an iteration runs "
        "sample/learn rounds of rollout_fragment_length until it has this many",
        section="reporting", min=1)
    # exploration
    epsilon_initial: float = setting(1.0, "Exploration rate at step 0", min=0.0, max=1.0)
    epsilon_final: float = setting(0.01, "Exploration rate after epsilon_timesteps",
                                   min=0.0, max=1.0)
    epsilon_timesteps: int = setting(10_000, "Env steps (global) of the linear epsilon decay",
                                     min=0)

    def validate(self) -> None:
        super().validate()
        if self.train_batch_size > self.replay_buffer_capacity:
            raise ConfigError(f"train_batch_size ({self.train_batch_size}) must be <= "
                              f"replay_buffer_capacity ({self.replay_buffer_capacity})")
        if self.prioritized_replay and self.prioritized_replay_eps <= 0:
            raise ConfigError(f"prioritized_replay_eps must be > 0 (a zero priority is never "
                              f"sampled again), got {self.prioritized_replay_eps}")

    def fragment_length(self) -> int:
        """Steps per sub-env per sample call ('auto' is a short fixed length)."""
        if self.rollout_fragment_length == "auto":
            return AUTO_FRAGMENT_LENGTH
        return int(self.rollout_fragment_length)
