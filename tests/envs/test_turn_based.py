"""Turn-based AEC games: moves resolved at the agent's next turn, one row per move, GAE
along each agent's moves, action masks per agent, self-play without illegal moves."""

from __future__ import annotations

import numpy as np

from rl import PPOConfig, register_env
from rl.algorithms.ppo.ppo import fragments_to_train_batch
from rl.data import columns as C
from rl.envs import probe_spaces, resolve_env
from rl.envs.turn_based import TurnBasedVectorEnv
from tests.envs.test_multi_agent import reference_gae

TICTACTOE = "pettingzoo.classic.tictactoe_v3:env"
MASK = slice(0, 9)  # the flattened Dict observation: action_mask first, then the board


class MoveLog:
    """Every move the policy plays in ``CheckedTicTacToe`` games of this process."""

    moves = 0
    illegal: list[tuple[str, int]] = []


def checked_tictactoe(env_config: dict):
    """tictactoe_v3 that records each move and whether its action mask allowed it."""
    from pettingzoo.classic import tictactoe_v3
    from pettingzoo.utils import BaseWrapper

    class Checked(BaseWrapper):
        def step(self, action):
            agent = self.agent_selection
            if action is not None:
                MoveLog.moves += 1
                if not self.observe(agent)["action_mask"][action]:
                    MoveLog.illegal.append((agent, int(action)))
            super().step(action)

    return Checked(tictactoe_v3.env(**env_config))


register_env("CheckedTicTacToe-v0", checked_tictactoe)


def self_play(seed: int = 0, env: str = TICTACTOE) -> PPOConfig:
    return (PPOConfig().environment(env)
            .env_runners(num_env_runners=0, num_envs_per_env_runner=4,
                         rollout_fragment_length=24)
            .training(train_batch_size=96, minibatch_size=48, num_epochs=2, lr=1e-3)
            .set(seed=seed))


def test_a_turn_based_aec_env_is_probed_as_one():
    probed = probe_spaces(resolve_env(TICTACTOE))
    assert probed.turn_based and probed.agents == ("player_1", "player_2")
    assert probed.action.n == 9 and probed.obs.shape == (27,)


def test_each_move_is_resolved_at_its_agents_next_turn():
    from pettingzoo.classic import tictactoe_v3

    venv = TurnBasedVectorEnv(tictactoe_v3.env, 1, seed=0)
    venv.reset()
    assert venv.active.tolist() == [True, False]  # player_1 moves first
    script = [(0, 0), (1, 3), (0, 1), (1, 4), (0, 2)]  # player_1 completes the top row
    seen = []
    for slot, action in script:
        actions = np.zeros(2, np.int64)
        actions[slot] = action
        res = venv.step(actions)
        seen.append((venv.resolved.tolist(), res.rewards.tolist(), res.terminateds.tolist()))
        if slot == 0 and action == 2:
            assert sorted(res.final_obs) == [0, 1] and res.episodes == [(0.0, 5)]
            assert res.ended == [0]
    assert seen == [
        ([False, False], [0, 0], [False, False]),  # player_2 has not moved yet
        ([True, False], [0, 0], [False, False]),   # player_1's first move: nothing yet
        ([False, True], [0, 0], [False, False]),
        ([True, False], [0, 0], [False, False]),
        # The winning move ends the game: both outstanding moves resolve in this step.
        ([True, True], [1, -1], [True, True]),
    ]
    assert venv.active.tolist() == [True, False]  # the next game has begun


def test_fragments_hold_one_row_per_move_and_gae_runs_along_each_agents_moves():
    with self_play(seed=3).build() as algo:
        (result,) = algo.workers.sample()
    b, padding = result["batch"], result["discarded"]
    T, N = padding.shape
    assert (T, N) == (24, 8) and result["env_steps"] == 96
    # Every step plays one move per game, so one row per game gets resolved per step
    # (two at a game's end): about one agent step per env step.
    assert 90 <= result["agent_steps"] <= 96 + 4 * 6
    for s in range(N):
        rows = np.flatnonzero(~padding[:, s])
        mask = b[C.OBS][rows, s, MASK]
        actions = b[C.ACTIONS][rows, s]
        assert mask[np.arange(len(rows)), actions].all()  # every move was legal
        finals = rows[b[C.TERMINATEDS][rows, s]]
        assert set(b[C.REWARDS][finals, s].tolist()) <= {-1.0, 0.0, 1.0}
        assert (b[C.REWARDS][np.setdiff1d(rows, finals), s] == 0).all()
        # A move's next value is the value of the agent's next move in the fragment.
        going = [i for i, t in enumerate(rows[:-1]) if not b[C.TERMINATEDS][t, s]]
        np.testing.assert_allclose(b[C.NEXT_VF_PREDS][rows[going], s],
                                   b[C.VF_PREDS][rows[np.asarray(going, int) + 1], s])
    train = fragments_to_train_batch([result], gamma=0.9, lam=0.8, compact=True)
    assert len(train) == result["agent_steps"]
    order = [(t, s) for t in range(T) for s in range(N) if not padding[t, s]]
    got = {s: [] for s in range(N)}
    for (_, s), value in zip(order, train[C.ADVANTAGES]):
        got[s].append(value)
    for s in range(N):
        keep = ~padding[:, s]
        cols = [b[k][keep, s] for k in (C.REWARDS, C.VF_PREDS, C.NEXT_VF_PREDS,
                                        C.TERMINATEDS, C.TRUNCATEDS)]
        np.testing.assert_allclose(got[s], reference_gae(*cols, gamma=0.9, lam=0.8),
                                   rtol=1e-5, atol=1e-5)


def test_self_play_never_plays_an_illegal_move():
    MoveLog.moves, MoveLog.illegal = 0, []
    with self_play(seed=0, env="CheckedTicTacToe-v0").build() as algo:
        for _ in range(4):
            result = algo.train()
            # Zero-sum: every legal game sums to 0; an illegal move ends one at -1.
            assert result["episode_return_mean"] == 0.0
        metrics = algo.evaluate(6)
        rng = np.random.default_rng(0)
        for _ in range(50):  # compute_actions respects each agent's mask too
            mask = (rng.random(9) < 0.4).astype(np.int8)
            mask[rng.integers(9)] = 1
            obs = {"observation": np.zeros((3, 3, 2), np.int8), "action_mask": mask}
            actions = algo.compute_actions({"player_1": obs, "player_2": obs})
            assert all(mask[int(a)] for a in actions.values())
    assert MoveLog.moves > 4 * 96 and MoveLog.illegal == []
    assert metrics["eval/episodes"] == 6 and 5 <= metrics["eval/episode_len_mean"] <= 9


def test_connect_four_self_play_runs_on_worker_processes():
    cfg = (self_play(seed=0, env="pettingzoo.classic.connect_four_v3:env")
           .env_runners(num_env_runners=1).set(backend="process"))
    with cfg.build() as algo:
        result = algo.train()
    assert result["env_steps_total"] == 96
    assert "learner/default_policy/policy_loss" in result


def test_each_player_can_have_a_policy_of_its_own():
    cfg = self_play(seed=1).multi_agent(policies=["player_1", "player_2"])
    with cfg.build() as algo:
        for _ in range(2):
            result = algo.train()
    returns = [result[f"policy/{p}/episode_return_mean"] for p in ("player_1", "player_2")]
    assert sum(returns) == 0.0 and all(-1 <= r <= 1 for r in returns)
    assert {"learner/player_1/vf_loss", "learner/player_2/vf_loss"} <= set(result)
