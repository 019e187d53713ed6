"""Exact resume: what a checkpoint holds beyond counters and weights, so that a resumed
run continues the saved one step for step.

A run resumes exactly when every source of its future is restored: the learner and
the counters (``Algorithm.save``), and the experience in progress, which lives in
four places. Each has one piece here, called by the layer that owns it::

    VectorEnv.step ------------ ActionLog.record / reset / end_game   (per step, when on)
    VectorEnv.get/set_state --- ActionLog.state / saved_games / restore, replay_game
    WorkerSet.get/set_state --- each worker's VectorEnv state + its action generator
    IMPALA save / restore ----- pack_impala_state / unpack_impala_state
    DQN save / restore -------- nstep_windows_state / restore_nstep_windows

**Running episodes** (the envs). With a seed, reset ``k`` of every sub-env is seeded
from ``(seed, sub-env, k)`` (``rl.envs.vector.episode_seed``), so a game is rebuilt by
repeating the reset that began it and replaying its actions. ``ActionLog`` records
those actions: one row of all N sub-envs' actions per vector step (a single copy,
never N appends), per sub-env the row its running game began at and the soft resets
inside it (Atari: a lost life ends the learner's episode, the next reset continues the
game). Rows that no running game needs are dropped as the log grows. The replay is
exact for envs that are deterministic given their seed and actions (classic control,
Box2D, MuJoCo, ALE with its sticky actions drawn from the seeded RNG); for others, and
for a game longer than ``MAX_REPLAY_STEPS``, the sub-env starts afresh or differs, which
``VectorEnv.set_state`` reports. Without a seed, or with ``exact_resume=False``, nothing
is recorded (the per-step cost is one ``None`` test) and a resumed run starts fresh
episodes.

**Fragments in flight** (IMPALA). Fragments the workers already sampled (their saved
env state is past them), the partial train batch and the batches queued for the
learner are packed with the weights on the board (older than the learner's when
``broadcast_interval > 1``), its version and the version -> learner-update map.

**Open n-step windows** (DQN). The steps an ``NStepAccumulator`` holds back belong in
the replay buffer once their windows close after the resume, if the worker resumes
the episodes they belong to; otherwise they are closed at once as shorter transitions.

Everything is stored as JSON (scalars, lists, structure) plus flat arrays under
``/``-separated keys, loaded without pickle.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rl.data.nstep import NStepAccumulator
from rl.data.sample_batch import SampleBatch

QueuedFragments = tuple[list[dict[str, np.ndarray]], int, list[int]]
"""A train batch waiting for IMPALA's learner: (fragments, env steps, behaviour versions)."""

__all__ = [
    "MAX_REPLAY_STEPS",
    "ActionLog",
    "Game",
    "nstep_windows_state",
    "pack_impala_state",
    "replay_game",
    "restore_nstep_windows",
    "unpack_impala_state",
]

MAX_REPLAY_STEPS = 100_000
"""Longest game that ``VectorEnv.set_state`` replays (memory: one action per step)."""

_INITIAL_ROWS = 1024


# ---------------------------------------------------------------------- running episodes


@dataclass(slots=True)
class Game:
    """One sub-env's running game as saved: enough to play it again.

    Attributes:
        start: index of the (seeded) reset that began it.
        actions: ``[L, *action_shape]``, the actions since that reset.
        soft_resets: int64 ``[R]``, after how many of them a reset continued the game.
    """

    start: int
    actions: np.ndarray
    soft_resets: np.ndarray


class ActionLog:
    """The actions of a VectorEnv's running games, for ``replay_game``.

    Args:
        num_envs: number of sub-envs ``N``.
        continues_games: per sub-env, whether its env reports real games
            (``reports_real_episodes``): then a reset continues the running game until
            ``end_game`` says it ended; otherwise every reset begins a new game.
    """

    def __init__(self, num_envs: int, continues_games: Sequence[bool]):
        self.num_envs = num_envs
        self._continues = np.array(continues_games, np.bool_)
        self._rows: np.ndarray | None = None  # [capacity, N, *action_shape]
        self._first_row = 0  # step number of _rows[0]
        self._steps = 0  # vector steps recorded
        self._game_row = np.zeros(num_envs, np.int64)  # step number of each game's first action
        self._game_reset = np.zeros(num_envs, np.int64)  # the reset that began it
        self._soft: list[list[int]] = [[] for _ in range(num_envs)]
        self._game_over = np.ones(num_envs, np.bool_)  # the next reset begins a new game

    def record(self, actions: np.ndarray) -> None:
        """Log one vector step's actions ``[N, *action_shape]`` (copied)."""
        row = self._steps - self._first_row
        if self._rows is None or row == len(self._rows):
            row = self._make_room(actions)
        self._rows[row] = actions
        self._steps += 1

    def reset(self, i: int, reset_index: int) -> None:
        """Sub-env ``i`` was reset (with reset number ``reset_index``) after the steps
        logged so far."""
        if self._game_over[i]:
            self._game_reset[i] = reset_index
            self._game_row[i] = self._steps
            self._soft[i] = []
        else:
            self._soft[i].append(self._steps - int(self._game_row[i]))
        self._game_over[i] = not self._continues[i]

    def end_game(self, i: int) -> None:
        """Sub-env ``i``'s game ended, or its env was recreated: its next reset begins a
        new game."""
        self._game_over[i] = True

    def _make_room(self, actions: np.ndarray) -> int:
        """Drop the rows no replayable game needs, grow if the rest fills more than half
        the array; returns the row to write next."""
        if self._rows is None:
            actions = np.asarray(actions)
            self._rows = np.empty((_INITIAL_ROWS, *actions.shape), actions.dtype)
            self._first_row = self._steps
            return 0
        # A game of MAX_REPLAY_STEPS or more is not replayed: its oldest rows may go.
        keep = max(int(self._game_row.min()), self._steps - MAX_REPLAY_STEPS)
        live = self._steps - keep
        old = self._rows
        if 2 * live > len(old):
            self._rows = np.empty((2 * live, *old.shape[1:]), old.dtype)
        self._rows[:live] = old[keep - self._first_row : self._steps - self._first_row]
        self._first_row = keep
        return live

    def state(self) -> dict[str, np.ndarray]:
        """``game_start`` and, per sub-env whose game is replayable, ``actions_<i>`` and
        ``soft_resets_<i>`` (see ``Game``)."""
        state = {"game_start": self._game_reset.copy()}
        for i in range(self.num_envs):
            length = self._steps - int(self._game_row[i])
            if length >= MAX_REPLAY_STEPS:
                continue
            if self._rows is None:
                actions = np.zeros(0, np.int64)
            else:
                lo = int(self._game_row[i]) - self._first_row
                actions = self._rows[lo : lo + length, i].copy()
            state[f"actions_{i}"] = actions
            state[f"soft_resets_{i}"] = np.asarray(self._soft[i], np.int64)
        return state

    @staticmethod
    def saved_games(state: Mapping[str, np.ndarray], num_envs: int) -> dict[int, Game]:
        """The replayable games in ``state()``'s output, by sub-env."""
        return {i: Game(int(state["game_start"][i]), np.asarray(state[f"actions_{i}"]),
                        np.asarray(state[f"soft_resets_{i}"], np.int64))
                for i in range(num_envs) if f"actions_{i}" in state}

    def restore(self, games: Mapping[int, Game], fresh_starts: np.ndarray) -> None:
        """Go on logging after a restore: sub-env ``i``'s running game is ``games[i]``
        (replayed), or else one just begun by reset ``fresh_starts[i]``."""
        length = max((len(g.actions) for g in games.values()), default=0)
        self._steps, self._first_row, self._rows = length, 0, None
        shaped = [g.actions for g in games.values() if len(g.actions)]
        if shaped:
            # Each game ends at the last row; the rows before its start are never read.
            self._rows = np.zeros((max(_INITIAL_ROWS, 2 * length), self.num_envs,
                                   *shaped[0].shape[1:]), shaped[0].dtype)
        for i in range(self.num_envs):
            game = games.get(i)
            if game is None:
                self._game_row[i], self._game_reset[i], self._soft[i] = \
                    length, fresh_starts[i], []
                continue
            self._game_row[i] = length - len(game.actions)
            self._game_reset[i] = game.start
            self._soft[i] = game.soft_resets.tolist()
            if len(game.actions):
                self._rows[length - len(game.actions) : length, i] = game.actions
        self._game_over[:] = ~self._continues


def replay_game(game: Game, reset: Callable[[], Any],
                step: Callable[[Any], tuple[Any, float, bool, bool, dict]],
                reports_games: bool) -> tuple[Any, bool]:
    """Play ``game`` again on a fresh env: ``reset()`` (which must repeat reset
    ``game.start`` and its successors), then the actions, with a ``reset()`` after each
    count in ``game.soft_resets``.

    Returns:
        The observation to act on next, and whether the replay went as recorded
        (False: an episode ended where no reset was recorded, or, with
        ``reports_games``, a game ended inside it).
    """
    actions = game.actions
    # Python ints pass Discrete.contains() far faster than numpy scalars.
    steps = actions.tolist() if actions.ndim == 1 and actions.dtype.kind in "iu" \
        else list(actions)
    soft = game.soft_resets.tolist()
    k = 0  # soft resets done
    obs = reset()
    consistent = True
    for n, a in enumerate(steps):
        while k < len(soft) and soft[k] == n:
            k += 1
            obs = reset()
        obs, _, term, trunc, info = step(a)
        if reports_games and "rl_episode" in info:
            consistent = False  # the game ended: its history would have been dropped
        if (term or trunc) and not (k < len(soft) and soft[k] == n + 1):
            consistent = False
    for _ in soft[k:]:
        obs = reset()
    return obs, consistent


# ---------------------------------------------------------------------- IMPALA in flight


def _pack_value(value: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    """JSON description of ``value``; its arrays go into ``arrays`` under ``key``."""
    if isinstance(value, np.ndarray):
        arrays[key] = value
        return {"array": True}
    if isinstance(value, dict):
        return {"dict": {k: _pack_value(v, f"{key}/{k}", arrays) for k, v in value.items()}}
    if isinstance(value, tuple) and any(isinstance(v, np.ndarray) for v in value):
        return {"tuple": [_pack_value(v, f"{key}/{i}", arrays) for i, v in enumerate(value)]}
    if isinstance(value, np.generic):
        return {"json": value.item()}
    return {"json": value}


def _unpack_value(spec: dict[str, Any], key: str, arrays: Mapping[str, np.ndarray]) -> Any:
    if "array" in spec:
        return arrays[key]
    if "dict" in spec:
        return {k: _unpack_value(v, f"{key}/{k}", arrays) for k, v in spec["dict"].items()}
    if "tuple" in spec:
        return tuple(_unpack_value(v, f"{key}/{i}", arrays) for i, v in enumerate(spec["tuple"]))
    return spec["json"]


def _list_to_dict(items: list[Any]) -> dict[str, Any]:
    return {str(i): item for i, item in enumerate(items)}


def _dict_to_list(items: dict[str, Any]) -> list[Any]:
    return [items[str(i)] for i in range(len(items))]


def pack_impala_state(*, board: np.ndarray, board_version: int,
                      obs_filter_board: np.ndarray | None, updates_at: dict[str, int],
                      pending: list[dict[str, np.ndarray]], pending_versions: list[int],
                      queued: list[QueuedFragments],
                      in_flight: list[tuple[int, dict[str, Any]]] | None,
                      ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """IMPALA's driver-side experience in progress as ``(json, arrays)``.

    Args:
        board: the published weight vector; ``board_version`` its version.
        obs_filter_board: the published observation-filter vector (None without
            normalisation).
        updates_at: weights version -> learner updates behind it.
        pending: the fragments of the train batch being filled, and their
            ``pending_versions``.
        queued: the batches waiting for the learner, as ``(fragments, env steps,
            behaviour versions)``.
        in_flight: ``(worker index, sample result)`` of the requests in flight.
    """
    arrays: dict[str, np.ndarray] = {"board": np.asarray(board)}
    if obs_filter_board is not None:
        arrays["obs_filter_board"] = np.asarray(obs_filter_board)
    state: dict[str, Any] = {
        "board_version": int(board_version),
        "updates_at": dict(updates_at),
        "pending": _pack_value(_list_to_dict(pending), "pending", arrays),
        "pending_versions": _versions(pending_versions),
        "queued": [{"fragments": _pack_value(_list_to_dict(fragments), f"queued/{j}", arrays),
                    "env_steps": int(env_steps),
                    "versions": _versions(versions)}
                   for j, (fragments, env_steps, versions) in enumerate(queued)],
        "in_flight": None if in_flight is None else [
            {"worker": int(index), "result": _pack_value(result, f"in_flight/{j}", arrays)}
            for j, (index, result) in enumerate(in_flight)],
    }
    return state, arrays


def _versions(versions: list[Any]) -> list[Any]:
    """Behaviour versions, JSON-safe: one int per fragment, or (several policies) a list
    of one int per policy."""
    return [int(v) if np.isscalar(v) else [int(x) for x in v] for v in versions]


def unpack_impala_state(state: dict[str, Any],
                        arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """``pack_impala_state``'s keyword arguments back from its output."""
    in_flight = state.get("in_flight")
    return {
        "board": arrays["board"],
        "obs_filter_board": arrays.get("obs_filter_board"),
        "board_version": int(state["board_version"]),
        "updates_at": state["updates_at"],
        "pending": _dict_to_list(_unpack_value(state["pending"], "pending", arrays)),
        "pending_versions": list(state["pending_versions"]),
        "queued": [(_dict_to_list(_unpack_value(q["fragments"], f"queued/{j}", arrays)),
                    int(q["env_steps"]), list(q["versions"]))
                   for j, q in enumerate(state["queued"])],
        "in_flight": None if in_flight is None else [
            (int(item["worker"]), _unpack_value(item["result"], f"in_flight/{j}", arrays))
            for j, item in enumerate(in_flight)],
    }


# ---------------------------------------------------------------------- DQN n-step windows


def nstep_windows_state(
        accumulators: Mapping[int, tuple[int, NStepAccumulator]]) -> dict[str, np.ndarray]:
    """The open windows of each worker's stream, as flat arrays.

    Args:
        accumulators: worker index -> (the worker's restart count when its stream
            began, the stream's accumulator).
    """
    return {f"{index}/{key}": value
            for index, (seen, acc) in accumulators.items()
            for key, value in {**acc.state_dict(), "seen": np.array(seen)}.items()}


def restore_nstep_windows(
        arrays: Mapping[str, np.ndarray], n: int, gamma: float, resumed: Collection[int],
        restarts: Sequence[int],
) -> tuple[dict[int, tuple[int, NStepAccumulator]], list[SampleBatch]]:
    """``nstep_windows_state``'s streams back.

    A stream goes on where it stopped only if its worker resumes the episodes its
    windows belong to: the worker is in ``resumed`` (replayed exactly) and was not
    restarted since the stream began (``restarts``). Other streams are closed.

    Returns:
        The streams that go on, and the shorter transitions of the closed ones (for
        the replay buffer).
    """
    per_worker: dict[int, dict[str, np.ndarray]] = {}
    for name, value in arrays.items():
        index, key = name.split("/", 1)
        per_worker.setdefault(int(index), {})[key] = value
    kept: dict[int, tuple[int, NStepAccumulator]] = {}
    closed: list[SampleBatch] = []
    for index, acc_state in per_worker.items():
        seen = int(acc_state.pop("seen", -1))
        acc = NStepAccumulator(n, gamma)
        acc.load_state_dict(acc_state)
        if index in resumed and seen == restarts[index]:
            kept[index] = (seen, acc)
        else:
            closed.append(acc.flush())
    return kept, closed
