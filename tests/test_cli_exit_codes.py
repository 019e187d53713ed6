"""Every subcommand's usage error exits 2, through the ``rl`` script and through
``python -m rl.cli`` alike.

``python -m rl.cli`` runs ``rl/cli.py`` as ``__main__`` while the subcommand modules
(``rl.cli_serve``, ``rl.cli_export``, ...) import ``rl.cli``: the error classes they
raise must be the ones ``main`` catches, so each case runs in a real subprocess both ways.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RL_SCRIPT = os.path.join(os.path.dirname(sys.executable), "rl")

# (subcommand argv, a phrase of its one-line error); nothing here starts a process
USAGE_ERRORS = [
    (["train", "--env", "CartPole-v1"], "rl train: error: missing --algo"),
    (["evaluate", "/nonexistent/ckpt"], "rl evaluate: error: '/nonexistent/ckpt' is not a "
     "checkpoint directory"),
    (["bench", "--seeds", "x"], "rl bench: error: --seeds expects comma-separated integers"),
    (["plot", "/nonexistent/run"], "rl plot: error: '/nonexistent/run' does not exist"),
    (["list", "--bogus"], "unrecognized arguments: --bogus"),
    (["export", "/nonexistent/ckpt", "--format", "onnx", "-o", "/nonexistent/dir/p.onnx"],
     "rl export: error: -o /nonexistent/dir/p.onnx: the directory /nonexistent/dir does "
     "not exist"),
    (["serve", "/nonexistent/p.onnx"], "rl serve: error: /nonexistent/p.onnx: no such "
     "checkpoint or file"),
    (["serve", "/nonexistent/p.onnx", "--replicas", "2"], "rl serve: error: --replicas "
     "needs --backend ray"),
    (["tune", "/nonexistent/sweep.yaml"], "rl tune: error: tuned example file "
     "'/nonexistent/sweep.yaml' does not exist"),
]


@pytest.mark.parametrize("how", ["rl", "python -m rl.cli"])
@pytest.mark.parametrize("argv, phrase", USAGE_ERRORS, ids=[" ".join(a[:2]) for a, _ in
                                                            USAGE_ERRORS])
def test_a_usage_error_exits_2_with_one_line(how, argv, phrase):
    command = [RL_SCRIPT] if how == "rl" else [sys.executable, "-m", "rl.cli"]
    env = {**os.environ, "PYTHONPATH": ROOT}
    out = subprocess.run(command + argv, env=env, capture_output=True, text=True,
                         timeout=120)
    err = out.stderr.strip()
    assert out.returncode == 2, err
    assert phrase in err and "Traceback" not in err, err
