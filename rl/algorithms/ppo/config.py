"""PPOConfig: the settings of proximal policy optimisation (Schulman et al. 2017)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rl.config import AlgorithmConfig, ConfigError, setting

__all__ = ["PPOConfig"]


@dataclass(eq=False)
class PPOConfig(AlgorithmConfig):
    """PPO with GAE, clipped surrogate, optional value clipping and KL penalty.

    Defaults solve CartPole-v1 in well under 100k env steps and are the common
    starting point for classic-control and Box2D tasks.
    """

    algo_name: ClassVar[str] = "ppo"

    lr: float = setting(1e-3, "Adam learning rate (eps 1e-5)", min=0.0)
    lr_schedule: str = setting("linear", "Learning-rate schedule over schedule_timesteps",
                               choices=("constant", "linear"))
    train_batch_size: int = setting(1024, "Env steps per iteration (all workers)", min=1)
    minibatch_size: int = setting(128, "SGD minibatch size per learner (N learners step on "
                                  "N x this many rows)", min=1)
    num_epochs: int = setting(10, "Passes over the train batch per iteration", min=1)
    gae_lambda: float = setting(0.95, "GAE lambda", min=0.0, max=1.0)
    clip_param: float = setting(0.2, "PPO surrogate clip range", min=0.0)
    vf_clip_param: float | None = setting(None, "Value-function clip range; null disables",
                                          min=0.0)
    vf_loss_coeff: float = setting(0.5, "Value loss coefficient", min=0.0)
    entropy_coeff: float = setting(0.0, "Entropy bonus coefficient", min=0.0)
    entropy_coeff_final: float | None = setting(None, "Entropy coefficient reached linearly at "
                                                "schedule_timesteps; null keeps it constant",
                                                min=0.0)
    kl_coeff: float = setting(0.0, "Initial KL penalty coefficient; 0 disables the penalty",
                              min=0.0)
    kl_target: float = setting(0.01, "KL the adaptive penalty aims at", min=0.0)
    target_kl: float | None = setting(None, "Stop the epochs early once approx_kl exceeds "
                                      "1.5 x this; null disables", min=0.0)
    normalize_advantages: bool = setting(True, "Normalise advantages per minibatch")
    normalize_rewards: bool = setting(False, "Scale rewards by the running std of the "
                                      "discounted return (clip ±10); for continuous control")

    def validate(self) -> None:
        super().validate()
        if self.minibatch_size > self.train_batch_size:
            raise ConfigError(f"minibatch_size ({self.minibatch_size}) must be <= "
                              f"train_batch_size ({self.train_batch_size})")
        if self.rollout_fragment_length != "auto":
            per_iter = self.total_envs * int(self.rollout_fragment_length)
            if per_iter != self.train_batch_size:
                raise ConfigError(
                    f"train_batch_size ({self.train_batch_size}) must equal workers x envs x "
                    f"rollout_fragment_length = {max(1, self.num_env_runners)} x "
                    f"{self.num_envs_per_env_runner} x {self.rollout_fragment_length} = "
                    f"{per_iter}; or set rollout_fragment_length='auto'")
