"""Ctrl-C and SIGTERM of `rl train`: checkpoint written, children gone, no shm, resumable."""

import glob
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import pid_alive, wait_gone


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    kids = [int(p) for p in out.stdout.split()]
    return kids + [g for k in kids for g in _children(k)]


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_writes_checkpoint_and_cleans_up(tmp_path, sig, code):
    proc = subprocess.Popen(
        [sys.executable, "-m", "rl.cli", "train", "--algo", "ppo", "--env", "CartPole-v1",
         "--stop-timesteps", "100000000", "--logdir", str(tmp_path), "--num-env-runners", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not glob.glob(str(tmp_path / "*" / "result.jsonl")) or \
            os.path.getsize(glob.glob(str(tmp_path / "*" / "result.jsonl"))[0]) == 0:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training never produced a result"
        time.sleep(0.2)
    children = _children(proc.pid)
    assert children, "expected worker processes"
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == code, err
    assert wait_gone(children, 5.0) == []
    ckpts = glob.glob(str(tmp_path / "*" / "checkpoint_*" / "state.json"))
    assert ckpts, err
    assert not [s for s in os.listdir("/dev/shm") if s.startswith(f"rl_{proc.pid}_")]
    # The checkpoint resumes.
    resumed = subprocess.run(
        [sys.executable, "-m", "rl.cli", "train", "--resume", os.path.dirname(ckpts[0]),
         "--algo", "ppo", "--env", "CartPole-v1", "--stop-iters", "1000000",
         "--stop-timesteps", "1", "--logdir", str(tmp_path / "resumed"), "--json", "--no-eval"],
        capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert pid_alive(os.getpid())
