"""Fault tolerance: worker deaths, failing and hanging envs, restart budgets, driver death,
interrupted saves and exact resume (the failure semantics of DESIGN.md and issue 9)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from rl import Algorithm, PPOConfig
from rl import checkpoint as ckpt
from rl.cli import main
from rl.envs import resolve_env
from rl.experiment import fit, load_example
from rl.policies import ModelSpec
from rl.rollout import RolloutWorker, WorkerFailedError, WorkerSpec
from rl.runtime import shm
from tests.conftest import pid_alive, wait_gone

REPO = Path(__file__).resolve().parents[1]
FLAKY = "tests.toy_envs:FlakyCartPole"
HANGING = "tests.toy_envs:HangingCartPole"


def small(backend="process", runners=2, env="CartPole-v1", **kw) -> PPOConfig:
    return (PPOConfig().environment(env).resources(backend=backend)
            .env_runners(num_env_runners=runners, num_envs_per_env_runner=2)
            .training(train_batch_size=128, minibatch_size=64, num_epochs=2)
            .debugging(seed=0).set(**kw))


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    kids = [int(p) for p in out.stdout.split()]
    return kids + [g for k in kids for g in _descendants(k)]


# ----------------------------------------------------------------------- worker deaths


def test_ppo_survives_three_sigkilled_workers_and_solves_cartpole():
    example = load_example(str(REPO / "tuned_examples" / "ppo" / "cartpole.yaml"))
    kills: list[int] = []

    def kill_one_mid_iteration(result):
        # The kill lands while the next iteration samples: its fragment is lost.
        if result["training_iteration"] in (3, 6, 9):
            worker = algo.workers.workers[len(kills) % 2]
            kills.append(worker.pid)
            threading.Timer(0.02, os.kill, (worker.pid, signal.SIGKILL)).start()

    with example.config.build() as algo:
        result, _ = fit(algo, example.stop, checkpoint_at_end=False,
                        on_result=kill_one_mid_iteration)
    assert len(kills) == 3
    assert result["workers/restarts"] >= 3 and result["workers/dropped_fragments"] >= 3
    assert result["workers/healthy"] == 2
    # Solved: stopped by the example's stop reward, not by its budget.
    assert result["episode_return_mean"] >= example.stop.episode_return_mean, result
    assert result["env_steps_total"] <= example.stop.env_steps_total + 1024


def test_replacement_worker_loads_the_current_weights_and_obs_filter():
    with small(normalize_obs=True).build() as algo:
        algo.train()
        algo.train()
        os.kill(algo.workers.workers[1].pid, signal.SIGKILL)
        r = algo.train()
        assert r["workers/restarts"] == 1 and r["workers/dropped_fragments"] == 1
        assert r["workers/healthy"] == 2
        assert r["env_steps_total"] == 128 * 2 + 64  # the lost fragment is not counted
        # The new worker runs the newest weights and the driver's current observation
        # filter (which has its own board): it normalises as the driver does, i.e. with
        # the driver's mean and var, not a fresh filter's.
        assert algo.workers.call_one(1, "sync_weights") == algo.board.version
        assert algo.obs_filter.count > 256
        probe = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.1, -0.5, 0.05, 0.7]])
        seen = algo.workers.call_one(1, "normalize", probe)
        np.testing.assert_allclose(seen, algo.obs_filter.normalize(probe), rtol=1e-5)
        assert not np.allclose(seen, probe, atol=1e-3)  # a fresh filter would be the identity
        r = algo.train()
        assert r["env_steps_total"] == 128 * 3 + 64


def test_hanging_env_is_killed_after_sample_timeout_and_replaced(tmp_path):
    cfg = small(env=HANGING, env_config={"token": str(tmp_path / "hung"), "hang_after": 3},
                sample_timeout_s=4.0)
    with cfg.build() as algo:
        results = [algo.train() for _ in range(3)]
    last = results[-1]
    assert (tmp_path / "hung").exists()
    assert last["workers/restarts"] == 1 and last["workers/dropped_fragments"] == 1
    assert last["workers/healthy"] == 2
    assert last["training_iteration"] == 3 and last["env_steps_total"] == 128 * 3 - 64


# --------------------------------------------------------------------- failing envs


def test_failing_sub_env_is_recreated_counted_and_logged_once(caplog):
    cfg = small(env=FLAKY, env_config={"fail_every": 25}, restart_failed_sub_environments=True)
    with caplog.at_level(logging.WARNING, logger="rl"), cfg.build() as algo:
        results = [algo.train() for _ in range(4)]
    last = results[-1]
    assert last["env/errors"] >= 4 and last["workers/restarts"] == 0
    assert last["workers/dropped_fragments"] == 0
    # Broken episodes are discarded: a reported CartPole episode ends by itself.
    assert np.isfinite(last["episode_return_mean"])
    mentions = [r for r in caplog.records if "simulator lost its connection" in r.getMessage()]
    assert len(mentions) == 1, [r.getMessage() for r in mentions]
    assert "env/errors" in mentions[0].getMessage()


def test_failing_env_restarts_the_worker_until_the_budget_then_raises(caplog):
    cfg = small(backend="inline", runners=1, env=FLAKY, env_config={"fail_every": 40},
                max_restarts_per_env_runner=2)
    with caplog.at_level(logging.WARNING, logger="rl"), cfg.build() as algo:
        with pytest.raises(WorkerFailedError) as info:
            for _ in range(20):
                algo.train()
        assert algo.workers.restarts == [3]
    err = info.value
    assert err.worker == "RolloutWorker-0"
    text = str(err)
    assert "RolloutWorker-0 failed 3 time(s)" in text and "max_restarts_per_env_runner=2" in text
    assert "ConnectionError: simulator lost its connection" in text
    assert len(text.splitlines()) == 1
    restarts = [r for r in caplog.records if "restarting it" in r.getMessage()]
    assert len(restarts) == 2  # each failure logged once, as one line
    assert all(len(r.getMessage().splitlines()) == 1 for r in restarts)


def test_cli_exits_1_with_a_checkpoint_past_the_restart_budget(tmp_path, capsys):
    code = main(["train", "--algo", "ppo", "--env", FLAKY, "--backend", "inline",
                 "--num-env-runners", "1", "--set", "max_restarts_per_env_runner=1",
                 "--set", "env_config={fail_every: 30}", "--set", "train_batch_size=64",
                 "--set", "minibatch_size=32", "--stop-iters", "100", "--logdir", str(tmp_path),
                 "--no-eval"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "rl train: error: RolloutWorker-0 failed 2 time(s)" in err
    assert "Traceback" not in err
    path = err.split("checkpoint: ")[-1].strip()
    state = ckpt.load_state(path)
    assert state["workers"]["restarts"] == [2]


def test_worker_discards_the_rows_of_a_broken_episode():
    from rl.envs import register_env
    from tests.toy_envs import FlakyCartPole

    register_env("flaky-rows", lambda cfg: FlakyCartPole(**cfg))
    env = FlakyCartPole()
    spec = WorkerSpec(resolve_env("flaky-rows"), {"fail_every": 7}, env.observation_space,
                      env.action_space, num_envs=2, fragment_length=20, seed=0,
                      model=ModelSpec.create("actor_critic", env.observation_space,
                                             env.action_space, None, {"hiddens": [8]}),
                      restart_failed_sub_envs=True)
    out = RolloutWorker(spec, worker_index=0, boards=None).sample()
    b, discarded = out["batch"], out["discarded"]
    # Every instance raises at its 7th step: rows 6 and 13 of each sub-env (the
    # replacement made at row 6 counts from 1 again).
    assert [(e[0], e[1]) for e in out["env_errors"]] == [(0, "step"), (1, "step")] * 2
    assert "ConnectionError: simulator lost its connection" in out["env_errors"][0][2]
    ends = b["terminateds"] | b["truncateds"]
    expected = np.zeros_like(discarded)
    for n in range(2):
        start = 0
        for t in range(20):
            if t in (6, 13):
                assert b["truncateds"][t, n] and b["rewards"][t, n] == 0.0
                expected[start : t + 1, n] = True
            if ends[t, n]:
                start = t + 1
    np.testing.assert_array_equal(discarded, expected)
    # Broken episodes are not reported: only the ones that ended by themselves.
    assert len(out["episode_lens"]) == int(ends.sum()) - 4


# ------------------------------------------------------------------- driver death


PPO_DRIVER = textwrap.dedent(
    """
    import os
    from rl import PPOConfig

    config = (PPOConfig().environment("CartPole-v1").resources(backend="process")
              .env_runners(num_env_runners=2, num_envs_per_env_runner=2)
              .training(train_batch_size=128, minibatch_size=64, num_epochs=1))
    algo = config.build()
    algo.train()
    print(os.getpid(), *(w.pid for w in algo.workers.workers), flush=True)
    while True:
        algo.train()
    """
)


def test_sigkill_of_a_driver_fed_through_stdin_takes_its_children_and_segments():
    driver = subprocess.Popen([sys.executable, "-"], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        driver.stdin.write(PPO_DRIVER)
        driver.stdin.close()
        line = driver.stdout.readline()
        assert line, driver.stderr.read()
        driver_pid, *worker_pids = map(int, line.split())
        children = sorted(set(_descendants(driver_pid)) | set(worker_pids))
        assert len(worker_pids) == 2 and all(pid_alive(p) for p in worker_pids)
        assert shm.list_segments(shm.driver_prefix(driver_pid))  # at least the weights board
        os.kill(driver_pid, signal.SIGKILL)
        driver.wait(10)
        assert wait_gone(children, 5.0) == []
        assert shm.list_segments(shm.driver_prefix(driver_pid)) == []
    finally:
        driver.kill()
        driver.wait()


# --------------------------------------------------------------------- checkpoints


def test_interrupted_save_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    with small(backend="inline", runners=0).build() as algo:
        algo.train()
        first = algo.save(str(tmp_path / "ckpt"))
        weights = algo.learner_group.get_weights()
        algo.train()

        def broken_savez(*args, **kwargs):
            raise KeyboardInterrupt  # as if Ctrl-C hit in the middle of writing

        monkeypatch.setattr(np, "savez", broken_savez)
        for target in (str(tmp_path / "ckpt"), str(tmp_path / "other")):
            with pytest.raises(KeyboardInterrupt):
                algo.save(target)
        monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # no temporary directory left
    assert ckpt.load_state(first)["iteration"] == 1
    with Algorithm.from_checkpoint(first) as again:
        np.testing.assert_array_equal(again.learner_group.get_weights(), weights)


def test_replacing_a_checkpoint_without_renameat2_rolls_back_on_failure(tmp_path, monkeypatch):
    path = ckpt.save_checkpoint(str(tmp_path / "c"), {"v": 1}, {"t": {"x": torch.ones(2)}})
    monkeypatch.setattr(ckpt, "_exchange", lambda a, b: False)
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the new directory's move into place
            raise OSError("disk on fire")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="disk on fire"):
        ckpt.save_checkpoint(path, {"v": 2})
    monkeypatch.undo()
    assert ckpt.load_state(path) == {"v": 1}
    assert os.listdir(tmp_path) == ["c"]
    assert ckpt.save_checkpoint(path, {"v": 3}) == path and ckpt.load_state(path) == {"v": 3}


# ---------------------------------------------------------------------- exact resume


# Wall-clock figures; everything else in a result row must match exactly.
LEARNING_KEYS_SKIPPED = ("time_total_s", "env_steps_per_s", "learner/updates_per_s",
                         "learner/busy_frac")


def _learning_metrics(run_dir: str) -> list[dict]:
    with open(os.path.join(run_dir, "result.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return [{k: v for k, v in r.items()
             if not k.startswith("timers/") and k not in LEARNING_KEYS_SKIPPED} for r in rows]


def _ppo_with_every_kind_of_state():
    # Obs and reward normalisers, lr and entropy schedules, the adaptive KL
    # coefficient, episodes in progress.
    return small(backend="inline", normalize_obs=True, normalize_rewards=True,
                 lr_schedule="linear", schedule_timesteps=1024, entropy_coeff=0.01,
                 entropy_coeff_final=0.0, kl_coeff=0.2, seed=7)


def _dqn_with_every_kind_of_state():
    # n-step windows open across the save, prioritised replay, epsilon and beta
    # schedules, the replay ratio's fractional credit, hard target updates.
    from tests.algorithms.test_dqn import small_config
    return small_config(num_env_runners=2, n_step=3, prioritized_replay=True,
                        store_buffer_in_checkpoints=True, target_network_update_freq=50,
                        seed=7)


def _sac_with_every_kind_of_state():
    # As DQN's, plus the random warm-up ending mid-run, three optimizers, the learned
    # temperature, Polyak targets and the learner's sampling noise (the torch stream).
    from tests.algorithms.test_sac_runs import small_config as small_sac
    return small_sac(num_env_runners=2, n_step=3, prioritized_replay=True,
                     store_buffer_in_checkpoints=True, learning_starts=100, seed=7)


def _impala_with_every_kind_of_state():
    # Fragments in flight and a partial train batch at the save, a board older than
    # the learner (broadcast_interval=3), and an observation filter on its own board
    # that, like the weights, is published only at broadcasts.
    from tests.algorithms.test_impala import small as small_impala
    return small_impala(runners=2, broadcast_interval=3, normalize_obs=True,
                        max_requests_in_flight_per_env_runner=2, train_batch_size=60, seed=7)


# Saved between two broadcasts while the board still held version 1: the fresh board's
# own first publish took that number, so the saved weights go out as version 2 (the
# policy lags alias it). Everything learned is the same.
_RENUMBERED = ("learner/weights_version",)


@pytest.mark.parametrize("config,iterations,renumbered", [
    (_ppo_with_every_kind_of_state, 4, ()),
    (_dqn_with_every_kind_of_state, 6, ()),
    (_sac_with_every_kind_of_state, 6, ()),
    (_impala_with_every_kind_of_state, 6, ()),
    (_impala_with_every_kind_of_state, 4, _RENUMBERED),
], ids=["ppo", "dqn", "sac", "impala", "impala-saved-between-broadcasts"])
def test_exact_resume_on_the_inline_backend(tmp_path, config, iterations, renumbered):
    half = iterations // 2
    with config().build(logdir=str(tmp_path / "straight")) as algo:
        for _ in range(iterations):
            algo.train()
        straight = algo.run_dir
    with config().build(logdir=str(tmp_path / "split")) as algo:
        for _ in range(half):
            algo.train()
        path = algo.save()
        first_half = algo.run_dir
    with Algorithm.from_checkpoint(path, logdir=str(tmp_path / "resumed")) as algo:
        for _ in range(iterations - half):
            algo.train()
        second_half = algo.run_dir
    expected = _learning_metrics(straight)
    got = _learning_metrics(first_half) + _learning_metrics(second_half)
    assert [r["training_iteration"] for r in got] == list(range(1, iterations + 1))
    for r in expected + got:
        for key in renumbered:
            r.pop(key)
    assert got == expected


def test_cli_resume_continues_exactly(tmp_path, capsys):
    def train(*extra):
        code = main(["train", "--algo", "ppo", "--env", "CartPole-v1", "--backend", "inline",
                     "--num-env-runners", "1", "--seed", "3", "--set", "train_batch_size=128",
                     "--set", "minibatch_size=64", "--set", "normalize_obs=true",
                     "--no-eval", "--json", *extra])
        out = capsys.readouterr()
        assert code == 0, out.err
        return json.loads(out.out.strip().splitlines()[-1])

    straight = train("--stop-iters", "4", "--logdir", str(tmp_path / "a"))
    half = train("--stop-iters", "2", "--logdir", str(tmp_path / "b"))
    # No layout flags on resume: the checkpoint's backend and workers are kept.
    code = main(["train", "--algo", "ppo", "--env", "CartPole-v1", "--resume", half["checkpoint"],
                 "--stop-iters", "4", "--no-eval", "--json", "--logdir", str(tmp_path / "c")])
    out = capsys.readouterr()
    assert code == 0, out.err
    resumed = json.loads(out.out.strip().splitlines()[-1])
    expected = _learning_metrics(straight["run_dir"])
    got = _learning_metrics(half["run_dir"]) + _learning_metrics(resumed["run_dir"])
    assert got == expected
