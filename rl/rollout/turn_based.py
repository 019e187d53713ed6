"""The rollout loop of turn-based games (``rl.envs.turn_based``): one row per resolved move.

In a turn-based game an agent's move is complete only when its next turn comes (or the
game ends): the reward of the move is what the other agents' moves brought until then.
So the worker keeps each slot's last move *pending* (the observation the policy saw,
the action and the policy's columns: log-prob, value, logits) and writes the fragment
row of that move in the step that resolves it (``TurnBasedVectorEnv.resolved``), with
the move's reward, termination and truncation. A slot's rows are thus its agent's own
moves in order, separated by padding rows (flagged in ``discarded``) while the other
agents move; pending moves carry over from one fragment to the next.

Bootstrapping: the next value of a resolved move is the value the policy computes when
the agent acts again, which is the very next step (a resolved agent is the one to move)
or, for a move resolved in the fragment's last step, V(its current observation); 0
where the agent terminated, V(final observation) where it was truncated. GAE then skips
the padding rows (``compute_gae(valid=...)``), so advantages run along each agent's own
moves. With ``spec.needs_next_obs`` (IMPALA recomputes the values itself) ``next_obs``
holds the observation behind each of those next values (the final observation where
the agent was truncated), and V-trace skips the padding rows in the same way
(``vtrace(valid=...)``, the batch's ``valid`` column).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from rl.data import columns as C
from rl.runtime.shared import share

if TYPE_CHECKING:
    from rl.rollout.worker import RolloutWorker

__all__ = ["sample_turn_based"]


def sample_turn_based(worker: RolloutWorker, request: dict[str, Any]) -> dict[str, Any]:
    """``RolloutWorker.sample`` for a ``TurnBasedVectorEnv`` (same result keys)."""
    worker.sync_weights()
    venv, spec = worker.venv, worker.spec
    T, N = spec.fragment_length, worker.num_slots
    obs_shape = spec.obs_space.shape
    dist = worker.dist_spec
    batch = {
        C.OBS: np.zeros((T, N, *obs_shape), worker.obs_dtype),
        C.ACTIONS: np.zeros((T, N, *worker.action_shape), dist.action_dtype),
        C.REWARDS: np.zeros((T, N), np.float32),
        C.TERMINATEDS: np.ones((T, N), np.bool_),  # padding: nothing flows across it
        C.TRUNCATEDS: np.zeros((T, N), np.bool_),
    }
    columns = worker.columns
    for name, (shape, dtype) in columns.items():
        batch[name] = np.zeros((T, N, *shape), dtype)
    nxt = np.zeros((T, N), np.float32)
    # The observation each resolved move's agent acts from next (needs_next_obs).
    next_obs = np.zeros((T, N, *obs_shape), worker.obs_dtype) if spec.needs_next_obs else None
    valid = np.zeros((T, N), np.bool_)
    pending = worker.pending_moves
    if pending is None:  # the observation each slot's outstanding move saw, and its columns
        pending = {C.OBS: np.zeros((N, *obs_shape), worker.obs_dtype),
                   C.ACTIONS: np.zeros((N, *worker.action_shape), dist.action_dtype)}
        pending.update({name: np.zeros((N, *shape), dtype)
                        for name, (shape, dtype) in columns.items()})
        worker.pending_moves = pending
    waiting = np.full(N, -1, np.int64)  # the row whose next value is the slot's next act
    truncated: list[tuple[int, int, np.ndarray]] = []
    raw: list[np.ndarray] = []
    episode_returns: list[float] = []
    episode_lens: list[int] = []
    A = len(spec.agents)
    owner = np.zeros(A, np.int64) if worker.agent_policy is None else worker.agent_policy
    policy_returns: dict[int, list[float]] = {k: [] for k in range(len(worker.policies))}
    actions: list[Any] = [None] * N  # the env actions, one per slot (those of the movers)
    for t in range(T):
        active = np.flatnonzero(venv.active)
        if worker.obs_filter is not None:
            raw.append(venv.obs[active].astype(np.float64))
        obs_in = worker.normalize(venv.obs[active])
        out = worker._act(obs_in, worker._lanes(active), request)
        rows = waiting[active]
        back = rows >= 0
        nxt[rows[back], active[back]] = out[C.VF_PREDS][back]
        if next_obs is not None:
            next_obs[rows[back], active[back]] = obs_in[back]
        waiting[active[back]] = -1
        pending[C.OBS][active] = obs_in
        for name, value in out.items():
            pending[name][active] = value
        for s, a in zip(active, worker._env_actions(out[C.ACTIONS], worker._lanes(active))):
            actions[s] = a
        res = venv.step(actions)
        done = np.flatnonzero(venv.resolved)
        for name in pending:
            batch[name][t, done] = pending[name][done]
        batch[C.REWARDS][t, done] = res.rewards[done]
        batch[C.TERMINATEDS][t, done] = res.terminateds[done]
        batch[C.TRUNCATEDS][t, done] = res.truncateds[done]
        valid[t, done] = True
        for s in done:
            if res.terminateds[s]:
                continue
            if res.truncateds[s]:
                truncated.append((t, s, res.final_obs[s]))
            else:
                waiting[s] = t
        for s in res.failed:
            valid[t, s] = False  # a broken game's cut moves are not trained on
        for ret, length in res.episodes:
            episode_returns.append(ret)
            episode_lens.append(length)
        worker._policy_returns(res, A, owner, policy_returns)
    # Moves resolved in the last step: their agents move next, from the current obs.
    ends = [(int(waiting[s]), s, venv.obs[s]) for s in np.flatnonzero(waiting >= 0)]
    boot = ends + truncated
    if boot:
        slots = np.asarray([s for _, s, _ in boot], np.int64)
        obs = worker.normalize(np.stack([o for _, _, o in boot]))
        values = worker._rows("value", np.ascontiguousarray(obs, worker.obs_dtype),
                              worker._lanes(slots))
        for (t, s, _), v, o in zip(boot, values, obs):
            nxt[t, s] = v
            if next_obs is not None:
                next_obs[t, s] = o
    batch[C.NEXT_VF_PREDS] = nxt
    if next_obs is not None:
        batch[C.NEXT_OBS] = next_obs
    batch[C.VALID] = valid
    stats = None
    if raw:
        flat = np.concatenate(raw)
        stats = (flat.mean(axis=0), flat.var(axis=0), float(len(flat)))
    env_errors, venv.errors = venv.errors, []
    return {
        "batch": share(batch) if request.get("share_batch") else batch,
        "env_steps": T * spec.num_envs,
        "agent_steps": int(valid.sum()),
        "policy_episode_returns": {k: np.asarray(v, np.float64)
                                   for k, v in policy_returns.items()},
        "episode_returns": np.asarray(episode_returns, np.float64),
        "episode_lens": np.asarray(episode_lens, np.int64),
        "weights_version": worker.weights_version,
        "weights_versions": list(worker.weights_versions),  # one per policy
        "obs_stats": stats,
        "worker_index": worker.worker_index,
        "env_errors": env_errors,
        "discarded": ~valid,
        "custom_metrics": None if worker.hooks is None else worker.hooks.drain(),
    }
