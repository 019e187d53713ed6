"""The off-policy base shared by DQN and SAC: replay settings, n-step streams, the
replay ratio, and the replay buffer in checkpoints.

One round of an iteration::

    workers.sample(**sample_request())  --[T, N] fragments-->  NStepAccumulator (per
        worker stream)  --transitions-->  replay buffer (driver)
        --training_intensity * new env steps (fraction carried)--> learn(due) --> sync

An iteration runs rounds until it has sampled ``min_sample_timesteps_per_iteration``
env steps, so fragments stay short (sampling and learning interleave finely) while
result rows stay few. A subclass says what the workers are asked for
(``sample_request``), how many steps come before learning (``learning_starts_steps``)
and what ``learn(num_updates)`` does; it keeps its own counters in
``off_policy_state`` / ``load_off_policy_state``.
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from rl import checkpoint as ckpt
from rl import resume
from rl.algorithms.algorithm import Algorithm
from rl.config import FRAGMENT_LENGTH, AlgorithmConfig, Check, ConfigError, error_line, setting
from rl.data import SampleBatch
from rl.data import columns as C
from rl.data.nstep import NStepAccumulator
from rl.data.replay import PrioritizedReplayBuffer, ReplayBuffer
from rl.metrics import MetricMeans

__all__ = ["REPLAY_SIZE", "OffPolicyAlgorithm", "OffPolicyConfig"]

REPLAY_SIZE = "replay/size"
_REPLAY_ARRAYS = "replay"
_NSTEP_ARRAYS = "nstep"


def fragment_length_setting(auto: int) -> Any:
    """The ``rollout_fragment_length`` of an off-policy algorithm: ``'auto'`` is ``auto``
    steps, small, so that sampling and learning interleave."""
    return setting(auto, "Steps per sub-env per sample request; small, so sampling and "
                   f"learning interleave ('auto' = {auto})", section="env_runners",
                   check=FRAGMENT_LENGTH)


def no_obs_normalization_setting(algo: str) -> Any:
    """``normalize_obs``, which an off-policy algorithm refuses: replayed observations
    would be scaled by statistics that have since moved."""
    return setting(False, f"Observation normalisation: not supported by {algo}",
                   section="environment",
                   check=Check(lambda on: not on, f"false for {algo}: replayed observations "
                               "would be scaled by statistics that have since moved"))


@dataclass(eq=False)
class OffPolicyConfig(AlgorithmConfig):
    """The replay, n-step and replay-ratio settings of every off-policy algorithm."""

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
    n_step: int = setting(3, "Steps per return (stops at termination, bootstraps at "
                          "truncation with gamma^k)", min=1)
    training_intensity: float = setting(
        0.5, "Gradient updates per sampled env step, whatever the number of workers and envs",
        check=Check(lambda n: n > 0, "> 0 gradient updates per env step"))
    min_sample_timesteps_per_iteration: int = setting(
        1000, "Env steps per training iteration (one result row): an iteration runs "
        "sample/learn rounds of rollout_fragment_length until it has this many",
        section="reporting", min=1)

    def validate(self) -> None:
        super().validate()
        if self.train_batch_size > self.replay_buffer_capacity:
            raise ConfigError(f"train_batch_size ({self.train_batch_size}) must be <= "
                              f"replay_buffer_capacity ({self.replay_buffer_capacity})")
        if self.prioritized_replay and self.prioritized_replay_eps <= 0:
            raise ConfigError(f"prioritized_replay_eps must be > 0 (a zero priority is never "
                              f"sampled again), got {self.prioritized_replay_eps}")


class OffPolicyAlgorithm(Algorithm):
    """Replay in the driver, n-step streams per worker, a fixed replay ratio."""

    config: OffPolicyConfig
    needs_next_obs = True  # replay stores (s, a, r, s') transitions

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
        self.num_updates_total = 0

    # ------------------------------------------------------------------ subclass hooks
    @abc.abstractmethod
    def learning_starts_steps(self) -> int:
        """Env steps sampled before the first gradient update."""

    def sample_request(self) -> dict[str, Any]:
        """Per-round options sent to every worker's ``sample`` (e.g. ``epsilon``)."""
        return {}

    @abc.abstractmethod
    def learn(self, num_updates: int) -> dict[str, float]:
        """``num_updates`` gradient steps on replayed batches; mean metrics."""

    def first_sample_request(self) -> dict[str, Any]:
        return self.sample_request()  # training_step's first round, at env step 0

    def round_metrics(self, request: dict[str, Any]) -> dict[str, float]:
        """Metrics added to the iteration's from its last round's ``request`` (epsilon)."""
        return {}

    # ------------------------------------------------------------------ the loop
    def training_step(self) -> dict[str, float]:
        cfg = self.config
        means = MetricMeans()
        num_updates = 0
        goal = self.env_steps_total + cfg.min_sample_timesteps_per_iteration
        while self.env_steps_total < goal:
            request = self.sample_request()
            with self.timers("sample"):
                steps_before = self.env_steps_total
                results = self.workers.sample(**request)
                self.ingest_fragments(results)
                self.store_fragments(results)
                self.workers.release_blocks(results)  # the replay buffer holds copies
            due = self.updates_due(steps_before)
            if due:
                with self.timers("learn"):
                    means.add(self.learn(due), weight=due)
                num_updates += due
                self.num_updates_total += due
                self.sync_weights()
        metrics = means.means()
        metrics.update(self.round_metrics(request))
        metrics.update(num_updates=float(num_updates),
                       num_updates_total=float(self.num_updates_total))
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
        new_steps = self.env_steps_total - max(steps_before, self.learning_starts_steps())
        if new_steps <= 0 or len(self.replay) == 0:
            return 0
        self.update_credit += self.config.training_intensity * new_steps
        due = int(self.update_credit)
        self.update_credit -= due
        return due

    @property
    def prioritized(self) -> bool:
        return isinstance(self.replay, PrioritizedReplayBuffer)

    def beta(self) -> float:
        """Importance-weight exponent, annealed over the schedule horizon."""
        cfg = self.config
        return self.schedule(cfg.prioritized_replay_beta, cfg.prioritized_replay_beta_final)

    def sample_replay(self, beta: float | None) -> SampleBatch:
        """One ``train_batch_size`` batch (with ``weights``; ``beta`` for PER)."""
        if self.prioritized:
            return self.replay.sample(self.config.train_batch_size, self.rng, beta=beta)
        return self.replay.sample(self.config.train_batch_size, self.rng)

    def replay_updates(self, num_updates: int, beta: float | None,
                       first: dict[str, Any] | None = None, **hyper: Any) -> dict[str, float]:
        """``num_updates`` learner updates on replayed batches, priorities updated from
        each update's TD errors; the mean metrics (with ``beta`` under PER).

        ``hyper`` goes to every update, ``first`` to the round's first one only (DQN's
        target sync)."""
        means = MetricMeans()
        for i in range(num_updates):
            batch = self.sample_replay(beta)
            extra = (first or {}) if i == 0 else {}
            out = self.learner_group.update(batch, **hyper, **extra)
            self.update_priorities(batch, out.pop(C.TD_ERRORS))
            means.add(out)
        out = means.means()
        if self.prioritized:
            out["beta"] = float(beta)
        return out

    def update_priorities(self, batch: SampleBatch, td_errors: np.ndarray) -> None:
        """New priorities of a replayed batch's rows from their TD errors (PER only)."""
        if self.prioritized:
            self.replay.update_priorities(batch[C.BATCH_INDEXES], td_errors)

    def result_extras(self) -> dict[str, Any]:
        return {REPLAY_SIZE: len(self.replay)}

    # ------------------------------------------------------------------ checkpoints
    def off_policy_state(self) -> dict[str, Any]:
        """The subclass's own counters (JSON) for checkpoints."""
        return {}

    def load_off_policy_state(self, state: dict[str, Any]) -> None:
        """Restore ``off_policy_state``'s counters."""

    def extra_state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict]]:
        """Counters as JSON; the replay buffer as arrays when opted in (no pickle).

        Target networks and optimizers travel with the learner's state; schedules are
        functions of the restored env-step counter.
        """
        state = {"update_credit": self.update_credit,
                 "num_updates_total": self.num_updates_total,
                 "replay_saved": self.config.store_buffer_in_checkpoints,
                 **self.off_policy_state()}
        arrays = {}
        if self.config.store_buffer_in_checkpoints:
            arrays[_REPLAY_ARRAYS] = {k: np.asarray(v) for k, v in self.replay.state_dict().items()}
            # The n-step windows still open in each worker's stream: the steps they
            # hold belong in the buffer once the windows close after the resume.
            arrays[_NSTEP_ARRAYS] = resume.nstep_windows_state(self._accumulators)
        return state, {}, arrays

    def load_extra_state(self, path: str, state: dict[str, Any]) -> None:
        self.update_credit = float(state.get("update_credit", 0.0))
        self.num_updates_total = int(state.get("num_updates_total", 0))
        self.load_off_policy_state(state)
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
