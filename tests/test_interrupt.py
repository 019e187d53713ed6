"""Ctrl-C and SIGTERM of `rl train`: checkpoint written, children gone, no shm, resumable."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from rl.checkpoint import load_state
from rl.experiment import Stop, Terminated, fit
from rl.runtime import shm
from tests.conftest import pid_alive, wait_gone


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    kids = [int(p) for p in out.stdout.split()]
    return kids + [g for k in kids for g in _children(k)]


def _results(run_root) -> int:
    files = glob.glob(str(run_root / "*" / "result.jsonl"))
    if not files:
        return 0
    with open(files[0]) as f:
        return sum(1 for line in f if line.endswith("\n"))


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_writes_checkpoint_and_cleans_up(tmp_path, sig, code):
    arm, mark = tmp_path / "arm", tmp_path / "mark"
    run_root = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rl.cli", "train", "--algo", "ppo",
         "--env", "tests.toy_envs:MarkingCartPole",
         "--stop-timesteps", "100000000", "--logdir", str(run_root), "--num-env-runners", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "RL_TEST_ARM": str(arm), "RL_TEST_MARK": str(mark)})
    deadline = time.monotonic() + 120  # a guard against a hang, not a measurement
    while _results(run_root) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training never produced a result"
        time.sleep(0.05)
    children = _children(proc.pid)
    assert children, "expected worker processes"
    arm.touch()  # the next env step (inside an iteration's sampling) creates the mark
    while not mark.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no worker stepped its env after the arm"
        time.sleep(0.01)
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"rl train did not exit within 60 s of signal {sig}")
    assert proc.returncode == code, err
    assert wait_gone(children, 5.0) == []
    assert shm.list_segments(shm.driver_prefix(proc.pid)) == []
    path = err.strip().splitlines()[-1].split("checkpoint: ")[-1]
    saved = load_state(path)
    assert saved["iteration"] >= 2 and saved["env_steps_total"] == 1024 * saved["iteration"]
    # The checkpoint resumes, and the counters go on from it.
    resumed = subprocess.run(
        [sys.executable, "-m", "rl.cli", "train", "--resume", path,
         "--algo", "ppo", "--env", "tests.toy_envs:MarkingCartPole",
         "--stop-iters", str(saved["iteration"] + 1),
         "--logdir", str(tmp_path / "resumed"), "--json", "--no-eval"],
        capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert result["training_iteration"] == saved["iteration"] + 1
    assert result["env_steps_total"] == saved["env_steps_total"] + 1024
    assert pid_alive(os.getpid())


# ------------------------------------------------- where a signal takes effect (in-process)


def _inline_ppo(tmp_path):
    from rl import PPOConfig

    config = (PPOConfig().environment("CartPole-v1").resources(backend="inline")
              .env_runners(num_env_runners=1, num_envs_per_env_runner=2)
              .training(train_batch_size=128, minibatch_size=64, num_epochs=2))
    return config.build(logdir=str(tmp_path))


def _signal_inside(obj, method: str, when, signals=(signal.SIGINT,)):
    """Wrap ``obj.method`` so that ``signals`` arrive in the middle of it when ``when()``."""
    real = getattr(obj, method)

    def wrapped(*args, **kwargs):
        if when():
            for sig in signals:
                os.kill(os.getpid(), sig)
        return real(*args, **kwargs)

    setattr(obj, method, wrapped)


@pytest.mark.parametrize("sig,exc", [(signal.SIGINT, KeyboardInterrupt),
                                     (signal.SIGTERM, Terminated)])
def test_a_signal_during_the_update_takes_effect_once_it_is_whole(tmp_path, sig, exc):
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    algo = _inline_ppo(tmp_path)
    with algo:
        _signal_inside(algo.learner_group, "update", lambda: algo.iteration == 1, (sig,))
        with pytest.raises(exc):
            fit(algo, Stop(training_iteration=10))
        saved = load_state(algo.last_checkpoint)
    # The second iteration's update completed and was counted; nothing is torn.
    assert saved["iteration"] == 2 and saved["env_steps_total"] == 256
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers


def test_a_signal_while_sampling_abandons_the_iteration(tmp_path):
    algo = _inline_ppo(tmp_path)
    with algo:
        worker = algo.workers.workers[0]._instance  # inline: the worker object itself
        _signal_inside(worker, "sample", lambda: algo.iteration == 2)
        with pytest.raises(KeyboardInterrupt):
            fit(algo, Stop(training_iteration=10))
        saved = load_state(algo.last_checkpoint)
    assert saved["iteration"] == 2 and saved["env_steps_total"] == 256
    # The workers were mid-fragment: their state is not saved, a resume starts afresh.
    assert not os.path.exists(os.path.join(algo.last_checkpoint, "worker_0.npz"))


def test_a_second_signal_stops_at_once_without_a_checkpoint(tmp_path):
    algo = _inline_ppo(tmp_path)
    with algo:
        _signal_inside(algo.learner_group, "update", lambda: algo.iteration == 1,
                       (signal.SIGINT, signal.SIGINT))
        with pytest.raises(KeyboardInterrupt):
            fit(algo, Stop(training_iteration=10))
        assert algo.last_checkpoint is None
