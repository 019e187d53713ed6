"""SAC end to end: smoke runs on the local backends, a learner process, checkpoints,
the action-space errors, the CLI."""

from __future__ import annotations

import math
import os

import gymnasium as gym
import numpy as np
import pytest
import torch

import rl
from rl import Algorithm, SACConfig
from rl.cli import main
from rl.envs import UnsupportedSpaceError
from rl.policies import flat_params
from rl.runtime import shm


def small_config(**overrides) -> SACConfig:
    """A SAC that runs a few rounds in about a second."""
    settings = dict(backend="inline", num_env_runners=0, num_envs_per_env_runner=2,
                    rollout_fragment_length=4, model_hiddens=[16], train_batch_size=8,
                    replay_buffer_capacity=1000, learning_starts=16,
                    min_sample_timesteps_per_iteration=40, training_intensity=0.5, seed=0)
    settings.update(overrides)
    return SACConfig().environment("Pendulum-v1").set(**settings)


@pytest.mark.parametrize("backend", ["inline", "process"])
@pytest.mark.parametrize("num_workers", [0, 1])
def test_smoke(backend, num_workers):
    cfg = small_config(backend=backend, num_env_runners=num_workers, prioritized_replay=True,
                       n_step=3)
    with cfg.build() as algo:
        results = [algo.train() for _ in range(2)]
        ev = algo.evaluate(1)
        actions = algo.compute_actions(np.zeros((5, 3), np.float32), explore=True)
        weights = algo.learner_group.get_weights()
        actor = algo.learner_group.local.actor if num_workers == 0 or backend == "inline" \
            else None
    last = results[-1]
    per_round = max(1, num_workers) * 2 * 4
    assert last["env_steps_total"] == 2 * per_round * math.ceil(40 / per_round)
    for key in ("learner/alpha", "learner/actor_loss", "learner/critic_loss", "learner/q_mean",
                "learner/entropy", "learner/alpha_loss", "learner/beta",
                "learner/num_updates", "replay/size", "timers/learn_s"):
        assert key in last, key
    assert np.isfinite(last["learner/critic_loss"]) and last["learner/num_updates"] > 0
    assert ev["eval/episodes"] == 1 and ev["eval/episode_len_mean"] == 200
    # Actions in the env's bounds, Pendulum's [-2, 2], shaped as its action space.
    assert actions.shape == (5, 1) and (np.abs(actions) <= 2).all()
    assert np.isfinite(weights).all()
    if actor is not None:  # the board holds the actor alone
        assert weights.size == flat_params(actor).size
    if backend == "process":
        assert shm.list_segments(algo.runtime.prefix) == []


def test_learning_starts_with_uniform_random_actions():
    with small_config(learning_starts=1000, min_sample_timesteps_per_iteration=400).build() as algo:
        result = algo.train()
        actions = algo.replay.sample(400, np.random.default_rng(0))["actions"]
    assert result["learner/num_updates"] == 0
    # Uniform on (-1, 1) in the actor's scale: mean ~0, std ~1/sqrt(3); a fresh actor's
    # near-zero-mean unit Gaussian through tanh would have std ~0.6.
    assert abs(actions.mean()) < 0.1 and abs(actions.std() - 1 / math.sqrt(3)) < 0.05


@pytest.mark.parametrize("num_learners", [1, 2])
def test_learner_processes_train_and_publish_the_actor(num_learners):
    # Two learners train under DDP (critics and actor), alpha's gradient averaged by hand.
    cfg = small_config(backend="process", num_learners=num_learners)
    with cfg.build() as algo:
        results = [algo.train() for _ in range(2)]
        weights = algo.learner_group.get_weights()
        assert algo.learner_group.local is None
        size = sum(p.numel() for p in algo.model_spec.build().parameters())
    assert results[-1]["learner/num_updates"] > 0
    assert np.isfinite(results[-1]["learner/critic_loss"])
    assert weights.size == size


@pytest.mark.parametrize("store", [False, True])
def test_checkpoint_round_trip(tmp_path, store):
    algo = small_config(store_buffer_in_checkpoints=store).build()
    with algo:
        algo.train()
        algo.train()
        path = algo.save(str(tmp_path / "ckpt"))
        learner = algo.learner_group.local
        state = learner.state()
        counters = (algo.env_steps_total, algo.num_updates_total, algo.update_credit)
        replay_len = len(algo.replay)
    assert os.path.isfile(os.path.join(path, "replay.npz")) == store
    with Algorithm.from_checkpoint(path) as algo2:
        learner2 = algo2.learner_group.local
        state2 = learner2.state()
        for part in ("module", "critics", "target"):
            for key, value in state[part].items():
                torch.testing.assert_close(state2[part][key], value, msg=f"{part}.{key}")
        torch.testing.assert_close(state2["log_alpha"], state["log_alpha"])
        for name in ("optimizer", "critic_optimizer", "alpha_optimizer"):
            assert state2[name]["state"].keys() == state[name]["state"].keys(), name
        assert (algo2.env_steps_total, algo2.num_updates_total, algo2.update_credit) == counters
        assert len(algo2.replay) == (replay_len if store else 0)
        result = algo2.train()
    assert result["learner/num_updates"] > 0


def test_sac_on_a_discrete_env_is_an_error_naming_the_alternatives():
    with pytest.raises(UnsupportedSpaceError, match="PPO.*IMPALA.*DQN"):
        SACConfig().environment("CartPole-v1").set(backend="inline").build()


def test_sac_on_a_discrete_env_exits_2_on_the_cli(capsys):
    assert main(["train", "--algo", "sac", "--env", "CartPole"]) == 2
    err = capsys.readouterr().err
    assert "SAC" in err and "DQN" in err and "Discrete" in err


def test_unbounded_actions_are_an_error(monkeypatch):
    class Unbounded(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
        action_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)

        def reset(self, *, seed=None, options=None):
            return np.zeros(2, np.float32), {}

        def step(self, action):
            return np.zeros(2, np.float32), 0.0, False, False, {}

    rl.register_env("UnboundedSAC-v0", lambda config: Unbounded())
    with pytest.raises(UnsupportedSpaceError, match="finite action bounds"):
        SACConfig().environment("UnboundedSAC-v0").set(backend="inline").build()


def test_sac_is_registered_and_exported():
    assert rl.SACConfig is SACConfig and "SACConfig" in rl.__all__
    assert rl.algorithms.algorithm_class("sac").__name__ == "SAC"
    assert SACConfig().target_entropy == "auto"
