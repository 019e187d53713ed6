"""RolloutWorker: steps a vector of envs with the current policy and returns fragments.

A worker is an actor (or, with ``num_env_runners=0``, an object in the driver). Each
``sample()`` call:

1. polls the weights board and loads new weights only if the version moved;
2. runs ``fragment_length`` steps of its ``VectorEnv``, one batched
   forward per step for all sub-envs (in numpy for the built-in MLPs: such a worker
   never imports torch; see ``rl.rollout.policy``), writing into
   time-major columns ``[T, N, ...]``: on the process backend a fragment of at
   least ``SHM_THRESHOLD`` bytes goes straight into one of the worker's reusable
   shared-memory blocks and travels as a ``BlockHandle`` (``rl.runtime.blocks``), else
   into fresh arrays (which the runtime ships through shared memory when large);
3. returns the columns plus the episodes it finished, the sub-env errors it survived
   and, with observation normalisation on, the raw-observation statistics it gathered.

Bootstrapping: ``next_vf_preds[t]`` holds V(s_{t+1}) for the transition at t: the
next row's value inside an episode, V(final obs) where the episode was truncated,
V(obs_T) for the fragment's last row (and 0 where it terminated). With
``needs_next_obs`` the worker also writes ``next_obs`` (true final obs at episode
ends) for off-policy replay.

Recurrent policies (``spec.model.recurrent``): the policy carries one model state per
sub-env across steps and fragments; a sub-env's state is reset to the model's initial
state where its episode starts, and the fragment gets the states at rows ``0, L, 2L,
...`` (``L = spec.max_seq_len``) as ``state_in_<k>`` columns ``[ceil(T / L), N, ...]``:
the learner's sequences start there or at an episode start (``rl.data.sequences``).
Bootstrap values use the state carried to that point (the fragment's end, or the end
of a truncated episode). A model that reads the previous action and reward
(``spec.model.prev_inputs``) carries them with its state, per sub-env, zeros where an
episode starts; the fragment gets them per step as the ``prev_actions`` /
``prev_rewards`` columns, and checkpoints save them with the model states.

Multi-agent envs (``spec.agents``) run as a ``MultiAgentVectorEnv`` of (game, agent)
slots. With several policies (``spec.models``, ``spec.agent_policy``) each slot's policy
follows from its agent position: every step each policy acts in one forward pass on its
slots' rows, and the results are gathered into the same ``[T, N]`` columns (the driver
splits them per policy, ``rl.algorithms.policy_map``). Each policy has its own board
(``Boards.policy_weights``); evaluation and ``compute_actions`` route rows the same way.
A fragment also gives each policy's share of every ended game's return, and its batch
a ``valid`` column (the rows that are not padding: ``~discarded``). Turn-based AEC
games (``spec.turn_based``) have a loop of their own, one row per resolved move
(``rl.rollout.turn_based``).

A sub-env that raises (with ``restart_failed_sub_envs``) is recreated by the
``VectorEnv``; its broken episode ends as a truncation at its last good observation,
is not reported, and its rows in the fragment are flagged in ``discarded`` so that an
algorithm can leave them out of training.

State (``get_state``/``set_state``, for exact resume): the ``VectorEnv``'s state (resets,
running returns and, with ``spec.exact_resume``, the actions of each running game) plus
the action-sampling generator (a ``numpy.random.Generator`` where every policy runs in
numpy, else a ``torch.Generator``). Restoring it on a fresh worker continues the saved one's
episodes and action stream exactly (for envs that are deterministic given seed and
actions; see ``rl.resume``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from rl.callbacks import EpisodeHooks
from rl.data import columns as C
from rl.envs import EnvSpec, MultiAgentVectorEnv, VectorEnv, env_factory, is_image_space
from rl.envs.normalization import RunningMeanStd
from rl.envs.turn_based import TurnBasedVectorEnv
from rl.policies import ModelSpec
from rl.rollout.lanes import PolicyLanes
from rl.rollout.slot_states import SlotStates
from rl.rollout.turn_based import sample_turn_based
from rl.runtime.base import BoardReader
from rl.runtime.blocks import block_ring, layout_of
from rl.runtime.shared import share
from rl.runtime.wire import SHM_THRESHOLD

__all__ = ["Boards", "RolloutWorker", "WorkerSpec"]


@dataclass(frozen=True)
class Boards:
    """What a worker polls before each fragment, one board per channel (picklable).

    Attributes:
        weights: the policy's flat weights (the first policy's, with several).
        obs_filter: the observation filter's ``[mean, var, count]`` vector (with
            ``normalize_obs``), else None.
        policy_weights: the flat weights of the other policies of a multi-agent run
            (``WorkerSpec.models[1:]``), in order.
    """

    weights: BoardReader
    obs_filter: BoardReader | None = None
    policy_weights: tuple[BoardReader, ...] = ()  # policies 1.. of a multi-policy run


@dataclass
class WorkerSpec:
    """Everything a worker needs to build its envs and policy (picklable)."""

    env_spec: EnvSpec
    env_config: dict
    obs_space: Any
    action_space: Any
    num_envs: int
    fragment_length: int
    seed: int | None
    model: ModelSpec
    normalize_obs: bool = False
    needs_next_obs: bool = False
    callbacks: type | None = None  # a Callbacks subclass: the worker-side episode hooks
    max_seq_len: int = 20  # recurrent models: rows between recorded states
    restart_failed_sub_envs: bool = False
    exact_resume: bool = True  # record the running games for replay (rl.resume)
    agents: tuple[str, ...] | None = None  # a multi-agent env's agents
    # Several policies (multi-agent): every policy's model (``model`` is models[0]) and,
    # per agent position, the index of the policy that plays it.
    models: tuple[ModelSpec, ...] = ()
    agent_policy: tuple[int, ...] | None = None
    turn_based: bool = False  # a turn-based AEC env (rl.envs.turn_based)


class RolloutWorker:
    """Owns ``spec.num_envs`` envs and an inference copy of the policy.

    Args:
        spec: what to build.
        worker_index: the worker's index; its sub-envs' global indices follow from it.
        boards: where to read weights and the observation filter (None: ``set_weights``
            and ``set_obs_filter`` only).
        incarnation: how many workers held this index before (restarts); a replacement
            plays episodes of its own seed stream rather than its predecessor's.
    """

    def __init__(self, spec: WorkerSpec, worker_index: int, boards: Boards | None,
                 incarnation: int = 0):
        self.spec = spec
        self.worker_index = worker_index
        self.boards = boards
        self.weights_version = 0
        self.filter_version = 0
        first = worker_index * spec.num_envs
        image = is_image_space(spec.obs_space)
        self.obs_dtype = spec.obs_space.dtype if image else np.float32
        self.hooks = None if spec.callbacks is None else \
            EpisodeHooks(spec.callbacks(), spec.num_envs, first)
        self.venv = self._vector_env(env_factory(spec.env_spec, spec.env_config),
                                     spec.num_envs, spec.seed, first_index=first,
                                     obs_dtype=self.obs_dtype, stream=incarnation,
                                     restart_failed=spec.restart_failed_sub_envs,
                                     record_actions=spec.exact_resume, hooks=self.hooks)
        self.num_slots = self.venv.num_envs  # sub-envs, or (game, agent) slots
        self.dist_spec = spec.model.dist_spec
        models = spec.models or (spec.model,)
        # The policies and the rows each acts for (several policies: by agent position).
        self.policy_lanes = PolicyLanes(models, self.num_slots, spec.agent_policy,
                                    None if spec.agents is None else len(spec.agents))
        self.policies = self.policy_lanes.policies
        self.policy = self.policies[0]
        self.agent_policy = self.policy_lanes.agent_policy
        self.columns, self.action_shape = self.policy_lanes.columns, self.policy_lanes.action_shape
        self.recurrent = any(m.recurrent for m in models)
        # Several policies, some recurrent: every slot's state in one place; the
        # recurrent policies act on their slots' rows of it (rl.rollout.slot_states).
        self.slot_states = None
        if self.recurrent and self.agent_policy is not None:
            self.slot_states = self.policy = SlotStates(self.policies, self.agent_policy,
                                                        self.num_slots)
        self.weights_versions = [0] * len(models)
        self.lanes = self._lanes(np.arange(self.num_slots))
        # Multi-agent: every slot's return in the running game (per-policy returns).
        self.slot_returns = np.zeros(self.num_slots, np.float64) if spec.agents else None
        # (layout, nbytes) of this worker's fragments once the first one gave it; () for
        # fragments too small for a block.
        self._block_layout: tuple | None = None
        seed = 0 if spec.seed is None else spec.seed
        self.generator = _generator(seed * 7919 + worker_index + 104_729 * incarnation,
                                    self.policy_lanes.numpy_sampling)
        self.obs_filter = RunningMeanStd(spec.obs_space.shape) if spec.normalize_obs else None
        self.mask_columns = spec.model.layout.mask if spec.model.masked else None
        self.pending_moves: dict[str, np.ndarray] | None = None  # turn-based games
        self.obs = self.venv.reset().copy()

    def _vector_env(self, make, num_envs: int, seed: int | None, **kwargs):
        """A ``VectorEnv``, or for a multi-agent env a ``MultiAgentVectorEnv`` of
        ``num_envs`` games."""
        cls = VectorEnv if self.spec.agents is None else \
            TurnBasedVectorEnv if self.spec.turn_based else MultiAgentVectorEnv
        return cls(make, num_envs, seed, **kwargs)

    # ------------------------------------------------------------------ policies
    def _lanes(self, slots: np.ndarray) -> list[np.ndarray] | None:
        return self.policy_lanes.of(slots)

    def _act(self, obs: np.ndarray, lanes: list[np.ndarray] | None,
             request: dict) -> dict[str, np.ndarray]:
        return self.policy_lanes.act(obs, lanes, self.generator, request)

    def _env_actions(self, actions: np.ndarray, lanes: list[np.ndarray] | None):
        return self.policy_lanes.env_actions(actions, lanes)

    def _rows(self, method: str, obs: np.ndarray, lanes: list[np.ndarray] | None) -> np.ndarray:
        return self.policy_lanes.rows(method, obs, lanes)

    # ------------------------------------------------------------------ weights
    def sync_weights(self) -> int:
        """Load the newest weights and observation filter where their boards moved."""
        if self.boards is None:
            return self.weights_version
        readers = (self.boards.weights, *self.boards.policy_weights)
        for k, (reader, policy) in enumerate(zip(readers, self.policies)):
            version, vector = reader.poll(self.weights_versions[k])
            if vector is not None:
                policy.load_weights(vector)
                self.weights_versions[k] = version
        self.weights_version = self.weights_versions[0]
        if self.obs_filter is not None and self.boards.obs_filter is not None:
            version, vector = self.boards.obs_filter.poll(self.filter_version)
            if vector is not None:
                self.obs_filter.load_vector(vector)
                self.filter_version = version
        return self.weights_version

    def set_weights(self, vector: np.ndarray, version: int, policy: int = 0) -> None:
        """Load weights directly (used where no board exists, e.g. evaluation);
        ``policy``: which policy's (its index in ``WorkerSpec.models``)."""
        self.policies[policy].load_weights(vector)
        self.weights_versions[policy] = version
        self.weights_version = self.weights_versions[0]

    def set_obs_filter(self, vector: np.ndarray) -> None:
        """Load the observation filter's vector directly (no-op without normalisation)."""
        if self.obs_filter is not None:
            self.obs_filter.load_vector(vector)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """Observations as the policy sees them: filtered (with ``normalize_obs``) and
        in the policy's input dtype."""
        if self.obs_filter is not None:
            raw, obs = obs, self.obs_filter.normalize(obs)
            if self.mask_columns is not None:  # an action mask stays 0/1
                a, b = self.mask_columns
                obs[..., a:b] = raw[..., a:b]
        return np.ascontiguousarray(obs, self.obs_dtype)

    def compute_actions(self, obs: np.ndarray, explore: bool = False,
                        state: list[np.ndarray] | None = None,
                        prev_reward: np.ndarray | None = None,
                        positions: np.ndarray | None = None):
        """Env actions for a batch of raw observations ``[B, *obs_shape]``: greedy, or
        sampled as in ``sample`` (with its default request) when ``explore``.

        Recurrent policies take and return the state: ``(actions, state)``, with
        ``state`` a list of arrays ``[B, ...]`` (None: the initial state; the layout of
        ``RecurrentActorCriticPolicy.state``). ``prev_reward`` ``[B]``: the rewards the
        env returned for the actions of the previous call (a model that reads them).
        ``positions`` ``[B]``: with several policies, the agent position (in
        ``WorkerSpec.agents``) of each row, which picks the policy that acts for it."""
        if self.slot_states is not None:
            raise ValueError("compute_actions: several policies with a recurrent one are not "
                             "supported yet; evaluate() runs them, or serve each policy's "
                             "export (rl export --policy)")
        if self.agent_policy is not None:
            normalized = self.normalize(obs)
            lanes = self._lanes(np.asarray(positions, np.int64))
            actions = self._act(normalized, lanes, {})[C.ACTIONS] if explore else \
                self._rows("greedy", normalized, lanes)
            return self._env_actions(actions, lanes)
        tensor = self.policy_lanes.input(0, self.normalize(obs))
        if self.recurrent:
            carried = self.policy.state
            self.policy.state = [np.repeat(s[None], len(obs), axis=0) for s in
                                 self.policy.initial] if state is None else \
                [np.array(s, np.float32) for s in state]
            if len(self.policy.state) != len(self.policy.initial):
                self.policy.state = carried
                raise ValueError(f"compute_actions: the state is a list of "
                                 f"{len(self.policy.initial)} arrays (what the previous call "
                                 f"returned), got {len(state)}")
            if prev_reward is not None and state is not None:
                self.policy.observe(np.broadcast_to(np.asarray(prev_reward, np.float32),
                                                    (len(obs),)))
            try:
                actions = self.policy.act(tensor, self.generator, {})[C.ACTIONS] if explore \
                    else self.policy.greedy(tensor)
                return self.dist_spec.env_actions(actions), self.policy.state
            finally:
                self.policy.state = carried
        if explore:
            actions = self.policy.act(tensor, self.generator, {})[C.ACTIONS]
        else:
            actions = self.policy.greedy(tensor)
        return self.dist_spec.env_actions(actions)

    # ------------------------------------------------------------------ sampling
    def sample(self, **request: Any) -> dict[str, Any]:
        """Run one fragment; ``request`` carries per-call options (e.g. ``epsilon``;
        ``share_batch=True`` returns the batch as a ``Shared`` handle, see
        ``rl.runtime.shared``, for the driver to pass on to learner processes).

        Returns:
            ``{"batch": {column: [T, N, ...] array}, "env_steps": T * num_envs,
            "agent_steps": rows that are not padding (T * N single-agent),
            "policy_episode_returns": multi-agent: {policy index: [E]}, the return of each
            ended game summed over the agents that policy plays (else None),
            "episode_returns": [E],
            "episode_lens": [E], "weights_version": int, "custom_metrics": {name:
            [value per episode that ended]} with callbacks (else None), "obs_stats": (mean, var, count)
            or None, "worker_index": int, "env_errors": [(sub-env, method, error)],
            "discarded": bool [T, N] (rows of episodes a sub-env error broke, and
            multi-agent padding) or None}``; ``N`` is the number of slots (sub-envs, or
            games x agents for a multi-agent env). On the process backend a large
            fragment's ``batch`` is a ``BlockHandle`` of the worker's block instead
            (``rl.runtime.blocks``): ``WorkerSet`` resolves it into the columns and keeps
            the handle as ``block``, for the caller to hand back.
        """
        result = sample_turn_based(self, request) if self.spec.turn_based else \
            self._sample(request)
        trace_first_sample()
        return result

    def _sample(self, request: dict[str, Any]) -> dict[str, Any]:
        self.sync_weights()
        T, N = self.spec.fragment_length, self.num_slots
        multi_agent = self.spec.agents is not None
        obs_shape = self.spec.obs_space.shape
        block = self._acquire_block(request)
        column = _column_allocator(None if block is None else block[1])
        batch = {
            C.OBS: column(C.OBS, (T, N, *obs_shape), self.obs_dtype),
            C.ACTIONS: column(C.ACTIONS, (T, N, *self.action_shape),
                              self.dist_spec.action_dtype),
            C.REWARDS: column(C.REWARDS, (T, N), np.float32),
            C.TERMINATEDS: column(C.TERMINATEDS, (T, N), np.bool_),
            C.TRUNCATEDS: column(C.TRUNCATEDS, (T, N), np.bool_),
        }
        for name, (shape, dtype) in self.columns.items():
            batch[name] = column(name, (T, N, *shape), dtype)
        L = self.spec.max_seq_len
        end_states: dict[tuple[int, int], list[np.ndarray]] = {}
        if self.recurrent:
            for k, shape in enumerate(self.policy.state_shapes()):
                batch[C.state_column(k)] = column(C.state_column(k), (-(-T // L), N, *shape),
                                                  np.float32)
        raw_obs = np.empty((T, N, *obs_shape), np.float64) if self.obs_filter else None
        next_obs = column(C.NEXT_OBS, (T, N, *obs_shape), self.obs_dtype) \
            if self.spec.needs_next_obs else None
        # (t, env) -> final obs for every episode end, bootstrapped afterwards in one pass.
        ends: list[tuple[int, int, np.ndarray]] = []
        episode_returns: list[float] = []
        episode_lens: list[int] = []
        discarded: np.ndarray | None = None
        # Multi-agent: the rows of slots whose agent is not alive are padding.
        padding = np.empty((T, N), np.bool_) if multi_agent else None
        episode_start = np.zeros(N, np.int64)  # first row of each sub-env's episode
        policy_returns: dict[int, list[float]] | None = None
        if multi_agent:
            policy_returns = {k: [] for k in range(len(self.policies))}
            A = len(self.spec.agents)
            owner = np.zeros(A, np.int64) if self.agent_policy is None else self.agent_policy
        obs = self.obs
        for t in range(T):
            if padding is not None:
                np.logical_not(self.venv.active, out=padding[t])
            if raw_obs is not None:
                raw_obs[t] = obs
            obs_in = self.normalize(obs)
            batch[C.OBS][t] = obs_in
            if self.recurrent and t % L == 0:
                for k in range(self.policy.num_model_states):
                    batch[C.state_column(k)][t // L] = self.policy.state[k]
            out = self._act(batch[C.OBS][t], self.lanes, request)
            for name, value in out.items():
                batch[name][t] = value
            res = self.venv.step(self._env_actions(out[C.ACTIONS], self.lanes))
            batch[C.REWARDS][t] = res.rewards
            if self.recurrent:
                self.policy.observe(res.rewards)
            batch[C.TERMINATEDS][t] = res.terminateds
            batch[C.TRUNCATEDS][t] = res.truncateds
            for i in res.failed:
                if discarded is None:
                    discarded = np.zeros((T, N), np.bool_)
                discarded[episode_start[i] : t + 1, i] = True
            for i, final in res.final_obs.items():
                ends.append((t, i, final))
                episode_start[i] = t + 1
                if self.recurrent:  # the state a truncated episode bootstraps from
                    end_states[t, i] = self.policy.env_state(i)
                    self.policy.reset_state(i)
            if self.recurrent and multi_agent:
                # An absent agent arrives with a fresh state: the slots absent now, and
                # those that were absent in this row (their padding step advanced their
                # state and previous action from dummy inputs; the learner starts their
                # next sequence from the initial state).
                self.policy.reset_states(~self.venv.active | padding[t])
            for ret, length in res.reported_episodes(self.venv.reports_real_episodes):
                episode_returns.append(ret)
                episode_lens.append(length)
            if policy_returns is not None:
                self._policy_returns(res, A, owner, policy_returns)
            obs = res.obs
            if next_obs is not None and t > 0:
                next_obs[t - 1] = batch[C.OBS][t]
        self.obs = obs.copy()
        last_in = self.normalize(self.obs)
        if next_obs is not None:
            next_obs[T - 1] = last_in
            for t, i, final in ends:
                next_obs[t, i] = self.normalize(final)
        if C.VF_PREDS in batch:
            batch[C.NEXT_VF_PREDS] = self._next_values(batch, last_in, ends, end_states)
        if next_obs is not None:
            batch[C.NEXT_OBS] = next_obs
        agent_steps = T * N
        if padding is not None:
            discarded = padding if discarded is None else discarded | padding
            agent_steps = int(T * N - padding.sum())
            batch[C.VALID] = ~discarded
        stats = None
        if raw_obs is not None:
            flat = raw_obs.reshape(T * N, *obs_shape)
            if padding is not None:
                flat = flat[~padding.reshape(-1)]
            if len(flat):
                stats = (flat.mean(axis=0), flat.var(axis=0), float(len(flat)))
        env_errors, self.venv.errors = self.venv.errors, []
        return {
            "batch": share(batch) if request.get("share_batch") else
            self._ship(batch, block),
            "env_steps": T * self.spec.num_envs,
            "agent_steps": agent_steps,
            "policy_episode_returns": None if policy_returns is None else
            {k: np.asarray(v, np.float64) for k, v in policy_returns.items()},
            "episode_returns": np.asarray(episode_returns, np.float64),
            "episode_lens": np.asarray(episode_lens, np.int64),
            "weights_version": self.weights_version,
            "weights_versions": list(self.weights_versions),  # one per policy
            "obs_stats": stats,
            "worker_index": self.worker_index,
            "env_errors": env_errors,
            "discarded": discarded,
            "custom_metrics": None if self.hooks is None else self.hooks.drain(),
        }

    def _acquire_block(self, request: dict[str, Any]):
        """A free block for this fragment's columns (handle, views), or ``None``: no
        ring (inline, Ray), a shared batch, the first fragment (its columns give the
        layout), a fragment under ``SHM_THRESHOLD`` bytes, or every block still held."""
        ring = block_ring()
        if ring is None or request.get("share_batch") or not self._block_layout:
            return None
        return ring.acquire(*self._block_layout)

    def _ship(self, batch: dict[str, np.ndarray], block) -> Any:
        """What the result carries as its batch: the block's handle when the columns
        went into (or, for the few computed at the end, are copied into) the block;
        the arrays themselves otherwise."""
        if block is None:
            if self._block_layout is None and block_ring() is not None:
                layout, nbytes = layout_of(batch)
                self._block_layout = (layout, nbytes) if nbytes >= SHM_THRESHOLD else ()
            return batch
        handle, views = block
        if views.keys() != batch.keys() or any(
                views[k].shape != v.shape or views[k].dtype != v.dtype for k, v in batch.items()):
            handle.release()
            return batch
        for name, values in batch.items():
            if values is not views[name]:
                views[name][...] = values
        return handle

    def _policy_returns(self, res, A: int, owner: np.ndarray,
                        out: dict[int, list[float]]) -> None:
        """Add a step's rewards to the slots' game returns; for every game that ended,
        each policy's share of its return goes to ``out`` (a broken game's to none)."""
        self.slot_returns += res.rewards
        for s in res.failed:
            g = s // A
            self.slot_returns[g * A:(g + 1) * A] = 0.0
        for g in res.ended:
            game = self.slot_returns[g * A:(g + 1) * A]
            for k in out:
                out[k].append(float(game[owner == k].sum()))
            game[:] = 0.0

    def _next_values(self, batch: dict[str, np.ndarray], last_obs: np.ndarray,
                     ends: list[tuple[int, int, np.ndarray]],
                     end_states: dict[tuple[int, int], list[np.ndarray]]) -> np.ndarray:
        """V(s_{t+1}) per row: shifted values, V(obs_T) last, V(final obs) at episode ends
        (a recurrent policy's from the state carried to each of those points)."""
        values = batch[C.VF_PREDS]
        nxt = np.empty_like(values)
        nxt[:-1] = values[1:]
        truncated = [(t, i, f) for t, i, f in ends if batch[C.TRUNCATEDS][t, i]
                     and not batch[C.TERMINATEDS][t, i]]
        finals = [self.normalize(f) for _, _, f in truncated]
        if self.slot_states is not None:
            v = self._rows("value", np.ascontiguousarray(last_obs, self.obs_dtype), self.lanes)
            if truncated:
                v_final = self.slot_states.final_values(
                    self.policies, np.ascontiguousarray(np.stack(finals), self.obs_dtype),
                    np.asarray([i for _, i, _ in truncated], np.int64),
                    [end_states[t, i] for t, i, _ in truncated])
                v = np.concatenate([v, v_final])
        elif self.recurrent:
            v = self.policy.value(self.policy_lanes.input(
                0, np.ascontiguousarray(last_obs, self.obs_dtype)))
            if truncated:
                states = [np.stack(parts) for parts in
                          zip(*(end_states[t, i] for t, i, _ in truncated))]
                v_final = self.policy.value(self.policy_lanes.input(0, np.ascontiguousarray(
                    np.stack(finals), self.obs_dtype)), states)
                v = np.concatenate([v, v_final])
        else:
            inputs = np.concatenate([last_obs] + [f[None] for f in finals], axis=0)
            slots = np.concatenate([np.arange(len(last_obs)),
                                    np.asarray([i for _, i, _ in truncated], np.int64)])
            v = self._rows("value", np.ascontiguousarray(inputs, self.obs_dtype),
                           self._lanes(slots))
        nxt[-1] = v[: len(last_obs)]
        for k, (t, i, _) in enumerate(truncated):
            nxt[t, i] = v[len(last_obs) + k]
        for t, i, _ in ends:
            if batch[C.TERMINATEDS][t, i]:
                nxt[t, i] = 0.0
        return nxt

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, num_episodes: int, render_mode: str | None = None,
                 video_dir: str | None = None) -> dict[str, Any]:
        """Greedy episodes on this worker's envs (a fresh VectorEnv, seeds offset).

        ``render_mode`` ``"rgb_array"`` with ``video_dir`` records each counted episode
        as an MP4 there, ``"human"`` shows them in a window (``rl.envs.render``); the
        episodes are the same as without rendering.
        """
        from rl.envs.render import RenderingEnvFactory, rendering_errors

        self.sync_weights()
        spec = self.spec
        seed = None if spec.seed is None else spec.seed + 1_000_003
        num_envs = min(spec.num_envs, num_episodes)
        # Count episodes per sub-env so the set of finished episodes does not favour
        # short ones: each sub-env contributes its first k episodes.
        quota = np.full(num_envs, num_episodes // num_envs)
        quota[: num_episodes % num_envs] += 1
        make = env_factory(spec.env_spec, spec.env_config)
        if render_mode is not None:
            make = RenderingEnvFactory(spec.env_spec, spec.env_config, render_mode, video_dir,
                                       episodes=quota.tolist())
        returns: list[float] = []
        lens: list[int] = []
        carried = self.policy.state if self.recurrent else None
        with rendering_errors(spec.env_spec.env_id):
            venv = self._vector_env(make, num_envs, seed, obs_dtype=self.obs_dtype,
                                    record_actions=False)
            try:
                obs = venv.reset()
                if self.slot_states is not None:  # the evaluation's own episodes
                    carried = self.slot_states.bind(venv.num_envs)
                elif self.recurrent:  # the evaluation's own episodes, each from the start
                    self.policy.state = [np.repeat(s[None], venv.num_envs, axis=0)
                                         for s in self.policy.initial]
                done_count = np.zeros(num_envs, np.int64)
                while (done_count < quota).any():
                    lanes = self._lanes(np.arange(len(obs)))
                    # Only a recurrent policy needs who was absent (to reset arrivals).
                    absent = (~venv.active if self.recurrent and spec.agents is not None
                              else None)
                    actions = self._rows("greedy", self.normalize(obs), lanes)
                    res = venv.step(self._env_actions(actions, lanes))
                    finished = sorted(res.final_obs)
                    if self.recurrent:
                        self.policy.observe(res.rewards)
                        for i in finished:
                            self.policy.reset_state(i)
                        if absent is not None:  # fresh for an agent that arrives next
                            self.policy.reset_states(~venv.active | absent)
                    for i, (ret, length) in zip(res.ended, res.episodes):
                        if done_count[i] < quota[i]:
                            returns.append(ret)
                            lens.append(length)
                        done_count[i] += 1
                    obs = res.obs
            finally:
                # Closing a recorder writes the video it still holds.
                venv.close()
                if self.slot_states is not None:
                    self.slot_states.restore(carried)
                elif self.recurrent:
                    self.policy.state = carried
        return {"episode_returns": np.asarray(returns), "episode_lens": np.asarray(lens)}

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, np.ndarray]:
        """The env state (see ``VectorEnv.get_state``) and the action generator's state."""
        state = self.venv.get_state()
        state["generator"] = _generator_state(self.generator)
        if self.recurrent:  # the running episodes' model states
            for k, s in enumerate(self.policy.state):
                state[f"policy_state_{k}"] = s.copy()
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> list[int]:
        """Continue where the worker that saved ``state`` stopped.

        Returns:
            Global indices of the sub-envs whose episode could not be restored exactly.
        """
        differ = self.venv.set_state(state)
        if self.slot_returns is not None:  # multi-agent games start afresh
            self.slot_returns[:] = 0.0
        _set_generator_state(self.generator, state["generator"])
        self.obs = self.venv.obs.copy()
        if self.recurrent:
            saved = [state.get(f"policy_state_{k}") for k in range(len(self.policy.state))]
            for k, s in enumerate(saved):
                if s is not None and s.shape == self.policy.state[k].shape:
                    self.policy.state[k] = np.asarray(s, np.float32).copy()
            if self.spec.agents is not None:  # every game starts afresh
                self.policy.reset_states(np.ones(self.num_slots, np.bool_))
            for i in differ if self.spec.agents is None else ():  # fresh episodes start
                self.policy.reset_state(i)                         # from the initial state
        return [self.venv.first_index + i for i in differ]

    def ping(self) -> int:
        return self.worker_index

    def close(self) -> None:
        self.venv.close()


def _column_allocator(views: dict[str, np.ndarray] | None):
    """``column(name, shape, dtype)``: the block's view of that column where it has a
    matching one, else a fresh array."""
    def column(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        view = None if views is None else views.get(name)
        if view is not None and view.shape == shape and view.dtype == np.dtype(dtype):
            return view
        return np.empty(shape, dtype)
    return column


def _generator(seed: int, numpy_sampling: bool):
    """The worker's action-sampling generator: numpy where every policy runs in numpy
    (no torch import), else torch's."""
    if numpy_sampling:
        return np.random.Generator(np.random.PCG64(seed))
    import torch

    return torch.Generator().manual_seed(seed)


def _generator_state(generator) -> np.ndarray:
    """The generator's state as uint8 (numpy's: its bit generator's state as JSON)."""
    if isinstance(generator, np.random.Generator):
        text = json.dumps(generator.bit_generator.state)
        return np.frombuffer(text.encode(), np.uint8).copy()
    return generator.get_state().numpy().copy()


def _set_generator_state(generator, saved: np.ndarray) -> None:
    """Restore ``_generator_state``. A state of the other kind (saved by a version of the
    worker that sampled with the other generator) leaves the seeded stream as it is."""
    raw = np.ascontiguousarray(saved, np.uint8)
    is_json = raw[:16].tobytes() == b'{"bit_generator"'
    if isinstance(generator, np.random.Generator):
        if is_json:
            generator.bit_generator.state = json.loads(raw.tobytes().decode())
        return
    if not is_json:
        import torch

        generator.set_state(torch.from_numpy(raw.copy()))


STARTUP_TRACE_VAR = "RL_STARTUP_TRACE"
"""Debug hook for ``benchmarks/startup.py``: a file path; the first rollout worker to
finish a fragment writes the wall-clock time (``time.time()``) it did so into it."""

_first_sample_traced = False


def trace_first_sample() -> None:
    """Write this fragment's completion time to ``$RL_STARTUP_TRACE`` unless a worker
    of the run already did (the file is created exclusively: the first one wins)."""
    global _first_sample_traced
    if _first_sample_traced:
        return
    _first_sample_traced = True
    path = os.environ.get(STARTUP_TRACE_VAR)
    if not path:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as f:
        f.write(repr(time.time()))
