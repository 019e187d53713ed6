"""Multi-agent envs: the Parallel-API contract, agent slots, padding and per-agent GAE."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from rl.algorithms.ppo.ppo import fragments_to_train_batch
from rl.config import ConfigError
from rl.data import columns as C
from rl.envs import MatchingGame, MultiAgentVectorEnv, probe_spaces, resolve_env

STAGGERED = {"agent_1": [2, 5]}  # arrives at step 2, terminates after step 5


def test_matching_game_follows_the_parallel_api():
    from pettingzoo.test import parallel_api_test

    parallel_api_test(MatchingGame(), num_cycles=50)
    parallel_api_test(MatchingGame(num_agents=3, lifetimes=STAGGERED), num_cycles=50)


def test_slots_follow_each_agent_through_arrival_termination_and_truncation():
    venv = MultiAgentVectorEnv(functools.partial(MatchingGame, lifetimes=STAGGERED), 2, seed=0)
    venv.reset()
    assert venv.num_envs == 4 and venv.num_games == 2 and venv.agents == ("agent_0", "agent_1")
    seen = []
    for _ in range(8):
        active = venv.active.copy()
        res = venv.step(np.zeros(4, np.int64))
        seen.append((active.copy(), res.rewards.copy(), res.terminateds.copy(),
                     res.truncateds.copy(), sorted(res.final_obs), list(res.episodes),
                     list(res.ended)))
    # agent_1 (slots 1 and 3) is absent at steps 0-1 and 6-7: padding, flagged terminated.
    for t in (0, 1, 6, 7):
        active, rewards, terms, truncs, *_ = seen[t]
        assert active.tolist() == [True, False, True, False]
        assert rewards[[1, 3]].tolist() == [0, 0] and terms[[1, 3]].all()
    for t in (2, 3, 4):
        assert seen[t][0].all() and seen[t][1].tolist() == [1, 1, 1, 1]
    # Its own end is a termination, with its final observation; the others go on.
    assert seen[5][2].tolist() == [False, True, False, True] and seen[5][4] == [1, 3]
    assert not seen[5][3].any() and seen[5][5] == []
    # The game ends by truncation at step 7: one episode per game, summed over agents.
    assert seen[7][3].tolist() == [True, False, True, False] and seen[7][4] == [0, 2]
    assert seen[7][5] == [(12.0, 8), (12.0, 8)] and seen[7][6] == [0, 1]
    assert venv.active.tolist() == [True, False, True, False]  # reset at once


def test_seeded_games_are_reproducible_and_the_state_restarts_them():
    def run(venv, steps=11):
        venv.reset()
        rng = np.random.default_rng(0)
        out = []
        for _ in range(steps):
            res = venv.step(rng.integers(0, 3, venv.num_envs))
            out.append((res.obs.copy(), res.rewards.copy()))
        return out

    make = functools.partial(MatchingGame, num_actions=3)
    a, b = run(MultiAgentVectorEnv(make, 2, seed=3)), run(MultiAgentVectorEnv(make, 2, seed=3))
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    venv = MultiAgentVectorEnv(make, 2, seed=3)
    run(venv)
    state = venv.get_state()
    fresh = MultiAgentVectorEnv(make, 2, seed=3)
    assert fresh.set_state(state) == [0, 1]
    assert fresh.get_state()["resets"].tolist() == [3, 3]


def test_probe_reads_the_agents_and_their_common_spaces():
    probed = probe_spaces(resolve_env("MatchingGame-v0"), {"num_actions": 4})
    assert probed.agents == ("agent_0", "agent_1")
    assert probed.action.n == 4 and probed.obs.shape == (9,)


class TwoSpaces(MatchingGame):
    """agent_1 has one more action than agent_0."""

    def action_space(self, agent):
        from gymnasium import spaces

        return spaces.Discrete(4 if agent == "agent_1" else 3)


class MixedActions(MatchingGame):
    """agent_1 acts in a Box, agent_0 in a Discrete."""

    def action_space(self, agent):
        from gymnasium import spaces

        if agent == "agent_1":
            return spaces.Box(-1.0, 1.0, (2,), np.float32)
        return super().action_space(agent)


def test_agents_with_different_spaces_are_probed_with_each_agents_own():
    probed = probe_spaces(resolve_env(f"{__name__}:TwoSpaces"))
    assert probed.agent_spaces is not None and not probed.agent_spaces.uniform
    assert [a.n for a in probed.agent_spaces.action] == [3, 4]
    assert probed.obs.shape == (7,)  # the widest observation, every slot's width


def test_agents_with_actions_of_different_kinds_are_refused_before_any_process():
    with pytest.raises(ConfigError, match="actions of different kinds.*all Discrete, or all"):
        probe_spaces(resolve_env(f"{__name__}:MixedActions"))


def test_a_parallelisable_aec_env_is_converted():
    probed = probe_spaces(resolve_env("mpe2.simple_spread_v3:env"), {"N": 2})
    assert probed.agents == ("agent_0", "agent_1") and probed.action.n == 5


def reference_gae(rewards, values, next_values, terms, truncs, gamma, lam):
    """GAE along one agent's own (compacted) trajectory, by the textbook recursion."""
    adv = np.zeros(len(rewards))
    last = 0.0
    for t in reversed(range(len(rewards))):
        nonterminal = 0.0 if terms[t] else 1.0
        cont = 0.0 if (terms[t] or truncs[t]) else 1.0
        delta = rewards[t] + gamma * nonterminal * next_values[t] - values[t]
        last = delta + gamma * lam * cont * last
        adv[t] = last
    return adv


def test_gae_runs_along_each_agents_own_trajectory_and_padding_is_left_out():
    from rl import PPOConfig

    config = (PPOConfig().environment("MatchingGame-v0", env_config={"lifetimes": STAGGERED})
              .env_runners(num_env_runners=0, num_envs_per_env_runner=2,
                           rollout_fragment_length=13)
              .training(train_batch_size=26, minibatch_size=26)
              .set(seed=1))
    with config.build() as algo:
        (result,) = algo.workers.sample()
    b, padding = result["batch"], result["discarded"]
    assert result["env_steps"] == 26 and result["agent_steps"] == int((~padding).sum())
    # agent_1's slots are padding exactly where it is absent (steps 0-1, 6-9 of a game).
    steps = np.arange(13) % 8
    absent = (steps < 2) | (steps > 5)
    np.testing.assert_array_equal(padding[:, 1], absent)
    np.testing.assert_array_equal(padding[:, 0], np.zeros(13, bool))
    train = fragments_to_train_batch([result], gamma=0.9, lam=0.8)
    assert len(train) == result["agent_steps"]
    expected = []
    for slot in range(4):
        keep = ~padding[:, slot]
        cols = [b[k][keep, slot] for k in (C.REWARDS, C.VF_PREDS, C.NEXT_VF_PREDS,
                                            C.TERMINATEDS, C.TRUNCATEDS)]
        expected.append((slot, reference_gae(*cols, gamma=0.9, lam=0.8)))
    # The train batch is time-major flattened rows without padding: slot order per row.
    order = [(t, s) for t in range(13) for s in range(4) if not padding[t, s]]
    got = {s: [] for s in range(4)}
    for (_, s), value in zip(order, train[C.ADVANTAGES]):
        got[s].append(value)
    for slot, ref in expected:
        np.testing.assert_allclose(got[slot], ref, rtol=1e-5, atol=1e-5)
