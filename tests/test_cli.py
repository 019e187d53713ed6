"""The rl CLI: user errors exit 2 with one line, JSON output, --as-test, run directory."""

import json
import os
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rl.cli import main
from rl.metrics import is_evaluation_row


@pytest.mark.parametrize("argv,needle", [
    (["train", "--algo", "ppx", "--env", "CartPole-v1"], "unknown algorithm 'ppx'; did you mean ppo"),
    (["train", "--algo", "ppo", "--env", "CartPol"], "Closest valid names: CartPole-v1"),
    (["train", "--algo", "ppo", "--env", "CartPole-v1", "--set", "lrr=1"], "did you mean lr"),
    (["train", "--algo", "ppo", "--env", "CartPole-v1", "--set", "lr=fast"], "lr: expected float"),
    (["train", "--algo", "ppo", "--env", "CartPole-v1", "--set", "gamma=2"], "gamma must be <= 1.0"),
    (["train", "-f", "/nonexistent/example.yaml"], "does not exist"),
    (["train", "--algo", "ppo", "--env", "tests.toy_envs:MultiBinaryActionEnv"],
     "cannot handle action space"),
    (["train", "--algo", "ppo"], "missing --env"),
    (["evaluate", "/nonexistent/ckpt"], "not a checkpoint directory"),
])
def test_user_errors_exit_2_with_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["--debug", "train", "--algo", "ppx", "--env", "CartPole-v1"],
    ["train", "--algo", "ppx", "--env", "CartPole-v1", "--debug"],
])
def test_debug_before_or_after_the_command_shows_the_traceback(argv):
    from rl.algorithms.registry import UnknownAlgorithmError

    with pytest.raises(UnknownAlgorithmError, match="unknown algorithm 'ppx'"):
        main(argv)


def test_broken_yaml_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("algo: ppo\nenv: [unclosed\n")
    assert main(["train", "-f", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_list_prints_algorithms(capsys):
    assert main(["list"]) == 0
    assert "ppo" in capsys.readouterr().out


def test_train_writes_run_dir_and_json(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "rl.cli", "train", "--algo", "ppo", "--env", "CartPole",
         "--stop-iters", "2", "--num-env-runners", "1", "--set", "train_batch_size=256",
         "--set", "model_hiddens=32,32", "--logdir", str(tmp_path), "--json", "--as-test",
         "--stop-reward", "10000"],
        capture_output=True, text=True, timeout=180)
    assert out.returncode == 1, out.stderr  # --as-test: 10000 was not reached
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["training_iteration"] == 2 and result["env_steps_total"] == 512
    assert "eval/episode_return_mean" in result
    run_dir = result["run_dir"]
    with open(os.path.join(run_dir, "params.json")) as f:
        params = json.load(f)
    assert params["model_hiddens"] == [32, 32] and params["train_batch_size"] == 256
    with open(os.path.join(run_dir, "result.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    # Two iterations, then the final greedy evaluation at the last one's counters.
    assert [r["training_iteration"] for r in lines] == [1, 2, 2]
    assert is_evaluation_row(lines[-1]) and lines[-1]["env_steps_total"] == 512
    assert lines[-1]["eval/episode_return_mean"] == result["eval/episode_return_mean"]
    events = EventAccumulator(run_dir)
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("eval/episode_return_mean")] == [
        (512, pytest.approx(result["eval/episode_return_mean"]))]
    assert os.path.isfile(os.path.join(result["checkpoint"], "state.json"))


def test_stop_flags_take_scientific_notation_and_suffixes():
    from rl.cli import _make_config, build_parser

    args = build_parser().parse_args(["train", "--algo", "ppo", "--env", "CartPole-v1",
                                      "--stop-timesteps", "1e5", "--stop-iters", "2k",
                                      "--stop-reward", "4.75e2", "--set", "num_epochs=1e1"])
    cfg, stop, _ = _make_config(args)
    assert (stop.env_steps_total, stop.training_iteration) == (100_000, 2_000)
    assert stop.episode_return_mean == 475.0 and cfg.num_epochs == 10


def test_bad_flag_values_are_one_line_with_exit_2():
    out = subprocess.run([sys.executable, "-m", "rl.cli", "train", "--algo", "ppo", "--env",
                          "CartPole-v1", "--stop-timesteps", "lots"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    err = out.stderr.strip()
    assert len(err.splitlines()) == 1 and "usage:" not in err
    assert "--stop-timesteps: expected a whole number" in err and "got 'lots'" in err


def test_yaml_error_in_a_tuned_example_names_line_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("algo: ppo\nconfig:\n  lr: 1\n   gamma: 2\n")
    assert main(["train", "-f", str(bad)]) == 2
    assert "not valid YAML: mapping values are not allowed here at line 4, column 9" in \
        capsys.readouterr().err
