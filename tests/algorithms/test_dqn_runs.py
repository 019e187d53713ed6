"""DQN end to end: smoke runs on every local backend, image observations, checkpoints."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch

import rl
from rl import Algorithm, DQNConfig
from rl.data import columns as C
from rl.policies import NatureCNN, flat_params
from rl.runtime import shm
from tests.algorithms.test_dqn import small_config


@pytest.mark.parametrize("backend", ["inline", "process"])
@pytest.mark.parametrize("num_workers", [0, 1, 2])
def test_smoke(backend, num_workers):
    cfg = small_config(backend=backend, num_env_runners=num_workers, prioritized_replay=True,
                       n_step=3)
    with cfg.build() as algo:
        results = [algo.train() for _ in range(2)]
        ev = algo.evaluate(2)
        weights = algo.learner_group.get_weights()
    last = results[-1]
    per_round = max(1, num_workers) * 2 * 4  # workers x envs x fragment
    assert last["env_steps_total"] == 2 * per_round * math.ceil(40 / per_round)
    # Every step became a transition, but for the last n - 1 of each env (held back).
    held_back = 2 * max(1, num_workers) * 2
    assert last["env_steps_total"] - held_back <= last["replay/size"] <= last["env_steps_total"]
    for key in ("learner/loss", "learner/q_mean", "learner/td_error_mean", "learner/grad_norm",
                "learner/lr", "learner/epsilon", "learner/num_updates", "learner/beta",
                "timers/sample_s", "timers/learn_s", "episode_return_mean"):
        assert key in last, key
    assert np.isfinite(last["learner/loss"]) and last["learner/num_updates"] > 0
    assert last["workers/healthy"] == max(1, num_workers)
    assert ev["eval/episodes"] == 2
    assert np.isfinite(weights).all()
    if backend == "process":
        assert shm.list_segments(algo.runtime.prefix) == []


def test_logged_rows_carry_the_replay_size_once_per_iteration(tmp_path):
    with small_config(num_env_runners=0).build() as algo:
        run_dir = algo.attach_logger(str(tmp_path), tensorboard=False)
        results = [algo.train() for _ in range(2)]
    with open(os.path.join(run_dir, "result.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert [r["training_iteration"] for r in rows] == [1, 2]
    assert [r["replay/size"] for r in rows] == [r["replay/size"] for r in results]
    assert rows[-1]["replay/size"] > 0


def test_workers_act_with_the_published_online_weights():
    with small_config(num_env_runners=1).build() as algo:
        algo.train()
        published = algo.learner_group.get_weights()
        np.testing.assert_array_equal(published, flat_params(algo.learner_group.module))
        obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
        with torch.no_grad():
            q = algo.learner_group.module(torch.from_numpy(obs))
        np.testing.assert_array_equal(algo.compute_actions(obs), q.argmax(-1).numpy())


def test_image_observations_use_the_cnn_and_replay_uint8():
    cfg = small_config(model_hiddens=[32], train_batch_size=4, replay_buffer_capacity=200,
                       min_sample_timesteps_per_iteration=24)
    cfg.set(env="tests.toy_envs:ImageEnv")
    with cfg.build() as algo:
        assert isinstance(algo.learner_group.module.trunk, NatureCNN)
        result = algo.train()
        columns = algo.replay.state_dict()
    assert np.isfinite(result["learner/loss"])
    assert columns[f"column/{C.OBS}"].dtype == np.uint8
    assert columns[f"column/{C.NEXT_OBS}"].shape[1:] == (84, 84, 4)


def _train_and_save(tmp_path, **overrides):
    algo = small_config(**overrides).build()
    algo.train()
    algo.train()
    return algo, algo.save(str(tmp_path / "ckpt"))


@pytest.mark.parametrize("prioritized", [False, True])
def test_checkpoint_round_trip_with_the_replay_buffer(tmp_path, prioritized):
    algo, path = _train_and_save(tmp_path, store_buffer_in_checkpoints=True,
                                 prioritized_replay=prioritized, tau=None)
    with algo:
        replay = {k: np.array(v) for k, v in algo.replay.state_dict().items()}
        learner = algo.learner_group.local
        online, target = flat_params(learner.module), learner.target_weights()
        optimizer = algo.learner_group.state()["optimizer"]
        counters = (algo.env_steps_total, algo.num_updates_total, algo.num_target_updates,
                    algo.update_credit, algo.last_target_update, algo.epsilon())
    assert os.path.isfile(os.path.join(path, "replay.npz"))
    with Algorithm.from_checkpoint(path) as algo2:
        restored = algo2.replay.state_dict()
        assert restored.keys() == replay.keys()
        for key, value in replay.items():
            np.testing.assert_array_equal(restored[key], value, err_msg=key)
        learner2 = algo2.learner_group.local
        np.testing.assert_array_equal(flat_params(learner2.module), online)
        np.testing.assert_array_equal(learner2.target_weights(), target)
        assert not np.array_equal(online, target)  # the target is its own state
        for key, value in optimizer["state"][0].items():
            torch.testing.assert_close(algo2.learner_group.state()["optimizer"]["state"][0][key],
                                       value)
        assert (algo2.env_steps_total, algo2.num_updates_total, algo2.num_target_updates,
                algo2.update_credit, algo2.last_target_update, algo2.epsilon()) == counters
        result = algo2.train()
        assert result["replay/size"] == len(replay[f"column/{C.REWARDS}"]) + 40


def test_checkpoint_leaves_the_replay_buffer_out_unless_asked(tmp_path):
    algo, path = _train_and_save(tmp_path)
    with algo:
        online = algo.learner_group.get_weights()
    assert not os.path.exists(os.path.join(path, "replay.npz"))
    with Algorithm.from_checkpoint(path) as algo2:
        assert len(algo2.replay) == 0
        np.testing.assert_array_equal(algo2.learner_group.get_weights(), online)
        algo2.train()  # refills and learns after the restored learning-start point


def test_dqn_is_registered_and_exported():
    assert rl.DQNConfig is DQNConfig and "DQNConfig" in rl.__all__
    assert Algorithm.__subclasses__() and rl.algorithms.algorithm_class("dqn").__name__ == "DQN"


def test_open_nstep_windows_of_a_restarted_worker_are_closed_on_resume(tmp_path):
    # A worker restart just before the save: its open windows belong to episodes its
    # new incarnation never continues, so the resumed run closes them as shorter
    # transitions (as the original would have) instead of joining them to new steps.
    cfg = small_config(n_step=3, store_buffer_in_checkpoints=True)
    with cfg.build() as algo:
        algo.train()
        (seen, acc), = algo._accumulators.values()
        pending = acc.num_pending
        assert pending > 0
        algo.workers.restarts[0] += 1  # as _replace() counts a restart
        path = algo.save(str(tmp_path / "ckpt"))
        size = len(algo.replay)
    with Algorithm.from_checkpoint(path) as restored:
        assert restored._accumulators == {}
        assert len(restored.replay) == size + pending
    # Without the restart the windows continue where they stopped.
    with cfg.build() as algo:
        algo.train()
        path = algo.save(str(tmp_path / "ckpt2"))
        size = len(algo.replay)
    with Algorithm.from_checkpoint(path) as restored:
        assert len(restored._accumulators) == 1 and len(restored.replay) == size
