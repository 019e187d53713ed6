"""Algorithm: the base training loop shared by PPO, DQN and IMPALA.

Construction validates everything that can be checked without processes (config,
env name, spaces) and only then starts the runtime, the weights board, the rollout
workers and the learner group. ``train()`` runs one ``training_step()`` (the
algorithm's sample -> learn -> sync), adds episode statistics, counters and timers,
and returns one flat result dict (keys in ``rl.metrics``).
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np

from rl import checkpoint as ckpt
from rl import metrics as M
from rl.algorithms.multi_agent import check_recurrent_policies
from rl.algorithms.policy_map import PolicyMap
from rl.callbacks import call_hook, resolve_callbacks_class
from rl.config import AlgorithmConfig, ConfigError, error_line
from rl.data import columns as C
from rl.envs import check_action_space, flatten_observations, probe_spaces, resolve_env
from rl.envs.normalization import RunningMeanStd
from rl.envs.obs_layout import check_action_mask
from rl.lazy_torch import torch
from rl.policies import ModelError, ModelSpec
from rl.policies.model_spec import ACTOR_CRITIC, RECURRENT, is_recurrent, resolve_model_class
from rl.policies.numpy_init import initial_weights
from rl.rollout import Boards, RolloutWorker, WorkerSet, WorkerSpec
from rl.runtime import BACKENDS, capabilities, make_runtime

if TYPE_CHECKING:
    from rl.learner import Learner, LearnerGroup

__all__ = ["Algorithm"]

log = logging.getLogger("rl")


class Algorithm(abc.ABC):
    """Base class: owns the runtime, workers, learner group, counters and logger.

    Subclasses set ``config_class`` and ``learner_class`` (and, where they differ from
    the defaults, ``model_kind``, ``action_spaces`` and ``needs_next_obs``) and implement
    ``training_step()``.
    """

    config_class: ClassVar[type[AlgorithmConfig]]
    """The config this algorithm is built from (the registry maps names to algorithms)."""
    learner_class: ClassVar[type[Learner]]
    model_kind: ClassVar[str] = ACTOR_CRITIC
    model_kinds: ClassVar[tuple[str, ...]] = (ACTOR_CRITIC,)
    """Every model kind the algorithm trains (PPO adds ``recurrent_actor_critic``)."""
    """What the model's ``forward`` returns (``rl.policies.model_spec``): ``actor_critic``
    or ``q``. The learner trains, and every worker runs, ``self.model_spec.build()``: the
    config's ``model_class`` (None: the built-in model of this kind)."""
    action_spaces: ClassVar[tuple[str, ...]] = ("Discrete", "Box", "MultiDiscrete")
    action_space_hint: ClassVar[str] = ""
    """Ends the error for an action space outside ``action_spaces``: the alternatives."""
    needs_next_obs: ClassVar[bool] = False
    """Whether fragments carry ``next_obs`` (the true final observation at episode ends)."""
    multi_agent: ClassVar[bool] = False
    """Whether it trains PettingZoo multi-agent envs (``rl.envs.multi_agent``)."""
    recurrent_multi_agent: ClassVar[bool] = False
    """Whether it trains recurrent policies on multi-agent (Parallel) envs."""

    def __init__(self, config: AlgorithmConfig, logdir: str | None = None, *,
                 checkpoint: str | None = None):
        """``checkpoint``: the one ``restore()`` will load; its files are checked against
        this config before any process starts (a damaged one fails fast)."""
        config.validate()
        self.config = config
        self.name = type(self).__name__
        self._check_resources()
        if config.log_level != "info":  # the default leaves a level the user set alone
            logging.getLogger("rl").setLevel(config.log_level.upper())
        # The env is checked next (its name, then its spaces); processes start only after.
        self.env_spec = resolve_env(config.env)
        # The config says which env ran, not what was typed (CartPole -> CartPole-v1): so
        # params.json and checkpoints name it whatever gymnasium's short names later mean.
        config.env = self.env_spec.env_id
        probed = probe_spaces(self.env_spec, config.env_config)
        self.obs_space, self.action_space, self.env_obs_space = probed[:3]
        self.agents = probed.agents  # a multi-agent env's agents, else None
        self.turn_based = probed.turn_based
        self.agent_spaces = probed.agent_spaces  # agents of different spaces, else None
        if self.agents is not None:
            self._check_multi_agent()
        self.policy_map = PolicyMap.create(config, self.agents, self.agent_spaces)
        self._policy_configs = {pid: self.policy_map.config_for(config, pid)
                                for pid in self.policy_map.ids}
        for pid in self.policy_map.ids:
            _, action, env_obs = self.policy_spaces(pid)
            check_action_space(action, self.name, self.action_spaces, self.action_space_hint)
            check_action_mask(env_obs, action, self.name)
        # The models are imported, built and run once here, before any process starts.
        self.model_specs = {pid: self._checked_model_spec(pid) for pid in self.policy_map.ids}
        if self.agents is not None:
            check_recurrent_policies(self.name, config.env, self.model_specs,
                                     self.turn_based, self.recurrent_multi_agent)
        self.callbacks_class = None if config.callbacks_class is None else \
            resolve_callbacks_class(config.callbacks_class)
        self.callbacks = None if self.callbacks_class is None else self.callbacks_class()
        self.custom_metrics = M.CustomMetrics()
        self.obs_filter = RunningMeanStd(self.obs_space.shape) if config.normalize_obs else None
        if checkpoint is not None:
            self._check_checkpoint(checkpoint)
        self.iteration = 0
        self.env_steps_total = 0
        self.time_total_s = 0.0
        self.episodes = M.EpisodeWindow(config.metrics_smoothing_episodes)
        # Multi-agent: each policy's share of the games' returns.
        self.policy_episodes = {pid: M.EpisodeWindow(config.metrics_smoothing_episodes)
                                for pid in self.policy_map.ids} if self.agents else {}
        self.timers = M.Timers()
        self.logger: M.RunLogger | None = None
        self.run_dir: str | None = None
        self.last_checkpoint: str | None = None
        # The schedule horizon: the first fit()'s env-step budget, kept on resume so
        # that a schedule does not change its slope when a later run extends the budget.
        self.stop_timesteps: int | None = None
        # The last fit()'s stop criteria (Stop.to_dict()), saved in checkpoints: the
        # budget a resume without stop flags goes on to.
        self.stop_criteria: dict[str, Any] | None = None
        self.resumed_workers: list[int] = []  # set by restore()
        self._eval_worker: RolloutWorker | None = None
        # compute_actions and evaluate share the driver's worker (its weights, its
        # recurrent state slots, its generator): one caller at a time.
        self._driver_lock = threading.RLock()
        self._stopped = False
        seed = 0 if config.seed is None else config.seed
        self.rng = np.random.default_rng(seed)
        self.runtime = make_runtime(config.backend, address=config.ray_address)
        try:
            self.learner_groups: dict[str, LearnerGroup] = {}
            self.weight_boards: dict[str, Any] = {}
            # Built-in MLP models start from weights drawn in numpy: their boards are
            # filled before torch is imported, and when every policy's is, the workers
            # start (and sample their first fragment) while the learners are built.
            initial = {pid: initial_weights(self.model_specs[pid], seed, k)
                       for k, pid in enumerate(self.policy_map.ids)}
            for pid, weights in initial.items():
                if weights is not None:
                    self.weight_boards[pid] = self.runtime.weights_board(len(weights))
                    self.weight_boards[pid].publish(weights)
            early = all(w is not None for w in initial.values())
            # A run built to be restored (resume, evaluate, serve) asks nothing early:
            # the restore would discard it.
            if early:
                self._start_workers(prefetch=checkpoint is None)
            torch.manual_seed(seed)
            self._set_learner_threads()
            for pid in self.policy_map.ids:
                group = self.learner_groups[pid] = self.make_learner_group(
                    None if self._one_policy else pid)
                if initial[pid] is not None:
                    group.set_weights(initial[pid])
                else:
                    weights = group.get_weights()
                    self.weight_boards[pid] = self.runtime.weights_board(len(weights))
                    self.weight_boards[pid].publish(weights)
            if not early:
                self._start_workers(prefetch=checkpoint is None)
            self.setup()
        except BaseException:
            self.runtime.shutdown()
            raise
        if logdir is not None:
            self.attach_logger(logdir)
        self.run_callback("on_algorithm_init", self)

    def _start_workers(self, prefetch: bool) -> None:
        """Spawn the rollout workers (every policy's weights are on its board), and with
        ``prefetch`` send them the first sample request when the algorithm knows it
        (``first_sample_request``): they sample while the driver goes on."""
        config = self.config
        # The observation filter has its own board: it changes on its own schedule
        # (every ingested fragment) and has nothing to do with the weights' layout.
        self.filter_board = None
        if self.obs_filter is not None:
            self.filter_board = self.runtime.weights_board(
                RunningMeanStd.vector_size(self.obs_space.shape))
            self.filter_board.publish(self.obs_filter.to_vector())
        boards = Boards(self.board.reader(),
                        None if self.filter_board is None else self.filter_board.reader(),
                        tuple(self.weight_boards[pid].reader()
                              for pid in self.policy_map.ids[1:]))
        self.workers = WorkerSet(
            self.runtime, self.worker_spec(), config.num_env_runners, boards,
            restart=config.restart_failed_env_runners,
            max_restarts=config.max_restarts_per_env_runner,
            sample_timeout_s=config.sample_timeout_s)
        request = self.first_sample_request() if prefetch else None
        if request is not None:
            self.workers.prefetch(**request)

    def first_sample_request(self) -> dict[str, Any] | None:
        """The request of the first ``workers.sample()`` of the first ``training_step``,
        sent as soon as the workers start (None: nothing is sent early). Whatever
        changes the workers' inputs before that sample (new weights, a restore, a
        checkpoint) discards the early fragments, so they never go stale."""
        return None

    def _check_multi_agent(self) -> None:
        """``ConfigError`` for a multi-agent env this algorithm or config cannot train."""
        if not self.multi_agent:
            names = ", ".join(sorted(n.upper() for n in multi_agent_algorithms()))
            raise ConfigError(f"{self.name} cannot train multi-agent envs ({self.config.env!r} "
                              f"is a PettingZoo env with agents {list(self.agents)}); use "
                              f"{names}")
        if self.agent_spaces is not None and self.config.normalize_obs:
            raise ConfigError(f"normalize_obs is not supported yet when the agents of "
                              f"{self.config.env!r} have different observation spaces; set "
                              "normalize_obs=false")

    # ------------------------------------------------------------------ policies
    @property
    def _one_policy(self) -> bool:
        """One policy with the run's own settings (every single-agent run)."""
        return len(self.policy_map.ids) == 1 and not self.policy_map.overrides

    def _checked_model_spec(self, pid: str) -> ModelSpec:
        """Policy ``pid``'s model, imported, built and run once; with several policies
        or overrides, an error names the policy (``ConfigError``/``ModelError``)."""
        if self._one_policy:
            spec = self.make_model_spec()
            spec.check()
            return spec
        try:
            spec = self.make_model_spec(self.policy_config(pid), self.policy_spaces(pid))
            spec.check()
        except ConfigError as e:
            raise type(e)(f"policy {pid!r}: {e}") from e
        return spec

    def policy_spaces(self, pid: str) -> tuple[gym.Space, gym.Space, gym.Space]:
        """Policy ``pid``'s (observation space it sees, action space, env observation
        space): the run's, or with agents of different spaces its agents' own."""
        if self.agent_spaces is None:
            return self.obs_space, self.action_space, self.env_obs_space
        from rl.envs.spaces import prepare_observation_space

        k = self.policy_map.positions(self.policy_map.ids.index(pid))[0]
        env_obs = self.agent_spaces.env_obs[k]
        return prepare_observation_space(env_obs), self.agent_spaces.action[k], env_obs

    def policy_config(self, pid: str) -> AlgorithmConfig:
        """The config policy ``pid`` trains with: the run's, with its ``policy_overrides``."""
        return self._policy_configs[pid]

    @property
    def model_spec(self) -> ModelSpec:
        """The first (for a single-agent run, the only) policy's model."""
        return self.model_specs[self.policy_map.ids[0]]

    @property
    def learner_group(self) -> LearnerGroup:
        """The first (for a single-agent run, the only) policy's learner group."""
        return self.learner_groups[self.policy_map.ids[0]]

    @property
    def board(self):
        """The first (for a single-agent run, the only) policy's weights board."""
        return self.weight_boards[self.policy_map.ids[0]]

    def run_callback(self, hook: str, *args: Any) -> None:
        """Call the user's driver-side ``hook`` (``rl.callbacks``), if any; a hook that
        raises becomes a ``CallbackError``."""
        if self.callbacks is not None:
            call_hook(self.callbacks, hook, *args)

    # ------------------------------------------------------------------ construction hooks
    def _check_resources(self) -> None:
        cfg = self.config
        n = cfg.num_learners
        caps = capabilities(cfg.backend, address=cfg.ray_address)
        # On a cluster, learner processes land on whichever nodes have the GPUs; this
        # machine's CUDA says nothing about theirs, so the backend's scheduler decides.
        remote_learners = caps.is_cluster and n >= 1
        try:
            # "auto" and "cpu" always resolve: only a CUDA device needs torch to check.
            if not remote_learners and cfg.device not in ("auto", "cpu"):
                from rl.learner import resolve_device

                resolve_device(cfg.device)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if cfg.num_gpus_per_learner > 0 and not torch.cuda.is_available() and not remote_learners:
            raise ConfigError(f"num_gpus_per_learner={cfg.num_gpus_per_learner} but CUDA is not "
                              "available on this machine; set it to 0")
        if n == 0:
            return
        if not caps.hosts_learner_ranks(n):
            able = " or ".join(b for b in BACKENDS if capabilities(b).hosts_learner_ranks(n))
            raise ConfigError(f"num_learners={n} needs backend={able}: the {cfg.backend} "
                              "backend runs learners in the driver process, which can hold only "
                              f"one torch.distributed rank; use num_learners 0 or 1 with "
                              f"{cfg.backend}")
        if cfg.device.startswith("cuda") and cfg.num_gpus_per_learner == 0:
            raise ConfigError(f"device={cfg.device} with num_learners={n} needs "
                              "num_gpus_per_learner > 0: a learner process sees only the GPUs "
                              "it is given")
        if n > 1 and cfg.device.startswith("cuda:"):
            raise ConfigError(f"device={cfg.device} would put all {n} learners on one GPU; use "
                              "device=cuda or auto (learner r takes GPU r)")
        gpus = n * cfg.num_gpus_per_learner
        # Learner processes that nobody schedules simply see this machine's GPUs.
        unscheduled = not caps.schedules_gpus and not caps.actors_in_driver
        if unscheduled and gpus > 0 and gpus > torch.cuda.device_count() > 0:
            raise ConfigError(f"num_learners={n} x num_gpus_per_learner="
                              f"{cfg.num_gpus_per_learner} needs {gpus:g} GPUs; this machine "
                              f"has {torch.cuda.device_count()}")
        if cfg.train_batch_size % n:
            raise ConfigError(f"train_batch_size ({cfg.train_batch_size}) must be divisible by "
                              f"num_learners ({n}): each learner trains on an equal share")

    def _set_learner_threads(self) -> None:
        """The learner in the driver gets the cores the worker processes leave free.

        Oversubscribing cores is far worse than leaving one idle: OpenMP threads
        spin-wait, and a 2-thread learner beside 2 busy workers on 2 cores runs ~20x
        slower than a 1-thread one (measured).
        """
        if capabilities(self.config.backend).actors_in_driver:
            return
        free = (os.cpu_count() or 1) - self.config.num_env_runners
        torch.set_num_threads(max(1, min(torch.get_num_threads(), free)))

    def worker_spec(self, num_envs: int | None = None, fragment: int | None = None) -> WorkerSpec:
        cfg = self.config
        return WorkerSpec(
            env_spec=self.env_spec, env_config=dict(cfg.env_config),
            obs_space=self.obs_space, action_space=self.action_space,
            num_envs=num_envs or cfg.num_envs_per_env_runner,
            fragment_length=fragment or cfg.fragment_length(), seed=cfg.seed,
            model=self.model_spec, normalize_obs=cfg.normalize_obs,
            needs_next_obs=self.needs_next_obs, callbacks=self.callbacks_class,
            max_seq_len=cfg.max_seq_len,
            restart_failed_sub_envs=cfg.restart_failed_sub_environments,
            exact_resume=cfg.exact_resume, agents=self.agents, turn_based=self.turn_based,
            models=() if len(self.model_specs) == 1 else tuple(self.model_specs.values()),
            agent_policy=None if len(self.model_specs) == 1 else self.policy_map.agent_policy)

    def builtin_model_kwargs(self, config: AlgorithmConfig | None = None) -> dict[str, Any]:
        """Keyword arguments of the built-in model (``model_class=None``), from the
        config's (or a policy's ``config``'s) model settings; ``model_kwargs`` adds to
        and overrides them."""
        cfg = config or self.config
        return {"hiddens": list(cfg.model_hiddens), "activation": cfg.model_activation,
                "vf_share_layers": cfg.vf_share_layers}

    def make_model_spec(self, config: AlgorithmConfig | None = None,
                        spaces: tuple[gym.Space, gym.Space, gym.Space] | None = None
                        ) -> ModelSpec:
        """The model the learner trains and the workers run (``ModelError`` if the
        config's ``model_class`` cannot be resolved). A recurrent one with ``use_lstm``
        (the built-in LSTM) or a ``model_class`` that has ``initial_state``.
        ``config``, ``spaces``: a policy's (``policy_config``, ``policy_spaces``), else
        the run's."""
        cfg = config or self.config
        obs_space, action_space, env_obs_space = spaces or (
            self.obs_space, self.action_space, self.env_obs_space)
        kwargs = dict(cfg.model_kwargs)
        kind = self.model_kind
        if cfg.model_class is None:
            kwargs = {**self.builtin_model_kwargs(cfg), **kwargs}
            if cfg.use_lstm:
                kind = RECURRENT
                kwargs.pop("vf_share_layers", None)  # the LSTM feeds both heads
                kwargs = {"lstm_cell_size": cfg.lstm_cell_size,
                          "use_prev_action": cfg.lstm_use_prev_action,
                          "use_prev_reward": cfg.lstm_use_prev_reward, **kwargs}
        elif is_recurrent(resolve_model_class(cfg.model_class)):
            kind = RECURRENT
        elif cfg.use_lstm:
            raise ConfigError(f"use_lstm wraps the built-in encoder; with model_class="
                              f"{cfg.model_class!r} write the recurrence into your model "
                              "(initial_state and forward(obs, state): see rl.policies."
                              "recurrent) and leave use_lstm false")
        if kind == RECURRENT and kind not in self.model_kinds:
            names = ", ".join(sorted(n.upper() for n in recurrent_algorithms()))
            raise ConfigError(f"{self.name} cannot train recurrent policies (use_lstm or a "
                              f"model with initial_state); use {names}")
        env_obs = env_obs_space if isinstance(env_obs_space, gym.spaces.Dict) else None
        return ModelSpec.create(kind, obs_space, action_space, cfg.model_class, kwargs, env_obs)

    def learner_factory(self, config: AlgorithmConfig | None = None,
                        model_spec: ModelSpec | None = None) -> Callable[[], Learner]:
        """A picklable constructor of one learner: called in the driver, or in each
        learner process with ``num_learners >= 1`` (``config``, ``model_spec``: a
        policy's, else the run's)."""
        cfg = config or self.config
        return functools.partial(self.learner_class, model_spec or self.model_spec, cfg,
                                 cfg.device)

    def make_learner_group(self, pid: str | None = None) -> LearnerGroup:
        """Build a learner group (called once per policy, before the workers start):
        policy ``pid``'s, with its config and model (None: the run's one policy)."""
        from rl.learner import LearnerGroup

        if pid is None:
            return LearnerGroup(self.learner_factory(), self.config, self.runtime)
        return LearnerGroup(self.learner_factory(self.policy_config(pid), self.model_specs[pid]),
                            self.policy_config(pid), self.runtime)

    def padded_widths(self, pid: str) -> dict[str, int]:
        """The fragment columns that travel zero-padded to the widest agent when agents
        have different spaces, and policy ``pid``'s own width of each (``{}`` when the
        agents share their spaces)."""
        if self.agent_spaces is None:
            return {}
        spec = self.model_specs[pid]
        obs = int(spec.obs_space.shape[0])
        widths = {C.OBS: obs, C.NEXT_OBS: obs, C.BEHAVIOUR_LOGITS: spec.dist_spec.input_dim}
        if spec.dist_spec.action_shape:
            widths[C.ACTIONS] = spec.dist_spec.action_shape[0]
        return widths

    def policy_columns(self, index: int, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Policy ``policy_map.ids[index]``'s columns of a multi-agent fragment
        (``[T, games x agents, ...]``): its (game, agent) slots, each column cut to the
        policy's own width where agents' spaces differ (``padded_widths``)."""
        num_games = batch[C.REWARDS].shape[1] // len(self.agents)
        slots = self.policy_map.slots(index, num_games)
        widths = self.padded_widths(self.policy_map.ids[index])
        return {c: v[:, slots] if c not in widths else v[:, slots, : widths[c]]
                for c, v in batch.items()}

    def setup(self) -> None:
        """Algorithm-specific state after workers and learners exist."""

    @abc.abstractmethod
    def training_step(self) -> dict[str, float]:
        """Sample, learn, sync; returns learner metrics (keys without prefix)."""

    # ------------------------------------------------------------------ weights
    def sync_weights(self) -> None:
        """Publish the learner's weights (and observation filter) to every worker."""
        with self.timers("sync"):
            self.workers.drop_prefetch()  # sampled with the weights these replace
            self.publish_obs_filter()
            for pid in self.policy_map.trainable:  # a frozen policy's never change
                self.weight_boards[pid].publish(self.learner_groups[pid].get_weights())

    def publish_obs_filter(self, vector: np.ndarray | None = None) -> np.ndarray | None:
        """Put observation statistics on their board (if normalising): ``vector``, or
        the driver's current ones. Returns what was published.

        Publish it before the weights it goes with: a worker that sees the new weights
        then sees their filter too (the two boards are polled in that order).
        """
        if self.filter_board is None:
            return None
        vector = self.obs_filter.to_vector() if vector is None else vector
        self.filter_board.publish(vector)
        return vector

    def ingest_fragments(self, results: list[dict[str, Any]]) -> int:
        """Book-keeping for fresh fragments: episodes, obs statistics, step counts."""
        steps = 0
        for r in results:
            self.episodes.add(r["episode_returns"], r["episode_lens"])
            for k, returns in (r.get("policy_episode_returns") or {}).items():
                # int(): a result restored from a checkpoint (IMPALA's in flight) has
                # the keys JSON gave it.
                self.policy_episodes[self.policy_map.ids[int(k)]].add(returns,
                                                                      r["episode_lens"])
            self.custom_metrics.add(r.get("custom_metrics"))
            if self.obs_filter is not None and r["obs_stats"] is not None:
                self.obs_filter.merge(*r["obs_stats"])
            steps += int(r["env_steps"])
        self.env_steps_total += steps
        return steps

    def schedule(self, start: float, end: float | None, kind: str = "linear",
                 horizon: int | None = None) -> float:
        """Linear interpolation from ``start`` to ``end`` by ``env_steps_total``.

        Args:
            start: the value at step 0.
            end: the value at the horizon and after (None: constant ``start``).
            kind: ``linear`` or ``constant``.
            horizon: env steps to reach ``end`` (0: at once). Default: the schedule
                horizon, ``schedule_timesteps`` or else the run's stop timesteps; with
                neither known the value stays at ``start``.
        """
        if end is None or kind == "constant":
            return start
        if horizon is None:
            horizon = self.config.schedule_timesteps or self.stop_timesteps
            if not horizon:
                return start
        if horizon <= 0:
            return end
        frac = min(1.0, self.env_steps_total / horizon)
        return start + frac * (end - start)

    # ------------------------------------------------------------------ the loop
    def train(self) -> dict[str, Any]:
        """Run one iteration; returns the flat result dict."""
        if self._stopped:
            raise RuntimeError(f"{self.name} was stopped; build a new one")
        start = time.perf_counter()
        steps_before = self.env_steps_total
        learner_metrics = self.training_step()
        self.iteration += 1
        elapsed = time.perf_counter() - start
        self.time_total_s += elapsed
        result: dict[str, Any] = {
            M.TRAINING_ITERATION: self.iteration,
            M.ENV_STEPS_TOTAL: self.env_steps_total,
            M.EPISODES_TOTAL: self.episodes.total,
            **self.episodes.stats(),
            **self._policy_episode_stats(),
            M.ENV_STEPS_PER_S: (self.env_steps_total - steps_before) / max(elapsed, 1e-9),
            M.TIME_TOTAL_S: self.time_total_s,
            **{f"learner/{k}": v for k, v in learner_metrics.items()},
            **self.timers.pop(),
            M.WORKERS_HEALTHY: self.workers.num_healthy,
            M.WORKERS_RESTARTS: self.workers.total_restarts,
            M.WORKERS_DROPPED: self.workers.dropped_fragments,
            M.ENV_ERRORS: self.workers.env_errors,
            **self.custom_metrics.pop(),
        }
        # Algorithm-specific keys never replace the base ones.
        result.update({k: v for k, v in self.result_extras().items() if k not in result})
        interval = self.config.evaluation_interval
        if interval and self.iteration % interval == 0:
            result.update(self._evaluation(self.config.evaluation_duration))
        self.run_callback("on_train_result", self, result)
        if self.logger is not None:
            self.logger.log(result)
        return result

    def _policy_episode_stats(self) -> dict[str, float]:
        """Multi-agent: ``policy/<id>/episode_return_mean`` (and max, min) per policy."""
        keys = (M.EPISODE_RETURN_MEAN, M.EPISODE_RETURN_MAX, M.EPISODE_RETURN_MIN)
        out = {}
        for pid, window in self.policy_episodes.items():
            stats = window.stats()
            out.update({f"policy/{pid}/{k}": stats[k] for k in keys})
        return out

    def result_extras(self) -> dict[str, Any]:
        """Algorithm-specific keys added to every result row unprefixed (for example
        DQN's ``replay/size``); ``training_step``'s keys get ``learner/`` instead."""
        return {}

    def fit(self, stop: dict[str, Any] | Any, checkpoint_every: int = 0,
            checkpoint_at_end: bool = True,
            verbose: bool | None = None) -> tuple[dict[str, Any], str | None]:
        """Train until a stop criterion holds (``episode_return_mean``,
        ``env_steps_total``, ``training_iteration``, ``time_total_s``); returns the last
        result and the final checkpoint path. Linear schedules use ``env_steps_total``
        as their horizon unless ``schedule_timesteps`` is set. ``verbose``: the progress
        line of ``rl train`` on stderr (None: when stderr is a TTY; False: fit() prints
        none of its own, though a logger attached with a console still prints its line)."""
        from rl.experiment import Stop, fit

        stop = stop if isinstance(stop, Stop) else Stop.from_dict(stop)
        return fit(self, stop, checkpoint_every=checkpoint_every,
                   checkpoint_at_end=checkpoint_at_end, verbose=verbose)

    # ------------------------------------------------------------------ evaluation & serving
    def evaluate(self, num_episodes: int | None = None, *, video_dir: str | None = None,
                 render: bool = False) -> dict[str, float]:
        """Greedy episodes in the driver with the current weights and frozen observation
        filter; returns the ``eval/`` metrics.

        Args:
            num_episodes: how many (default ``evaluation_duration``).
            video_dir: record every episode as an MP4 there (gymnasium's
                ``RecordVideo``; needs the ``rl[video]`` extra and an env that renders
                ``rgb_array`` frames).
            render: show the episodes in a window (``render_mode="human"``; needs a
                display).

        With a logger attached the evaluation is also logged: one ``result.jsonl`` row
        with the counters and the ``eval/`` keys, and TensorBoard scalars at the current
        env step. (Periodic evaluations, ``evaluation_interval``, are part of their
        iteration's row instead.)
        """
        if num_episodes is None:
            num_episodes = self.config.evaluation_duration
        if num_episodes < 1:
            raise ConfigError(f"evaluate: num_episodes must be >= 1, got {num_episodes}")
        metrics = self._evaluation(num_episodes, video_dir=video_dir, render=render)
        if self.logger is not None:
            self.logger.log_evaluation({M.TRAINING_ITERATION: self.iteration,
                                        M.ENV_STEPS_TOTAL: self.env_steps_total,
                                        M.TIME_TOTAL_S: self.time_total_s, **metrics})
        return metrics

    def _evaluation(self, n: int, video_dir: str | None = None,
                    render: bool = False) -> dict[str, float]:
        """``n`` greedy episodes' ``eval/`` metrics, after the user's ``on_evaluate_end``."""
        metrics = self._greedy_episodes(n, video_dir=video_dir, render=render)
        self.run_callback("on_evaluate_end", self, metrics)
        return metrics

    def _greedy_episodes(self, n: int, video_dir: str | None = None,
                         render: bool = False) -> dict[str, float]:
        if video_dir is not None and render:
            raise ConfigError("an evaluation records videos or shows a window, not both")
        mode = "rgb_array" if video_dir is not None else "human" if render else None
        with self._driver_lock:
            out = self._driver_worker().evaluate(n, render_mode=mode, video_dir=video_dir)
        r = out["episode_returns"]
        return {M.EVAL_RETURN_MEAN: float(np.mean(r)), M.EVAL_RETURN_STD: float(np.std(r)),
                M.EVAL_LEN_MEAN: float(np.mean(out["episode_lens"])),
                "eval/episodes": float(len(r))}

    def compute_actions(self, obs: Any, state: list[np.ndarray] | None = None,
                        explore: bool = False, prev_reward: Any = None) -> Any:
        """Actions for one observation or a batch, both in the env's own format (greedy
        by default; ``explore`` samples as the workers do).

        A multi-agent env's policy takes ``{agent: obs}`` (one observation each, in the
        agent's own format) and returns ``{agent: action}``.

        A recurrent policy (``use_lstm``) returns ``(actions, state)``: pass the state
        back with the next observation of the same episode, and None (the initial state)
        at an episode's start. ``state`` is a list of arrays, ``[...]`` each for one
        observation and ``[B, ...]`` for a batch. Feed-forward policies take no state.
        With ``lstm_use_prev_action`` the state's entries after the model's hold the
        action just taken, so it reaches the next call by itself; with
        ``lstm_use_prev_reward`` pass ``prev_reward``, the reward the env returned for
        it (a float, or ``[B]``), with every call but an episode's first (with
        ``state=None`` the previous reward is 0).

        ``obs``: as the env returns it, or a batch of such: an array of the space's
        shape or ``[B, *shape]``; for a ``Dict`` space a dict (of arrays with a leading
        batch dim, for a batch) or a list of dicts; for a ``Tuple`` space a tuple (of
        batched arrays) or a list of tuples (``rl.envs.flatten_observations``). One
        observation gives one action, a batch ``[B, *action_shape]``. An observation
        that does not fit the env's observation space raises ``ValueError`` naming it.

        Safe to call from several threads (a server's, say): calls, and ``evaluate``,
        take turns on the driver's worker, each with its own state; none touches the
        training workers' states or action streams.
        """
        if isinstance(state, bool):
            raise TypeError("compute_actions(obs, state=None, explore=False): pass explore by "
                            "name (explore=True)")
        with self._driver_lock:
            return self._compute_actions(obs, state, explore, prev_reward)

    def _compute_actions(self, obs: Any, state: Any, explore: bool, prev_reward: Any) -> Any:
        if self.agents is not None:
            return self._compute_agent_actions(obs, state, explore)
        batch, single = flatten_observations(self.env_obs_space, obs)
        if prev_reward is not None and C.PREV_REWARDS not in self.model_spec.prev_inputs:
            raise ValueError("compute_actions: prev_reward is read only with "
                             "lstm_use_prev_reward=true")
        if not self.model_spec.recurrent:
            if state is not None:
                raise ValueError(f"compute_actions: {self.name}'s policy has no state "
                                 "(only recurrent policies, use_lstm, take one)")
            actions = self._driver_worker().compute_actions(batch, explore)
            return actions[0] if single else actions
        if C.PREV_REWARDS in self.model_spec.prev_inputs and state is not None \
                and prev_reward is None:
            raise ValueError("compute_actions: with lstm_use_prev_reward pass prev_reward=, "
                             "the reward the env returned for the previous action (the "
                             "state alone does not know it)")
        if state is not None and single:
            state = [np.asarray(s)[None] for s in state]
        if prev_reward is not None:
            prev_reward = np.asarray(prev_reward, np.float32).reshape(-1)
        actions, new = self._driver_worker().compute_actions(batch, explore, state,
                                                             prev_reward)
        if single:
            return actions[0], [s[0] for s in new]
        return actions, new

    def _compute_agent_actions(self, obs: Any, state: Any, explore: bool) -> dict[str, Any]:
        """Multi-agent ``compute_actions``: ``{agent: obs}`` -> ``{agent: action}``, each
        agent through its policy (one batch per policy)."""
        if not isinstance(obs, dict) or not obs or not set(obs) <= set(self.agents):
            raise ValueError(f"compute_actions on the multi-agent env {self.config.env!r} takes "
                             f"{{agent: observation}} with agents from {list(self.agents)}, "
                             f"got {type(obs).__name__}"
                             + (f" with keys {sorted(obs)}" if isinstance(obs, dict) else ""))
        if len(self.model_specs) > 1 and any(m.recurrent for m in self.model_specs.values()):
            raise ValueError("compute_actions with several policies of which some are "
                             "recurrent is not supported yet; evaluate() runs them, and "
                             "rl export --policy ID exports one to carry its state yourself")
        if state is not None and not self.model_spec.recurrent:
            raise ValueError("compute_actions: this multi-agent policy is feed-forward and "
                             "takes no state")
        agents = list(obs)
        spaces = self.agent_spaces.env_obs if self.agent_spaces is not None else \
            [self.env_obs_space] * len(self.agents)
        try:
            parts = [flatten_observations(spaces[self.agents.index(a)], obs[a])
                     for a in agents]
        except ValueError as e:
            raise ValueError(f"compute_actions: {e}") from None
        if not all(single for _, single in parts):
            raise ValueError("compute_actions: give one observation per agent")
        if self.agent_spaces is not None:  # zero-padded to the widest, as in the workers
            width = self.obs_space.shape[0]
            parts = [(np.pad(b.astype(np.float32), ((0, 0), (0, width - b.shape[1]))), s)
                     for b, s in parts]
        positions = np.asarray([self.agents.index(a) for a in agents], np.int64)
        batch = np.concatenate([b for b, _ in parts])
        if self.model_spec.recurrent:
            return self._recurrent_agent_actions(agents, batch, state, explore)
        actions = self._driver_worker().compute_actions(batch, explore, positions=positions)
        return {a: actions[k] for k, a in enumerate(agents)}

    def _recurrent_agent_actions(self, agents: list[str], batch: np.ndarray, state: Any,
                                 explore: bool):
        """A recurrent shared policy: ``({agent: action}, {agent: state})`` from
        ``{agent: state}`` (None, or an agent missing from it: the initial state)."""
        if state is not None and (not isinstance(state, dict) or not set(state) <= set(agents)):
            raise ValueError("compute_actions: a multi-agent recurrent policy takes state as "
                             "{agent: state}, the states the previous call returned for the "
                             f"agents it is given ({agents})")
        if C.PREV_REWARDS in self.model_spec.prev_inputs:
            raise ValueError("compute_actions: lstm_use_prev_reward with a multi-agent env is "
                             "not supported by compute_actions yet")
        worker = self._driver_worker()
        initial = worker.policy.initial
        rows = [state.get(a) if state else None for a in agents]
        stacked = [np.stack([np.asarray(r[k], np.float32) if r is not None else init
                             for r in rows]) for k, init in enumerate(initial)]
        actions, new = worker.compute_actions(batch, explore, stacked)
        return ({a: actions[k] for k, a in enumerate(agents)},
                {a: [s[k] for s in new] for k, a in enumerate(agents)})

    def _driver_worker(self) -> RolloutWorker:
        """The worker in the driver that evaluates and serves, with the current weights
        and observation filter."""
        if self._eval_worker is None:
            # Its envs never train: the episode callbacks are the training workers'.
            spec = dataclasses.replace(self.worker_spec(
                num_envs=self.config.evaluation_num_envs, fragment=1), callbacks=None)
            self._eval_worker = RolloutWorker(spec, worker_index=0, boards=None)
        for k, pid in enumerate(self.policy_map.ids):
            self._eval_worker.set_weights(self.learner_groups[pid].get_weights(),
                                          self.weight_boards[pid].version, policy=k)
        if self.obs_filter is not None:
            self._eval_worker.set_obs_filter(self.obs_filter.to_vector())
        return self._eval_worker

    # ------------------------------------------------------------------ logging
    def attach_logger(self, logdir: str | None = None, console=None,
                      budget_steps: int | None = None, tensorboard: bool = True, *,
                      run_dir: str | None = None) -> str:
        """Log every iteration to a run directory; returns its path.

        Args:
            logdir: create ``<logdir>/<algo>_<env>_<timestamp>/`` (a new run).
            console: where progress lines go (None: nowhere).
            budget_steps: the env-step budget the progress line measures against.
            tensorboard: also write TensorBoard events.
            run_dir: instead of ``logdir``, continue this existing run directory: rows
                are appended to its ``result.jsonl`` and TensorBoard's curve goes on (its
                steps are ``env_steps_total``), as a resumed run does; its
                ``params.json`` stays the original's (a changed config is written to
                ``params_resumed_<iteration>.json`` beside it).
        """
        if (logdir is None) == (run_dir is None):
            raise ValueError("attach_logger: give exactly one of logdir (a new run) and "
                             "run_dir (continue an existing one)")
        if run_dir is None:
            stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
            # The resolved id (CartPole -> CartPole-v1): one name whatever was typed.
            env = self.env_spec.env_id.replace("/", "-").replace(":", "-")
            run_dir = base = os.path.join(logdir, f"{self.config.algo_name}_{env}_{stamp}")
            suffix = 1
            while os.path.exists(run_dir):
                suffix += 1
                run_dir = f"{base}_{suffix}"
        continued = self.iteration if logdir is None else None
        self.logger = M.RunLogger(run_dir, self.config.to_dict(), console=console,
                                  budget_steps=budget_steps, tensorboard=tensorboard,
                                  resumed_at=continued)
        self.run_dir = run_dir
        return run_dir

    # ------------------------------------------------------------------ checkpoints
    def extra_state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict]]:
        """Algorithm-specific (json state, tensors, arrays) to add to checkpoints."""
        return {}, {}, {}

    def publish_restored_weights(self) -> None:
        """Put the restored weights on the boards for the workers (the learners'; a
        frozen policy's too)."""
        self.sync_weights()
        for pid in self.policy_map.ids:
            if pid not in self.policy_map.trainable:
                self.weight_boards[pid].publish(self.learner_groups[pid].get_weights())

    def load_extra_state(self, path: str, state: dict[str, Any]) -> None:
        """Restore what ``extra_state`` saved; runs after the workers' state is restored
        (``self.resumed_workers``: those whose episodes continue exactly)."""

    def save(self, path: str | None = None) -> str:
        """Write a checkpoint (default: ``<run_dir>/checkpoint_<iter>``); returns its path."""
        if path is None:
            base = self.run_dir or os.path.join(os.getcwd(), "checkpoints")
            path = os.path.join(base, f"checkpoint_{self.iteration:06d}")
        extra_json, extra_tensors, extra_arrays = self.extra_state()
        state = {
            "algo": self.config.algo_name,
            "config": self.config.to_dict(),
            "iteration": self.iteration,
            "env_steps_total": self.env_steps_total,
            "time_total_s": self.time_total_s,
            "episodes": self.episodes.state(),
            "rng": ckpt.rng_to_plain(self.rng),
            "torch_rng": torch.get_rng_state().tolist(),
            "stop_timesteps": self.stop_timesteps,
            "stop": self.stop_criteria,
            # Named, never pickled: loading imports the class again.
            "model": {"model_class": self.config.model_class,
                      "model_kwargs": dict(self.config.model_kwargs)},
            "extra": extra_json,
            # Multi-agent: the policies (the first's learner is learner.pt, the others'
            # learner_<id>.pt) and their episode windows.
            "policies": list(self.policy_map.ids),
            "policy_episodes": {p: w.state() for p, w in self.policy_episodes.items()},
        }
        state["workers"], worker_arrays = self.workers.get_state()
        tensors = {"learner": self.learner_group.state(), **extra_tensors}
        for pid in self.policy_map.ids[1:]:
            tensors[f"learner_{pid}"] = self.learner_groups[pid].state()
        arrays = {**extra_arrays, **worker_arrays}
        if self.obs_filter is not None:
            arrays["obs_filter"] = self.obs_filter.state()
        self.last_checkpoint = ckpt.save_checkpoint(path, ckpt.stamp(state), tensors, arrays)
        self.run_callback("on_checkpoint", self, self.last_checkpoint)
        return self.last_checkpoint

    def restore(self, path: str, *, workers: bool = True) -> None:
        """Load learner, counters, filter and RNG state from a checkpoint into self.

        Args:
            path: a checkpoint directory (``save()``'s).
            workers: also restore the rollout workers' running episodes and restart
                counters, as a resumed run does; False for an algorithm that only
                evaluates or serves the policy (its workers are never asked).

        Raises:
            CheckpointError: a file of the checkpoint is missing, corrupt, written by
                another algorithm or a newer rl, or does not fit this config's model;
                the message names the file and why.
        """
        state, learner, filt = self._check_checkpoint(path)
        self._load_learner_state(path, learner)
        for pid, saved in self._check_policy_files(path, state).items():
            self._load_learner_state(path, saved, pid)
        try:
            self.iteration = int(state["iteration"])
            self.env_steps_total = int(state["env_steps_total"])
            self.time_total_s = float(state["time_total_s"])
            self.episodes.load_state(state["episodes"])
            for pid, saved in (state.get("policy_episodes") or {}).items():
                if pid in self.policy_episodes:
                    self.policy_episodes[pid].load_state(saved)
            ckpt.rng_from_plain(self.rng, state["rng"])
            torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ckpt.CheckpointError(f"{os.path.join(path, ckpt.STATE_FILE)} is corrupt: "
                                       f"{error_line(e)}") from e
        self.stop_timesteps = state.get("stop_timesteps")
        saved_stop = state.get("stop")
        self.stop_criteria = dict(saved_stop) if isinstance(saved_stop, dict) else None
        if self.obs_filter is not None and filt is not None:
            self.obs_filter.load_state(filt)
        if workers:
            saved = state.get("workers") or {}
            self.resumed_workers = self.workers.set_state(saved, {
                f"worker_{i}": arrays for i in range(int(saved.get("num_workers", 0)))
                if (arrays := ckpt.load_arrays(path, f"worker_{i}")) is not None})
        self.load_extra_state(path, state.get("extra", {}))
        self.publish_restored_weights()
        self.timers.pop()

    def _check_checkpoint(self, path: str) -> ckpt.CheckedCheckpoint:
        """Read and check the checkpoint's files against this config's model and spaces
        (no process needed); see ``rl.checkpoint.read_checked``."""
        checked = ckpt.read_checked(
            path, algo_name=self.config.algo_name, module=self.model_spec.build(),
            model=self._described(self.policy_map.ids[0]),
            obs_shape=None if self.obs_filter is None else self.obs_space.shape)
        self._check_policy_files(path, checked[0])
        return checked

    def _described(self, pid: str) -> str:
        """Policy ``pid``'s model in words (class and sizes), for checkpoint errors."""
        spec, cfg = self.model_specs[pid], self.policy_config(pid)
        return (f"{spec.model_cls.__name__}, model_hiddens={list(cfg.model_hiddens)}"
                if spec.is_builtin else f"{spec.name}, model_kwargs={spec.model_kwargs}")

    def _check_policy_files(self, path: str, state: dict[str, Any]) -> dict[str, Any]:
        """The checked learner files of the policies after the first (``learner_<id>.pt``),
        by id; ``CheckpointError`` if the checkpoint holds other policies."""
        saved = state.get("policies") or [self.policy_map.ids[0]]
        if list(saved) != list(self.policy_map.ids):
            raise ckpt.CheckpointError(
                f"{os.path.join(path, ckpt.STATE_FILE)}: the checkpoint holds the policies "
                f"{list(saved)}, this config has {list(self.policy_map.ids)}")
        out = {}
        for pid in self.policy_map.ids[1:]:
            file = os.path.join(path, f"learner_{pid}.pt")
            learner = ckpt.load_tensors(path, f"learner_{pid}")
            if not isinstance(learner, dict) or not {"module", "optimizer"} <= set(learner):
                raise ckpt.CheckpointError(f"{file} is corrupt: expected the learner's module "
                                           "and optimizer state")
            ckpt.check_shapes(file, learner["module"], self.model_specs[pid].build().state_dict(),
                              what=f"policy {pid!r}'s model ({self._described(pid)})")
            out[pid] = learner
        return out

    def _load_learner_state(self, path: str, learner: dict[str, Any],
                            pid: str | None = None) -> None:
        """A checked learner file (``_check_checkpoint``) into its policy's learner group
        (``pid`` None: the first policy's, ``learner.pt``)."""
        file = os.path.join(path, "learner.pt" if pid is None else f"learner_{pid}.pt")
        group = self.learner_group if pid is None else self.learner_groups[pid]
        try:
            group.load_state(learner)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ckpt.CheckpointError(f"{file} does not load into the learner: "
                                       f"{error_line(e)}") from e

    @classmethod
    def config_from_checkpoint(cls, path: str) -> AlgorithmConfig:
        """The config saved in the checkpoint at ``path`` (of ``cls``'s algorithm when
        called on a subclass: ``PPO.config_from_checkpoint``)."""
        from rl.algorithms.registry import UnknownAlgorithmError, algorithm_class

        state = ckpt.load_state(path)
        ckpt.require(state, path, algo=str, config=dict)
        file = os.path.join(path, ckpt.STATE_FILE)
        try:
            algo_class = algorithm_class(state["algo"])
        except UnknownAlgorithmError as e:
            raise ckpt.CheckpointError(f"{file}: written by an algorithm this rl does not "
                                       f"have ({e})") from None
        if not issubclass(algo_class, cls):
            raise ckpt.CheckpointError(f"{path} holds a {algo_class.__name__} checkpoint, not "
                                       f"{cls.__name__}")
        try:
            return algo_class.config_class.from_dict(state["config"])
        except ConfigError as e:
            raise ckpt.CheckpointError(f"{file}: the saved config does not load: {e}") from None

    @classmethod
    def from_checkpoint(cls, path: str, logdir: str | None = None, *, workers: bool = True,
                        **overrides: Any) -> Algorithm:
        """Build the algorithm saved at ``path`` and restore its state.

        Args:
            path: a checkpoint directory.
            logdir: log to a new run directory under it (as ``config.build(logdir)``).
            workers: restore the rollout workers' running episodes (see ``restore``).
            overrides: config fields to change (e.g. ``num_env_runners``, ``backend``).

        Raises:
            CheckpointError: the checkpoint is damaged, or (called on a subclass, e.g.
                ``PPO.from_checkpoint``) holds another algorithm.
        """
        config = cls.config_from_checkpoint(path)
        config.set(**overrides)
        try:
            algo = config.build(logdir=logdir, checkpoint=path)
        except ModelError as e:
            raise ckpt.CheckpointError(f"{path} was trained with a model that does not load "
                                       f"here: {e}") from None
        try:
            algo.restore(path, workers=workers)
        except BaseException:
            algo.stop()
            raise
        return algo

    # ------------------------------------------------------------------ shutdown
    def stop(self) -> None:
        """Stop workers and learners and release shared memory. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self.workers.stop()
            for group in self.learner_groups.values():
                group.stop()
            for board in self.weight_boards.values():
                board.close()
            if self.filter_board is not None:
                self.filter_board.close()
        finally:
            self.runtime.shutdown()
            if self.logger is not None:
                self.logger.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def multi_agent_algorithms() -> list[str]:
    """Names of the registered algorithms that train multi-agent envs."""
    from rl.algorithms.registry import ALGORITHMS, algorithm_class

    return [name for name in ALGORITHMS if algorithm_class(name).multi_agent]


def recurrent_algorithms() -> list[str]:
    """The registered algorithms that train recurrent policies."""
    from rl.algorithms.registry import ALGORITHMS, algorithm_class

    return [name for name in ALGORITHMS if RECURRENT in algorithm_class(name).model_kinds]
