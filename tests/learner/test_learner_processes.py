"""Learner processes end to end: config checks, every algorithm with 0/1/2 learners,
checkpoints across learner counts, clean stop, a killed learner, Ctrl-C."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from rl import Algorithm, ConfigError, DQNConfig, IMPALAConfig, PPOConfig
from rl.learner import LearnerFailedError
from rl.runtime import shm
from rl.runtime.shared import ShmShared
from tests.conftest import wait_gone


def ppo(backend="process", learners=2, **kw) -> PPOConfig:
    return (PPOConfig().environment("CartPole-v1").resources(backend=backend)
            .env_runners(num_env_runners=1, num_envs_per_env_runner=4)
            .training(train_batch_size=128, minibatch_size=32, num_epochs=2)
            .learners(num_learners=learners).debugging(seed=0).set(**kw))


def dqn(backend="process", learners=2) -> DQNConfig:
    return DQNConfig().environment("CartPole-v1").set(
        backend=backend, num_env_runners=1, num_envs_per_env_runner=2,
        rollout_fragment_length=4, model_hiddens=[16], train_batch_size=8,
        replay_buffer_capacity=1000, num_steps_sampled_before_learning_starts=16,
        min_sample_timesteps_per_iteration=40, training_intensity=0.5, epsilon_timesteps=200,
        prioritized_replay=True, seed=0, num_learners=learners)


def impala(backend="process", learners=2) -> IMPALAConfig:
    return (IMPALAConfig().environment("CartPole-v1").resources(backend=backend)
            .env_runners(num_env_runners=1, num_envs_per_env_runner=4, rollout_fragment_length=10)
            .training(train_batch_size=40, lr=1e-3, model_hiddens=[16])
            .learners(num_learners=learners).debugging(seed=0))


def learner_pids(algo: Algorithm) -> list[int]:
    return [a.pid for a in algo.learner_group.actors]


def assert_no_leftovers(algo: Algorithm, pids: list[int]) -> None:
    assert wait_gone(pids, 5.0) == [], "learner processes survived stop()"
    assert shm.list_segments(algo.runtime.prefix) == [], "segments left in /dev/shm"


# ---------------------------------------------------------------------------- config


@pytest.mark.parametrize("overrides,match", [
    ({"num_learners": 2, "backend": "inline"}, "needs backend=process or ray"),
    ({"num_learners": 2, "train_batch_size": 127, "rollout_fragment_length": "auto"},
     r"train_batch_size \(127\) must be divisible by num_learners \(2\)"),
    ({"num_learners": 1, "num_gpus_per_learner": 1}, "CUDA is not available"),
    ({"num_learners": 1, "device": "cuda"}, "needs num_gpus_per_learner > 0|CUDA is not"),
    ({"num_learners": 0, "device": "cuda:0"}, "CUDA is not available"),
])
def test_bad_learner_settings_fail_before_any_process(overrides, match):
    if torch.cuda.is_available() and "CUDA" in match:
        pytest.skip("this machine has CUDA")
    before = shm.list_segments(shm.driver_prefix())
    with pytest.raises(ConfigError, match=match):
        ppo(**overrides).build()
    assert shm.list_segments(shm.driver_prefix()) == before


# ------------------------------------------------------------------------ algorithms


@pytest.mark.parametrize("make", [ppo, dqn, impala], ids=["ppo", "dqn", "impala"])
@pytest.mark.parametrize("backend,learners", [("inline", 1), ("process", 2)])
def test_every_algorithm_trains_with_learner_processes(make, backend, learners):
    with make(backend, learners).build() as algo:
        for _ in range(3):
            result = algo.train()
        weights = algo.learner_group.get_weights()
        pids = [a.pid for a in algo.learner_group.actors if hasattr(a, "pid")]
    assert result["training_iteration"] == 3 and np.isfinite(weights).all()
    assert_no_leftovers(algo, pids)


def test_impala_driver_moves_fragment_handles_to_the_learner_processes():
    # With learner processes the workers share their fragments and the driver passes
    # the handles on; the learners read the data (tests/runtime/test_shared.py).
    with impala(learners=2).build() as algo:
        seen: list[type] = []
        update = algo.learner_group.update_fragments

        def spy(fragments, columns, **hyper):
            seen.extend(type(f) for f in fragments)
            return update(fragments, columns, **hyper)

        algo.learner_group.update_fragments = spy
        for _ in range(50):  # the learner thread may lag a few iterations
            algo.train()
            if seen:
                break
        pids, prefix = learner_pids(algo), algo.runtime.prefix
    assert seen and set(seen) == {ShmShared}
    assert wait_gone(pids, 5.0) == [] and shm.list_segments(prefix) == []


def test_impala_with_learner_processes_survives_a_worker_kill():
    # The fragments a killed worker shared stay readable for the learners (they are
    # not the worker's own segments, which die with it), so training goes on.
    # Fragments of 512 x 8 CartPole steps: obs and next_obs (64 KiB each) go to /dev/shm.
    with impala(learners=2).set(num_env_runners=2, num_envs_per_env_runner=8,
                                rollout_fragment_length=512, train_batch_size=8192,
                                max_requests_in_flight_per_env_runner=2).build() as algo:
        for _ in range(2):
            algo.train()
        os.kill(algo.workers.workers[0].pid, signal.SIGKILL)
        results = [algo.train() for _ in range(4)]
        for _ in range(50):  # until the learner has trained past the kill
            if results[-1]["learner/num_updates"] >= results[0]["learner/num_updates"] + 2:
                break
            results.append(algo.train())
        pids, prefix = learner_pids(algo), algo.runtime.prefix
    assert results[-1]["workers/restarts"] == 1 and results[-1]["workers/healthy"] == 2
    assert results[-1]["learner/num_updates"] >= results[0]["learner/num_updates"] + 2
    assert wait_gone(pids, 5.0) == [] and shm.list_segments(prefix) == []


def test_one_learner_process_trains_exactly_like_the_driver_learner():
    def run(learners):
        with ppo(learners=learners).build() as algo:
            results = [algo.train() for _ in range(2)]
            return results, algo.learner_group.get_weights()

    (local, w_local), (remote, w_remote) = run(0), run(1)
    np.testing.assert_array_equal(w_local, w_remote)
    for a, b in zip(local, remote):
        assert a["learner/policy_loss"] == b["learner/policy_loss"]
        assert a["episode_return_mean"] == b["episode_return_mean"]


# ----------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("saved,restored", [(2, 0), (0, 2)])
def test_checkpoint_resumes_with_another_number_of_learners(tmp_path, saved, restored):
    with ppo(learners=saved).build() as algo:
        algo.train()
        algo.train()
        path = algo.save(str(tmp_path / "ckpt"))
        weights = algo.learner_group.get_weights()
        state = algo.learner_group.state()
    with Algorithm.from_checkpoint(path, num_learners=restored) as algo2:
        assert algo2.config.num_learners == restored and algo2.iteration == 2
        np.testing.assert_array_equal(algo2.learner_group.get_weights(), weights)
        got = algo2.learner_group.state()
        for key, value in state["optimizer"]["state"][0].items():
            torch.testing.assert_close(got["optimizer"]["state"][0][key], value)
        assert got["extra"] == state["extra"]  # update count, KL coefficient, minibatch RNG
        assert algo2.train()["training_iteration"] == 3


# ---------------------------------------------------------------------- failures


def test_stop_ends_every_learner_and_leaves_no_segment():
    algo = ppo().build()
    algo.train()
    pids = learner_pids(algo)
    assert len(pids) == 2 and all(os.path.exists(f"/proc/{p}") for p in pids)
    algo.stop()
    assert_no_leftovers(algo, pids)


@pytest.mark.parametrize("rank,when", [(0, "between"), (1, "during")])
def test_a_killed_learner_fails_train_clearly_and_the_checkpoint_stays(tmp_path, rank, when):
    # "during": a long update, so the kill lands while the peers are in collectives.
    algo = ppo(num_epochs=40, minibatch_size=8).build()
    try:
        algo.train()
        path = algo.save(str(tmp_path / "ckpt"))
        pids = learner_pids(algo)
        if when == "between":
            os.kill(pids[rank], signal.SIGKILL)
        else:
            group = algo.learner_group
            send = group._call_each

            killer = threading.Timer(0.3, os.kill, (pids[rank], signal.SIGKILL))

            def send_then_kill(method, args, kwargs):
                if method == "update" and killer.ident is None:  # once
                    killer.start()
                return send(method, args, kwargs)

            group._call_each = send_then_kill
        start = time.monotonic()
        with pytest.raises(LearnerFailedError, match=rf"Learner-{rank}.*died"):
            algo.train()
        assert time.monotonic() - start < 30
        with pytest.raises(LearnerFailedError):  # and stays failed
            algo.train()
    finally:
        algo.stop()
    assert_no_leftovers(algo, pids)
    with Algorithm.from_checkpoint(path, num_learners=0) as resumed:
        assert resumed.train()["training_iteration"] == 2


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    kids = [int(p) for p in out.stdout.split()]
    return kids + [g for k in kids for g in _children(k)]


def test_ctrl_c_checkpoints_and_ends_the_learner_processes(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "rl.cli", "train", "--algo", "ppo", "--env", "CartPole-v1",
         "--stop-timesteps", "100000000", "--logdir", str(tmp_path), "--num-env-runners", "1",
         "--set", "num_learners=2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while True:
        results = glob.glob(str(tmp_path / "*" / "result.jsonl"))
        if results and os.path.getsize(results[0]) > 0:
            break
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training never produced a result"
        time.sleep(0.2)
    children = _children(proc.pid)
    assert len(children) >= 3, "expected a worker and two learner processes"
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 130, err
    assert wait_gone(children, 5.0) == []
    assert glob.glob(str(tmp_path / "*" / "checkpoint_*" / "state.json")), err
    assert not [s for s in os.listdir("/dev/shm") if s.startswith(f"rl_{proc.pid}_")]
