"""DQN: epsilon-greedy workers, n-step replay in the driver, a fixed replay ratio.

Mnih et al. 2015 (Nature 518), with double Q (van Hasselt et al. 2016,
arXiv:1509.06461), dueling heads (Wang et al. 2016, arXiv:1511.06581), prioritised
replay (Schaul et al. 2016, arXiv:1511.05952) and n-step returns (Sutton 1988;
as combined in Hessel et al. 2018, "Rainbow", arXiv:1710.02298).

The sample/store/learn rounds, the replay ratio and the replay buffer in checkpoints
are ``rl.algorithms.off_policy``'s; this module adds epsilon (sent with each sample
request), target-network updates and the learner's TD errors as priorities.
"""

from __future__ import annotations

from typing import Any

from rl.algorithms.dqn.config import DQNConfig
from rl.algorithms.off_policy import REPLAY_SIZE, OffPolicyAlgorithm
from rl.config import AlgorithmConfig
from rl.imports import LazyClass
from rl.policies.model_spec import Q

__all__ = ["DQN", "REPLAY_SIZE"]


class DQN(OffPolicyAlgorithm):
    """Deep Q-learning with double Q, dueling heads, PER and n-step returns."""

    config_class = DQNConfig
    config: DQNConfig
    learner_class = LazyClass("rl.algorithms.dqn.learner:DQNLearner")
    model_kind = Q  # forward(obs) -> q_values; the built-in is QNetwork
    action_spaces = ("Discrete",)
    action_space_hint = "Use PPO or IMPALA for continuous or multi-discrete actions."

    # ------------------------------------------------------------------ construction
    def builtin_model_kwargs(self, config: AlgorithmConfig | None = None) -> dict[str, Any]:
        cfg = config or self.config
        return {"hiddens": list(cfg.model_hiddens), "activation": cfg.model_activation,
                "dueling": cfg.dueling}

    def setup(self) -> None:
        super().setup()
        self.last_target_update = 0  # env_steps_total at the last hard target update
        self.num_target_updates = 0

    # ------------------------------------------------------------------ schedules
    def epsilon(self) -> float:
        """Linear decay from epsilon_initial to epsilon_final over epsilon_timesteps."""
        cfg = self.config
        return self.schedule(cfg.epsilon_initial, cfg.epsilon_final,
                             horizon=cfg.epsilon_timesteps)

    # ------------------------------------------------------------------ off-policy hooks
    def learning_starts_steps(self) -> int:
        return self.config.num_steps_sampled_before_learning_starts

    def sample_request(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon()}

    def round_metrics(self, request: dict[str, Any]) -> dict[str, float]:
        return {"epsilon": request["epsilon"],
                "num_target_updates": float(self.num_target_updates)}

    def learn(self, num_updates: int) -> dict[str, float]:
        """``num_updates`` gradient steps on replayed batches; mean metrics."""
        cfg = self.config
        lr = self.schedule(cfg.lr, 0.0, cfg.lr_schedule)
        beta = self.beta() if self.prioritized else None
        # Hard target updates are due by env steps; the copy is taken before this
        # round's first step, so every step of the round regresses on the same target.
        sync = (cfg.tau is None and self.env_steps_total - self.last_target_update
                >= cfg.target_network_update_freq)
        if sync:
            self.last_target_update = self.env_steps_total
        self.num_target_updates += num_updates if cfg.tau is not None else int(sync)
        return self.replay_updates(num_updates, beta, first={"sync_target": sync}, lr=lr)

    # ------------------------------------------------------------------ checkpoints
    def off_policy_state(self) -> dict[str, Any]:
        # epsilon and beta are functions of the restored env-step counter.
        return {"last_target_update": self.last_target_update,
                "num_target_updates": self.num_target_updates}

    def load_off_policy_state(self, state: dict[str, Any]) -> None:
        self.last_target_update = int(state.get("last_target_update", 0))
        self.num_target_updates = int(state.get("num_target_updates", 0))
