"""DQN: epsilon-greedy workers, n-step replay in the driver, a fixed replay ratio.

Mnih et al. 2015 (Nature 518), with double Q (van Hasselt et al. 2016,
arXiv:1509.06461), dueling heads (Wang et al. 2016, arXiv:1511.06581), prioritised
replay (Schaul et al. 2016, arXiv:1511.05952) and n-step returns (Sutton 1988;
as combined in Hessel et al. 2018, "Rainbow", arXiv:1710.02298).

One round of an iteration::

    workers.sample(epsilon)  --[T, N] fragments-->  NStepAccumulator (one per worker)
        --transitions-->  replay buffer (driver)
        --round(training_intensity * new env steps) x [sample batch -> learner step
          -> priorities]-->  sync_weights

An iteration runs rounds until it has sampled ``min_sample_timesteps_per_iteration``
env steps, so fragments stay short (sampling and learning interleave finely) while
result rows stay few.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from rl import checkpoint as ckpt
from rl import resume
from rl.algorithms.algorithm import Algorithm
from rl.algorithms.dqn.config import DQNConfig
from rl.algorithms.dqn.learner import TD_ERRORS, DQNLearner
from rl.config import error_line
from rl.data import columns as C
from rl.data.nstep import NStepAccumulator
from rl.data.replay import PrioritizedReplayBuffer, ReplayBuffer
from rl.metrics import MetricMeans
from rl.policies.model_spec import Q

__all__ = ["DQN"]

REPLAY_SIZE = "replay/size"
_REPLAY_ARRAYS = "replay"
_NSTEP_ARRAYS = "nstep"


class DQN(Algorithm):
    """Deep Q-learning with double Q, dueling heads, PER and n-step returns."""

    config_class = DQNConfig
    config: DQNConfig
    learner_class = DQNLearner
    model_kind = Q  # forward(obs) -> q_values; the built-in is QNetwork
    action_spaces = ("Discrete",)
    needs_next_obs = True  # replay stores (s, a, r, s') transitions

    # ------------------------------------------------------------------ construction
    def builtin_model_kwargs(self) -> dict[str, Any]:
        cfg = self.config
        return {"hiddens": list(cfg.model_hiddens), "activation": cfg.model_activation,
                "dueling": cfg.dueling}

    def setup(self) -> None:
        cfg = self.config
        self.replay: ReplayBuffer
        if cfg.prioritized_replay:
            self.replay = PrioritizedReplayBuffer(
                cfg.replay_buffer_capacity, alpha=cfg.prioritized_replay_alpha,
                beta=cfg.prioritized_replay_beta, eps=cfg.prioritized_replay_eps)
        else:
            self.replay = ReplayBuffer(cfg.replay_buffer_capacity)
        # One accumulator per worker stream, and the worker's restart count when it
        # was created: a restarted worker starts new episodes, so its stream broke.
        self._accumulators: dict[int, tuple[int, NStepAccumulator]] = {}
        self.update_credit = 0.0  # fractional gradient updates owed to sampled steps
        self.last_target_update = 0  # env_steps_total at the last hard target update
        self.num_updates_total = 0
        self.num_target_updates = 0

    # ------------------------------------------------------------------ schedules
    def epsilon(self) -> float:
        """Linear decay from epsilon_initial to epsilon_final over epsilon_timesteps."""
        cfg = self.config
        return self.schedule(cfg.epsilon_initial, cfg.epsilon_final,
                             horizon=cfg.epsilon_timesteps)

    def beta(self) -> float:
        """Importance-weight exponent, annealed over the schedule horizon."""
        cfg = self.config
        return self.schedule(cfg.prioritized_replay_beta, cfg.prioritized_replay_beta_final)

    # ------------------------------------------------------------------ the loop
    def training_step(self) -> dict[str, float]:
        cfg = self.config
        means = MetricMeans()
        num_updates = 0
        goal = self.env_steps_total + cfg.min_sample_timesteps_per_iteration
        while self.env_steps_total < goal:
            epsilon = self.epsilon()
            with self.timers("sample"):
                steps_before = self.env_steps_total
                results = self.workers.sample(epsilon=epsilon)
                self.ingest_fragments(results)
                self.store_fragments(results)
            due = self.updates_due(steps_before)
            if due:
                with self.timers("learn"):
                    means.add(self.learn(due), weight=due)
                num_updates += due
                self.num_updates_total += due
                self.sync_weights()
        metrics = means.means()
        metrics.update(epsilon=epsilon, num_updates=float(num_updates),
                       num_updates_total=float(self.num_updates_total),
                       num_target_updates=float(self.num_target_updates))
        return metrics

    def store_fragments(self, results: list[dict[str, Any]]) -> None:
        """n-step transitions of fresh fragments into the replay buffer."""
        for r in results:
            index = r["worker_index"]
            restarts = self.workers.restarts[index]
            seen, acc = self._accumulators.get(index, (restarts, None))
            if acc is not None and seen != restarts:
                # Close the broken stream's pending windows as shorter transitions.
                self._add(acc.flush())
                acc = None
            if acc is None:
                acc = NStepAccumulator(self.config.n_step, self.config.gamma)
            self._accumulators[index] = (restarts, acc)
            self._add(acc.add(r["batch"]))

    def _add(self, transitions) -> None:
        if len(transitions):
            self.replay.add(transitions)

    def updates_due(self, steps_before: int) -> int:
        """Gradient updates owed to the env steps sampled since ``steps_before``.

        ``training_intensity`` updates per sampled step once learning has started;
        the fractional remainder carries over, so the ratio holds exactly in the long
        run whatever the fragment size or number of workers.
        """
        cfg = self.config
        new_steps = self.env_steps_total - max(steps_before,
                                               cfg.num_steps_sampled_before_learning_starts)
        if new_steps <= 0 or len(self.replay) == 0:
            return 0
        self.update_credit += cfg.training_intensity * new_steps
        due = int(self.update_credit)
        self.update_credit -= due
        return due

    def learn(self, num_updates: int) -> dict[str, float]:
        """``num_updates`` gradient steps on replayed batches; mean metrics."""
        cfg = self.config
        lr = self.schedule(cfg.lr, 0.0, cfg.lr_schedule)
        prioritized = isinstance(self.replay, PrioritizedReplayBuffer)
        beta = self.beta() if prioritized else None
        # Hard target updates are due by env steps; the copy is taken before this
        # round's first step, so every step of the round regresses on the same target.
        sync = (cfg.tau is None and self.env_steps_total - self.last_target_update
                >= cfg.target_network_update_freq)
        if sync:
            self.last_target_update = self.env_steps_total
        self.num_target_updates += num_updates if cfg.tau is not None else int(sync)
        means = MetricMeans()
        for i in range(num_updates):
            if prioritized:
                batch = self.replay.sample(cfg.train_batch_size, self.rng, beta=beta)
            else:
                batch = self.replay.sample(cfg.train_batch_size, self.rng)
            out = self.learner_group.update(batch, lr=lr, sync_target=sync and i == 0)
            td_errors = out.pop(TD_ERRORS)
            if prioritized:
                self.replay.update_priorities(batch[C.BATCH_INDEXES], td_errors)
            means.add(out)
        out = means.means()
        if prioritized:
            out["beta"] = float(beta)
        return out

    def result_extras(self) -> dict[str, Any]:
        return {REPLAY_SIZE: len(self.replay)}

    # ------------------------------------------------------------------ checkpoints
    def extra_state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict]]:
        """Counters as JSON; the replay buffer as arrays when opted in (no pickle).

        The target network and optimizer travel with the learner's state; epsilon
        and beta are functions of the restored env-step counter.
        """
        state = {"update_credit": self.update_credit,
                 "last_target_update": self.last_target_update,
                 "num_updates_total": self.num_updates_total,
                 "num_target_updates": self.num_target_updates,
                 "replay_saved": self.config.store_buffer_in_checkpoints}
        arrays = {}
        if self.config.store_buffer_in_checkpoints:
            arrays[_REPLAY_ARRAYS] = {k: np.asarray(v) for k, v in self.replay.state_dict().items()}
            # The n-step windows still open in each worker's stream: the steps they
            # hold belong in the buffer once the windows close after the resume.
            arrays[_NSTEP_ARRAYS] = resume.nstep_windows_state(self._accumulators)
        return state, {}, arrays

    def load_extra_state(self, path: str, state: dict[str, Any]) -> None:
        self.update_credit = float(state.get("update_credit", 0.0))
        self.last_target_update = int(state.get("last_target_update", 0))
        self.num_updates_total = int(state.get("num_updates_total", 0))
        self.num_target_updates = int(state.get("num_target_updates", 0))
        replay = ckpt.load_arrays(path, _REPLAY_ARRAYS)
        if replay is not None:
            try:
                self.replay.load_state_dict(replay)
            except (KeyError, TypeError, ValueError) as e:
                cfg = self.config
                raise ckpt.CheckpointError(
                    f"{os.path.join(path, _REPLAY_ARRAYS + '.npz')} does not load into this "
                    f"config's replay buffer (replay_buffer_capacity="
                    f"{cfg.replay_buffer_capacity}, prioritized_replay="
                    f"{cfg.prioritized_replay}; were they changed?): {error_line(e)}") from e
        kept, closed = resume.restore_nstep_windows(
            ckpt.load_arrays(path, _NSTEP_ARRAYS) or {}, self.config.n_step, self.config.gamma,
            self.resumed_workers, self.workers.restarts)
        self._accumulators.update(kept)
        for transitions in closed:
            self._add(transitions)
