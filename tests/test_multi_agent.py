"""Multi-agent training: PPO with one policy shared by all agents of a PettingZoo env."""

from __future__ import annotations

import glob

import numpy as np
import pytest

from rl import PPOConfig
from rl.cli import main as cli_main

STAGGERED = {"agent_1": [2, 5]}


def matching(seed: int = 0, **env_config) -> PPOConfig:
    """The settings measured on MatchingGame (seeds 0-5 reached the optimum, 16, by
    2.0k-3.3k env steps of a 4096 budget, greedy evaluation 16.0 for all six)."""
    return (PPOConfig().environment("MatchingGame-v0", env_config=env_config)
            .env_runners(num_env_runners=0, num_envs_per_env_runner=4,
                         rollout_fragment_length=32)
            .training(train_batch_size=128, minibatch_size=64, num_epochs=4, lr=3e-3,
                      model_hiddens=[32, 32])
            .set(seed=seed))


@pytest.mark.learning
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_shared_policy_reaches_the_optimum_of_the_matching_game(seed):
    # The criterion is the sampled (training) return: both agents see the same
    # observation, so one shared policy's greedy actions always match, trained or not.
    # Random play returns about 5.3 (a match 1 step in 3).
    with matching(seed).build() as algo:
        while algo.env_steps_total < 4096:
            result = algo.train()
    assert result["episode_return_mean"] >= 15.0  # of 16: 8 steps x 2 agents, all matched


def test_agents_that_come_and_go_train_on_their_own_rows_only():
    with matching(0, lifetimes=STAGGERED).build() as algo:
        result = algo.train()
        sample = algo.workers.sample()[0]
    assert result["env_steps_total"] == 128
    # agent_1 lives at steps 2..5 of each 8-step game: 4 of 8 rows are its own.
    assert sample["agent_steps"] == 128 + 64
    assert result["episode_len_mean"] == 8


def test_compute_actions_takes_and_returns_one_entry_per_agent():
    with matching(0).build() as algo:
        obs = {"agent_0": np.zeros(7, np.float32), "agent_1": np.ones(7, np.float32)}
        actions = algo.compute_actions(obs)
        assert set(actions) == {"agent_0", "agent_1"}
        assert all(int(a) in range(3) for a in actions.values())
        assert algo.compute_actions({"agent_1": obs["agent_1"]}).keys() == {"agent_1"}
        with pytest.raises(ValueError, match=r"takes \{agent: observation\}.*agent_0"):
            algo.compute_actions(np.zeros(7, np.float32))
        with pytest.raises(ValueError, match="agent_7"):
            algo.compute_actions({"agent_7": obs["agent_0"]})


@pytest.mark.parametrize("algo", ["dqn", "sac"])
def test_algorithms_without_multi_agent_support_refuse_before_any_process(algo, capsys):
    assert cli_main(["train", "--algo", algo, "--env", "MatchingGame-v0"]) == 2
    err = capsys.readouterr().err
    assert "cannot train multi-agent envs" in err and "use IMPALA, PPO" in err


def test_simple_spread_trains_on_the_process_backend_and_resumes(tmp_path):
    config = (PPOConfig().environment("mpe2.simple_spread_v3:parallel_env",
                                      env_config={"max_cycles": 25})
              .env_runners(num_env_runners=2, num_envs_per_env_runner=2,
                           rollout_fragment_length=25)
              .training(train_batch_size=100, minibatch_size=50, num_epochs=1)
              .set(backend="process", seed=0))
    with config.build() as algo:
        first = algo.train()
        path = algo.save(str(tmp_path / "ckpt"))
    assert first["env_steps_total"] == 100 and np.isfinite(first["episode_return_mean"])
    assert first["episode_len_mean"] == 25
    with config.build() as algo:
        algo.restore(path)
        second = algo.train()
        metrics = algo.evaluate(2)
    assert second["env_steps_total"] == 200
    assert metrics["eval/episode_len_mean"] == 25 and metrics["eval/episodes"] == 2


def test_rl_train_and_evaluate_run_a_multi_agent_env(tmp_path, capsys):
    assert cli_main(["train", "--algo", "ppo", "--env", "MatchingGame-v0", "--stop-timesteps",
                     "256", "--set", "train_batch_size=128", "--set", "minibatch_size=64",
                     "--logdir", str(tmp_path)]) == 0
    (checkpoint,) = glob.glob(str(tmp_path / "*" / "checkpoint_*"))
    capsys.readouterr()
    assert cli_main(["evaluate", checkpoint, "--episodes", "3"]) == 0
    assert "3 episodes: return" in capsys.readouterr().out
