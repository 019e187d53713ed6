"""IMPALAConfig: the settings of IMPALA with V-trace (Espeholt et al. 2018, arXiv:1802.01561)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rl.config import AlgorithmConfig, Check, ConfigError, setting

__all__ = ["IMPALAConfig"]


@dataclass(eq=False)
class IMPALAConfig(AlgorithmConfig):
    """Asynchronous actor-learner training with V-trace off-policy correction.

    Workers sample continuously (up to ``max_requests_in_flight_per_env_runner``
    requests each); fragments of ``rollout_fragment_length`` steps are stacked along
    the env axis into train batches of ``train_batch_size`` env steps, which wait on a
    bounded learner queue for a learner running concurrently in the driver. Weights go
    back to the workers every ``broadcast_interval`` learner updates.
    """

    algo_name: ClassVar[str] = "impala"

    # env_runners
    rollout_fragment_length: int | str = setting(
        50, "Unroll length T: steps per sub-env per sample request (an int for IMPALA)",
        section="env_runners",
        check=Check(lambda t: isinstance(t, int) and t >= 1, "an int for IMPALA, >= 1 (the "
                    "unroll length T of V-trace)"))
    max_requests_in_flight_per_env_runner: int = setting(
        2, "Sample requests each worker keeps queued, so it never waits for the driver",
        section="env_runners", min=1)
    # training
    lr: float = setting(5e-4, "Learning rate", min=0.0)
    train_batch_size: int = setting(800, "Env steps per learner update: fragments stacked "
                                    "along the env axis (a multiple of T x envs per worker)",
                                    min=1)
    grad_clip: float | None = setting(40.0, "Global gradient-norm clip; null disables", min=0.0)
    optimizer: str = setting("adam", "Optimizer", choices=("adam", "rmsprop"))
    optimizer_eps: float | None = setting(None, "Optimizer epsilon; null = 1e-5 for Adam, "
                                          "0.01 for RMSProp (the paper's)", min=0.0)
    rmsprop_decay: float = setting(0.99, "RMSProp smoothing constant (alpha)", min=0.0, max=1.0)
    momentum: float = setting(0.0, "RMSProp momentum", min=0.0, max=1.0)
    vf_loss_coeff: float = setting(0.5, "Value loss coefficient (baseline cost)", min=0.0)
    entropy_coeff: float = setting(0.01, "Entropy bonus coefficient", min=0.0)
    entropy_coeff_final: float | None = setting(None, "Entropy coefficient reached linearly at "
                                                "schedule_timesteps; null keeps it constant",
                                                min=0.0)
    clip_rho_threshold: float = setting(1.0, "rho_bar: clips the importance weight of the "
                                        "V-trace TD errors", min=0.0)
    clip_c_threshold: float = setting(1.0, "c_bar: clips the V-trace trace coefficients",
                                      min=0.0)
    clip_pg_rho_threshold: float = setting(1.0, "Clips the importance weight of the policy-"
                                           "gradient advantages", min=0.0)
    vtrace_lambda: float = setting(1.0, "Lambda of the V-trace traces (1.0 in the paper)",
                                   min=0.0, max=1.0)
    num_epochs: int = setting(1, "Passes over each train batch", min=1)
    minibatch_size: int | None = setting(None, "Env steps per SGD step, whole unrolls (a "
                                         "multiple of T); null = the whole train batch",
                                         min=1)
    learner_queue_size: int = setting(3, "Train batches waiting for the learner; when full "
                                      "the oldest is dropped", min=1)
    broadcast_interval: int = setting(1, "Learner updates between weight broadcasts", min=1)

    def validate(self) -> None:
        super().validate()
        frag = int(self.rollout_fragment_length)
        per_fragment = frag * self.num_envs_per_env_runner
        if self.train_batch_size % per_fragment:
            raise ConfigError(
                f"train_batch_size ({self.train_batch_size}) must be a multiple of one "
                f"fragment = rollout_fragment_length x num_envs_per_env_runner = {frag} x "
                f"{self.num_envs_per_env_runner} = {per_fragment}")
        columns = self.train_batch_size // frag
        if self.num_learners > columns:
            raise ConfigError(
                f"num_learners ({self.num_learners}) learners split a train batch by whole "
                f"unrolls, and train_batch_size / rollout_fragment_length = "
                f"{self.train_batch_size} / {frag} gives only {columns}")
        if self.minibatch_size is not None:
            if self.minibatch_size > self.train_batch_size or self.minibatch_size % frag:
                raise ConfigError(
                    f"minibatch_size ({self.minibatch_size}) must be a multiple of "
                    f"rollout_fragment_length ({frag}) and <= train_batch_size "
                    f"({self.train_batch_size}): minibatches are whole unrolls")
