"""Recurrent multi-agent policies: one shared LSTM policy on a PettingZoo Parallel env,
a state per (game, agent) slot, fresh for an agent that arrives, sequences along each
agent's own trajectory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rl.algorithms.ppo.loss import recurrent_forward
from rl.config import ConfigError
from rl.data import columns as C
from tests.test_multi_agent import STAGGERED, matching


def lstm(seed=0, **env_config):
    return (matching(seed, **env_config)
            .env_runners(num_env_runners=0, num_envs_per_env_runner=2,
                         rollout_fragment_length=7)
            .training(train_batch_size=14, minibatch_size=14, num_epochs=1, use_lstm=True,
                      lstm_cell_size=16, max_seq_len=4, model_hiddens=[16]))


TWO = ["agent_0", "agent_1"]


@pytest.mark.parametrize("policies", [
    None,  # one shared policy
    {"policies": TWO},  # two recurrent policies
    {"policies": TWO, "policy_overrides": {"agent_1": {"lstm_cell_size": 8}}},
    {"policies": TWO, "policy_overrides": {  # a recurrent one beside a feed-forward one
        "agent_0": {"lstm_use_prev_action": True, "lstm_use_prev_reward": True},
        "agent_1": {"use_lstm": False}}},
    # The agent that arrives mid-game reads its previous action and reward: zeros at
    # its first step, whatever its slot held in the game before.
    {"policies": TWO, "policy_overrides": {
        "agent_1": {"lstm_use_prev_action": True, "lstm_use_prev_reward": True}}},
    "prev-inputs",  # one shared policy that reads both
], ids=["shared", "two", "two-sizes", "mixed", "late-arrival-prev-inputs",
        "shared-prev-inputs"])
@pytest.mark.parametrize("weights", ["initial", "perturbed"])
def test_learner_log_probs_equal_the_behaviour_ones_with_agents_that_come_and_go(
        policies, weights):
    # agent_1 lives at steps 2..5 of each 8-step game: it arrives (fresh state) and leaves
    # inside fragments of 7 rows, and games run from one fragment into the next.
    # "perturbed": every weight (the LSTM's biases too, zero at initialisation) moved, as
    # by training, so that a padding row's step from dummy inputs changes the state.
    cfg = lstm(lifetimes=STAGGERED)
    if policies == "prev-inputs":
        cfg = cfg.training(lstm_use_prev_action=True, lstm_use_prev_reward=True)
    elif policies is not None:
        cfg = cfg.multi_agent(**policies)
    with cfg.build() as algo:
        if weights == "perturbed":
            rng = np.random.default_rng(0)
            for group in algo.learner_groups.values():
                w = group.get_weights()
                group.set_weights((w + rng.normal(0.0, 0.3, w.shape)).astype(w.dtype))
            algo.sync_weights()
        for fragment in range(4):
            results = algo.workers.sample()
            batches = algo._policy_batches(results)
            trained = 0
            for pid, batch in batches.items():
                learner = algo.learner_groups[pid].local
                tensors = batch.to_torch(keys=list(batch))
                with torch.no_grad():
                    if algo.model_specs[pid].recurrent:
                        rows, dist_inputs, values, mask = recurrent_forward(learner.module,
                                                                            tensors)
                        real = mask > 0
                    else:
                        rows = tensors
                        dist_inputs, values = learner.module(tensors[C.OBS])
                        real = torch.ones(len(batch), dtype=torch.bool)
                    logp = learner.dist_spec(dist_inputs).log_prob(rows[C.ACTIONS])
                trained += int(real.sum())
                diff = (logp[real] - rows[C.LOGP][real]).abs().max()
                assert float(diff) <= 1e-5, (pid, fragment, float(diff))
                assert float((values[real] - rows[C.VF_PREDS][real]).abs().max()) <= 1e-5
            assert trained == results[0]["agent_steps"]


def test_compute_actions_carries_a_state_per_agent():
    with lstm().build() as algo:
        obs = {"agent_0": np.zeros(7, np.float32), "agent_1": np.ones(7, np.float32)}
        actions, state = algo.compute_actions(obs)
        assert set(actions) == set(state) == {"agent_0", "agent_1"}
        again, state2 = algo.compute_actions(obs, state=state)
        # The state moved on, and a fresh call repeats the first one.
        assert not np.allclose(state2["agent_1"][0], state["agent_1"][0])
        assert algo.compute_actions(obs)[0] == actions
        with pytest.raises(ValueError, match=r"takes state as \{agent: state\}"):
            algo.compute_actions(obs, state=[np.zeros(16)])
        metrics = algo.evaluate(2)
    assert metrics["eval/episodes"] == 2


@pytest.mark.parametrize("overrides", [{}, {"agent_0": {"use_lstm": False}}],
                         ids=["two-lstms", "mixed"])
def test_compute_actions_with_several_policies_some_recurrent_says_it_is_unsupported(overrides):
    cfg = lstm().set(policies=["agent_0", "agent_1"], policy_overrides=overrides)
    with cfg.build() as algo:
        obs = {"agent_0": np.zeros(7, np.float32), "agent_1": np.ones(7, np.float32)}
        with pytest.raises(ValueError, match="several policies of which some are recurrent"):
            algo.compute_actions(obs)
        assert algo.evaluate(2)["eval/episodes"] == 2


def test_recurrent_self_play_in_turn_based_games_is_a_config_error():
    cfg = lstm().environment("pettingzoo.classic.tictactoe_v3:env")
    with pytest.raises(ConfigError, match="not yet with turn-based games"):
        cfg.build()


@pytest.mark.learning
def test_a_shared_lstm_policy_reaches_the_optimum_of_the_matching_game():
    # Seeds 0-3 measured: training return >= 15.5 by 2.2k, 2.3k, 4.1k and 2.4k env steps.
    # The criterion is the sampled return: a shared policy's greedy actions match anyway
    # (both agents see the same observation); random play returns about 5.3.
    cfg = matching(0).training(use_lstm=True, lstm_cell_size=32, max_seq_len=8)
    with cfg.build() as algo:
        while algo.env_steps_total < 4096:
            result = algo.train()
    assert result["episode_return_mean"] >= 14.0


@pytest.mark.learning
@pytest.mark.parametrize("seed", [0, 3])
def test_two_lstm_policies_reach_the_optimum_of_the_matching_game(seed):
    # Seeds 0-4 measured (training return, greedy evaluation return):
    #   4096 env steps: 15.1, 15.5, 15.6, 14.7, 15.5; evaluation 16.0 on every one;
    #   6144 env steps: 15.6, 15.5, 15.9, 15.6, 15.8; evaluation 16.0 on every one,
    #   5-10 s a seed here. Seed 3 was still climbing at 4096 (0.7 above the bar), so
    #   the run is 6144 steps. Unlike a shared policy's, two policies' greedy actions
    #   match only once they have settled on a convention; random play returns about 5.3.
    cfg = matching(seed).training(max_seq_len=8).multi_agent(policies=TWO, policy_overrides={
        p: {"use_lstm": True, "lstm_cell_size": 32} for p in TWO})
    with cfg.build() as algo:
        assert all(algo.model_specs[p].recurrent for p in TWO)
        while algo.env_steps_total < 6144:
            result = algo.train()
        metrics = algo.evaluate(10)
    assert result["episode_return_mean"] >= 14.0
    assert metrics["eval/episode_return_mean"] >= 15.0
    assert {"learner/agent_0/policy_loss", "learner/agent_1/policy_loss"} <= set(result)


@pytest.mark.parametrize("policies, named", [
    ({}, "default_policy"),
    ({"policies": TWO, "policy_overrides": {"agent_1": {"use_lstm": True}}}, "agent_1"),
], ids=["run", "one-policy"])
def test_recurrent_multi_agent_impala_is_a_config_error(policies, named):
    from rl import IMPALAConfig

    cfg = (IMPALAConfig().environment("MatchingGame-v0")
           .env_runners(num_env_runners=0, num_envs_per_env_runner=2,
                        rollout_fragment_length=8)
           .training(train_batch_size=16, use_lstm=not policies).multi_agent(**policies))
    with pytest.raises(ConfigError, match=rf"initial_state: \['{named}'\]\) are supported .* "
                                          r"not yet with IMPALA \(use PPO\)"):
        cfg.build()
