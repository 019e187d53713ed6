"""The rl CLI: user errors exit 2 with one line, JSON output, --as-test, run directory."""

import json
import os
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import rl
from rl.cli import main
from rl.metrics import is_evaluation_row


@pytest.mark.parametrize("argv,needle", [
    (["train", "--algo", "ppx", "--env", "CartPole-v1"], "unknown algorithm 'ppx'; did you mean ppo"),
    (["train", "--algo", "td3", "--env", "CartPole-v1"],
     "unknown algorithm 'td3'. Valid algorithms: ppo, impala, dqn, sac"),
    (["train", "--algo", "ppo", "--env", "CartPol"], "Closest valid names: CartPole-v1"),
    (["train", "--algo", "ppo", "--env", "CartPole-v1", "--set", "lrr=1"], "did you mean lr"),
    (["train", "--algo", "ppo", "--env", "CartPole-v1", "--set", "lr=fast"], "lr: expected float"),
    (["train", "--algo", "ppo", "--env", "CartPole-v1", "--set", "gamma=2"], "gamma must be <= 1.0"),
    (["train", "--algo", "ppo", "--env", "CartPole-v1", "--set", "lr=-1e-3"],
     "lr must be >= 0.0, got -0.001"),
    (["train", "-f", "/nonexistent/example.yaml"], "does not exist"),
    (["train", "--algo", "ppo", "--env", "tests.toy_envs:MultiBinaryActionEnv"],
     "cannot handle action space"),
    (["train", "--algo", "ppo"], "missing --env"),
    (["train"], "missing --algo (or -f FILE, or --resume CHECKPOINT)"),
    (["train", "--algo", "ppo", "--env", "tests.toy_envs:make_parallel_env"],
     "env 'tests.toy_envs:make_parallel_env': _ParallelEnv is not a PettingZoo Parallel env: "
     "it has no 'agents' attribute after reset()"),
    (["train", "--algo", "ppo", "--env", "tests.toy_envs:RaisingConstructorEnv"],
     "RaisingConstructorEnv(**env_config) raised RuntimeError: simulator licence not found"),
    (["train", "--import", "no_such_module_here", "--algo", "ppo", "--env", "CartPole-v1"],
     "--import no_such_module_here: importing module 'no_such_module_here' raised "
     "ModuleNotFoundError"),
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


@pytest.mark.parametrize("key,text,value", [
    ("lr", "-1e-3", -1e-3), ("model_activation", "swish", "swish"), ("clip_param", "-0.2", -0.2),
    ("model_hiddens", "64,0", [64, 0]), ("rollout_fragment_length", "0", 0),
])
def test_a_bad_set_value_is_the_message_python_gives(key, text, value, capsys):
    from rl import ConfigError, PPOConfig

    with pytest.raises(ConfigError) as info:
        PPOConfig().set(**{key: value})
    assert main(["train", "--algo", "ppo", "--env", "CartPole-v1", "--set", f"{key}={text}"]) == 2
    assert capsys.readouterr().err.strip() == f"rl train: error: {info.value}"


def test_a_bad_value_in_a_tuned_example_names_the_file_and_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("algo: ppo\nenv: CartPole-v1\nconfig:\n  clip_param: -0.2\n")
    assert main(["train", "-f", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (f"rl train: error: {path}: clip_param must be "
                                               f">= 0.0, got -0.2")


def test_help_config_prints_the_valid_values_the_setter_checks(capsys):
    from rl import PPOConfig

    assert main(["train", "--algo", "ppo", "--help-config"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert lines["model_activation"].endswith("valid: one of: tanh, relu, elu, silu, gelu")
    assert lines["gamma"].endswith("valid: float in [0.0, 1.0]")
    assert lines["lr"].endswith("valid: float >= 0.0")
    assert lines["clip_param"].endswith("valid: float >= 0.0")
    assert lines["rollout_fragment_length"].endswith("valid: 'auto' or an int >= 1")
    for name in PPOConfig.field_names():
        assert lines[name].endswith(f"valid: {PPOConfig.valid_values(name)}")
    # Fields are grouped under the builder method that sets them.
    sections = [line for line in out.splitlines() if line.startswith(".")]
    assert sections[:3] == [".environment()", ".env_runners()", ".training()"]
    assert out.index(".learners()") < out.index("  num_learners ") < out.index(".resources()")


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
    # The resolved config: the env as it resolved, not as typed, and every field, so that
    # the file alone rebuilds the run's config (the checkpoint's).
    assert params["env"] == "CartPole-v1"
    assert rl.PPOConfig.from_dict(params).to_dict() == params
    with open(os.path.join(result["checkpoint"], "state.json")) as f:
        assert json.load(f)["config"] == params
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


@pytest.mark.parametrize("text,value", [("-200", -200.0), ("-1.5e2", -150.0), ("-2k", -2000.0),
                                        ("-.5", -0.5), ("-1_000.5", -1000.5)])
def test_stop_reward_takes_negative_numbers_in_every_notation(text, value):
    from rl.cli import _make_config, build_parser

    for command in (["train", "--algo", "ppo", "--env", "Pendulum-v1"], ["bench"]):
        args = build_parser().parse_args([*command, "--stop-reward", text])
        assert args.stop_reward == value
    args = build_parser().parse_args(["train", "--algo", "ppo", "--env", "Pendulum-v1",
                                      "--stop-reward", text])
    assert _make_config(args)[1].episode_return_mean == value


@pytest.mark.parametrize("text,seconds", [("90", 90.0), ("1.5e3", 1500.0), ("90s", 90.0),
                                          ("5m", 300.0), ("1.5h", 5400.0)])
def test_stop_time_takes_durations(text, seconds):
    from rl.cli import _make_config, build_parser

    args = build_parser().parse_args(["train", "--algo", "ppo", "--env", "CartPole-v1",
                                      "--stop-time", text])
    assert _make_config(args)[1].time_total_s == seconds
    assert build_parser().parse_args(["bench", "--stop-time", text]).stop_time == seconds


@pytest.mark.parametrize("text", ["5M", "2k", "5d", "soon", "-5m"])
def test_stop_time_refuses_other_suffixes_in_one_line(text, capsys):
    from rl.cli import build_parser

    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["train", "--algo", "ppo", "--env", "CartPole-v1",
                                   "--stop-time", text])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--stop-time" in err and repr(text) in err


def test_tuned_example_stop_time_takes_durations():
    from rl.config import ConfigError
    from rl.experiment import Stop

    assert Stop.from_dict({"time_total_s": "5m"}).time_total_s == 300.0
    assert Stop.from_dict({"time_total_s": "90"}).time_total_s == 90.0
    assert Stop.from_dict({"time_total_s": 120}).time_total_s == 120.0
    with pytest.raises(ConfigError, match="stop.time_total_s: '5M' is not a duration"):
        Stop.from_dict({"time_total_s": "5M"})


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


# ---------------------------------------------------------------------- resume

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FAST = ["--backend", "inline", "--num-env-runners", "1", "--set", "train_batch_size=128",
        "--set", "minibatch_size=64", "--set", "num_epochs=1", "--set", "model_hiddens=16",
        "--no-eval", "--json"]


def _train(capsys, *argv, code=0):
    got = main(["train", *argv])
    out = capsys.readouterr()
    assert got == code, out.err
    return (json.loads(out.out.strip().splitlines()[-1]) if code == 0 else None), out.err


def _iterations(run_dir):
    with open(os.path.join(run_dir, "result.jsonl")) as f:
        return [json.loads(line)["training_iteration"] for line in f]


def _tensorboard_steps(run_dir, key="training_iteration"):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(run_dir)
    events.Reload()
    return sorted((e.step, e.value) for e in events.Scalars(key))


@pytest.fixture
def first_run(tmp_path, capsys):
    """Two iterations of a 256-step budget, a checkpoint after each."""
    result, _ = _train(capsys, "--algo", "ppo", "--env", "CartPole-v1", "--seed", "1",
                       "--stop-timesteps", "256", "--checkpoint-every", "1",
                       "--logdir", str(tmp_path / "runs"), *FAST)
    assert _iterations(result["run_dir"]) == [1, 2]
    return result


def test_resume_alone_continues_the_original_run_dir(first_run, capsys):
    # No --algo, --env or stop flags: all from the checkpoint, the budget included.
    result, err = _train(capsys, "--resume", first_run["checkpoint"], "--stop-timesteps", "512",
                         "--no-eval", "--json")
    assert result["run_dir"] == first_run["run_dir"] and "(continued)" in err
    assert result["training_iteration"] == 4 and result["env_steps_total"] == 512
    assert _iterations(first_run["run_dir"]) == [1, 2, 3, 4]
    # TensorBoard: one curve over both processes' event files, by env_steps_total.
    assert _tensorboard_steps(first_run["run_dir"]) == [(128, 1), (256, 2), (384, 3), (512, 4)]
    assert result["checkpoint"] == os.path.join(first_run["run_dir"], "checkpoint_000004")


def test_resume_without_stop_flags_keeps_the_original_budget(first_run, capsys):
    # The first run's --stop-timesteps 256 is in the checkpoint, which is already there:
    # one line says so, and nothing trains.
    assert main(["train", "--resume", first_run["checkpoint"], "--json", "--no-eval"]) == 0
    out = capsys.readouterr()
    assert "is already past its stop criteria (env_steps_total 256 >= 256): nothing to " \
           "train" in out.err
    assert _iterations(first_run["run_dir"]) == [1, 2]
    # --json still ends stdout with where the run stands.
    last = json.loads(out.out.strip().splitlines()[-1])
    assert (last["training_iteration"], last["env_steps_total"]) == (2, 256)
    assert last["stop_reason"] == "env_steps_total" and last["checkpoint"] == \
        first_run["checkpoint"]


def _set_saved_stop_and_returns(checkpoint, stop, returns):
    """Edit a checkpoint's saved stop criteria and its window of episode returns."""
    file = os.path.join(checkpoint, "state.json")
    with open(file) as f:
        state = json.load(f)
    state["stop"] = stop
    state["episodes"] = {"returns": returns, "lens": [int(r) for r in returns],
                         "total": len(returns)}
    with open(file, "w") as f:
        json.dump(state, f)


@pytest.mark.parametrize("flags", [[], ["--stop-reward", "475"]])
def test_resume_past_the_reward_goal_trains_nothing(first_run, flags, capsys):
    # Saved criteria (or the flags) ask for a smoothed return of 475; the checkpoint's
    # window already averages 480.9: the same rule as a spent step budget.
    _set_saved_stop_and_returns(first_run["checkpoint"],
                                {"episode_return_mean": 475.0, "env_steps_total": 100_000},
                                [500.0] * 9 + [309.0])
    assert main(["train", "--resume", first_run["checkpoint"], *flags, "--json"]) == 0
    out = capsys.readouterr()
    assert "is already past its stop criteria (episode_return_mean 480.90 >= 475.0): " \
           "nothing to train" in out.err
    assert _iterations(first_run["run_dir"]) == [1, 2]
    last = json.loads(out.out.strip().splitlines()[-1])
    assert last["stop_reason"] == "episode_return_mean"
    assert last["episode_return_mean"] == pytest.approx(480.9)
    assert (last["training_iteration"], last["env_steps_total"]) == (2, 256)


def test_resume_short_of_the_reward_goal_trains_on(first_run, capsys):
    _set_saved_stop_and_returns(first_run["checkpoint"],
                                {"episode_return_mean": 475.0, "env_steps_total": 384},
                                [20.0] * 10)
    result, _ = _train(capsys, "--resume", first_run["checkpoint"], "--no-eval", "--json")
    assert result["training_iteration"] == 3 and result["stop_reason"] == "env_steps_total"


def test_resume_without_stop_flags_takes_the_last_runs_budget(first_run, capsys):
    # A resume with --stop-timesteps 512 saves that budget in its checkpoints: resuming
    # one of them with no flags goes on to 512, not to the first run's 256.
    _train(capsys, "--resume", first_run["checkpoint"], "--stop-timesteps", "512",
           "--checkpoint-every", "1", "--no-eval", "--json")
    third = os.path.join(first_run["run_dir"], "checkpoint_000003")
    with open(os.path.join(third, "state.json")) as f:
        state = json.load(f)
    assert state["stop"] == {"env_steps_total": 512} and state["stop_timesteps"] == 256
    result, err = _train(capsys, "--resume", third, "--no-eval", "--json")
    assert "stop: {'env_steps_total': 512}" in err
    assert result["training_iteration"] == 4 and result["env_steps_total"] == 512


def test_resume_from_an_older_checkpoint_starts_a_new_run_dir_next_to_it(first_run, capsys):
    older = os.path.join(first_run["run_dir"], "checkpoint_000001")
    result, err = _train(capsys, "--resume", older, "--no-eval", "--json")
    assert "already goes on to iteration 2, past the checkpoint's 1: the resumed run gets a " \
           "new run dir next to it" in err
    assert result["run_dir"] != first_run["run_dir"]
    assert os.path.dirname(result["run_dir"]) == os.path.dirname(first_run["run_dir"])
    assert _iterations(result["run_dir"]) == [2]  # the saved 256-step budget: one more
    assert _iterations(first_run["run_dir"]) == [1, 2]  # untouched


def test_resume_with_logdir_starts_a_new_run_dir_under_it(first_run, tmp_path, capsys):
    result, _ = _train(capsys, "--resume", first_run["checkpoint"], "--stop-iters", "3",
                       "--logdir", str(tmp_path / "elsewhere"), "--no-eval", "--json")
    assert os.path.dirname(result["run_dir"]) == str(tmp_path / "elsewhere")
    assert _iterations(result["run_dir"]) == [3]


@pytest.mark.parametrize("flags,needle", [
    (["--algo", "dqn"], "--algo dqn disagrees with the checkpoint's algo ({ckpt}): ppo"),
    (["--env", "Acrobot-v1"], "--env Acrobot-v1 disagrees with the checkpoint's env ({ckpt}): "
                              "CartPole-v1"),
    (["--seed", "5"], "--seed 5 disagrees with the checkpoint's seed ({ckpt}): 1"),
])
def test_resume_with_a_conflicting_flag_is_one_line_naming_both(first_run, flags, needle,
                                                                capsys):
    _, err = _train(capsys, "--resume", first_run["checkpoint"], *flags, code=2)
    err = err.strip()
    assert needle.format(ckpt=first_run["checkpoint"]) in err and len(err.splitlines()) == 1


def test_resume_with_equal_flags_and_overrides(first_run, capsys):
    # `CartPole` names the checkpoint's CartPole-v1; --set changes a config field.
    result, _ = _train(capsys, "--resume", first_run["checkpoint"], "--algo", "PPO", "--env",
                       "CartPole", "--seed", "1", "--set", "lr=1e-4", "--set", "lr_schedule=constant",
                       "--stop-iters", "3",
                       "--no-eval", "--json")
    assert result["training_iteration"] == 3 and result["learner/lr"] == pytest.approx(1e-4)
    # params.json stays the original run's; the resumed config goes beside it, named by
    # the checkpoint's iteration.
    with open(os.path.join(first_run["run_dir"], "params.json")) as f:
        assert json.load(f)["lr"] == pytest.approx(1e-3)
    with open(os.path.join(first_run["run_dir"], "params_resumed_000002.json")) as f:
        assert json.load(f)["lr"] == pytest.approx(1e-4)


def test_resume_with_the_same_config_writes_no_params_and_no_second_hparams_text(first_run,
                                                                                 capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = first_run["run_dir"]
    with open(os.path.join(run_dir, "params.json")) as f:
        before = f.read()
    _train(capsys, "--resume", first_run["checkpoint"], "--stop-iters", "3", "--no-eval",
           "--json")
    with open(os.path.join(run_dir, "params.json")) as f:
        assert f.read() == before
    assert not [n for n in os.listdir(run_dir) if n.startswith("params_resumed")]
    texts = 0
    for name in os.listdir(run_dir):
        if name.startswith("events."):
            events = EventAccumulator(os.path.join(run_dir, name))
            events.Reload()
            texts += len(events.Tags().get("tensors", []))
    assert texts == 1  # the first run's hyper-parameter table only


def test_resume_with_a_model_changing_set_names_the_file(first_run, capsys):
    _, err = _train(capsys, "--resume", first_run["checkpoint"], "--set", "model_hiddens=8",
                    code=2)
    assert "learner.pt does not fit the model of this config" in err


# ---------------------------------------------------------------------- user modules

MYENVS = """
import rl
from gymnasium.envs.classic_control import CartPoleEnv


class Pole3(CartPoleEnv):
    \"\"\"CartPole under another name, from a file in the current directory.\"\"\"


def make_pole(env_config):
    return Pole3()


rl.register_env("Pole3", make_pole)
"""


def _rl(cwd, *argv, timeout=240):
    # -P: the interpreter does not put the current directory on sys.path itself (as the
    # `rl` script does not); only the CLI's own doing may make ./myenvs.py importable.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = ROOT
    return subprocess.run([sys.executable, "-P", "-m", "rl.cli", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


SMALL = ["--algo", "ppo", "--backend", "process", "--num-env-runners", "1",
         "--num-envs-per-env-runner", "2", "--set", "train_batch_size=64", "--set",
         "minibatch_size=32", "--set", "num_epochs=1", "--stop-iters", "1", "--no-eval",
         "--json", "--logdir", "runs"]


def test_modules_in_the_current_directory_reach_the_cli_and_the_workers(tmp_path):
    (tmp_path / "myenvs.py").write_text(MYENVS)
    # module:Class from the cwd, built by a worker process.
    out = _rl(tmp_path, "train", "--env", "myenvs:Pole3", *SMALL)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["env_steps_total"] == 64
    # A name registered by an --import'ed module; the workers call its creator.
    out = _rl(tmp_path, "train", "--import", "myenvs", "--env", "Pole3", *SMALL)
    assert out.returncode == 0, out.stderr
    checkpoint = json.loads(out.stdout.strip().splitlines()[-1])["checkpoint"]
    out = _rl(tmp_path, "evaluate", checkpoint, "--import", "myenvs", "--episodes", "1")
    assert out.returncode == 0 and "1 episodes: return" in out.stdout, out.stderr
    # Without --import the name is unknown, and the message says how to make it known.
    out = _rl(tmp_path, "evaluate", checkpoint, "--episodes", "1")
    assert out.returncode == 2 and "unknown env 'Pole3'" in out.stderr
    assert "--import the module that registers it" in out.stderr


def test_a_module_that_fails_to_import_is_one_line_with_exit_2(tmp_path):
    (tmp_path / "brokenenvs.py").write_text("raise RuntimeError('no simulator here')\n")
    for command in (["train", "--import", "brokenenvs", "--algo", "ppo", "--env", "CartPole"],
                    ["evaluate", "somewhere", "--import", "brokenenvs"]):
        out = _rl(tmp_path, *command, timeout=60)
        err = out.stderr.strip()
        assert out.returncode == 2 and len(err.splitlines()) == 1, err
        assert "--import brokenenvs: importing module 'brokenenvs' raised RuntimeError: no " \
               "simulator here" in err


def test_resume_with_a_tuned_example_takes_its_stop_criteria(first_run, capsys):
    _, err = _train(capsys, "--resume", first_run["checkpoint"], "-f",
                    os.path.join(ROOT, "tuned_examples/dqn/cartpole.yaml"), code=2)
    assert "is not the checkpoint's run (ppo on CartPole-v1)" in err
    _, err = _train(capsys, "--resume", first_run["checkpoint"], "-f",
                    os.path.join(ROOT, "tuned_examples/ppo/cartpole.yaml"), "--stop-iters", "3",
                    "--json",
                    "--no-eval")
    assert "stop: {'episode_return_mean': 475.0, 'env_steps_total': 100000, " \
           "'training_iteration': 3}" in err
    assert "inline backend, 1 workers x 8 envs" in err  # the checkpoint's layout, not the file's


def test_resume_with_another_worker_layout_says_episodes_start_fresh(first_run, capsys, caplog):
    result, _ = _train(capsys, "--resume", first_run["checkpoint"], "--num-env-runners", "2",
                       "--stop-iters", "3", "--no-eval", "--json")
    assert result["training_iteration"] == 3
    assert "checkpoint holds 1 workers x 8 envs, this run 2 x 8: the workers start fresh " \
           "episodes" in caplog.text


def test_resume_with_an_env_whose_module_fails_is_that_error_not_a_mismatch(first_run,
                                                                            tmp_path, capsys,
                                                                            monkeypatch):
    (tmp_path / "crashingenvs.py").write_text("raise RuntimeError('no simulator here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _, err = _train(capsys, "--resume", first_run["checkpoint"], "--env",
                    "crashingenvs:Pole", code=2)
    assert "importing module 'crashingenvs' raised RuntimeError: no simulator here" in err
    assert "disagrees" not in err


@pytest.mark.parametrize("argv,needle", [
    (["evaluate", "somewhere", "--episodes", "0"], "--episodes: expected a whole number >= 1"),
    (["evaluate", "somewhere", "--episodes", "-1"], "--episodes: expected a whole number >= 1"),
    (["train", "--algo", "ppo", "--env", "CartPole", "--stop-iters", "0"],
     "--stop-iters: expected a whole number >= 1, got '0'"),
    (["train", "--algo", "ppo", "--env", "CartPole", "--stop-timesteps", "-5"],
     "--stop-timesteps: expected a whole number >= 1"),
    (["train", "--algo", "ppo", "--env", "CartPole", "--checkpoint-every", "-1"],
     "--checkpoint-every: expected a whole number >= 0"),
    (["train", "--algo", "ppo", "--env", "CartPole", "--num-envs-per-env-runner", "0"],
     "--num-envs-per-env-runner: expected a whole number >= 1"),
])
def test_counts_that_make_no_sense_are_one_line_with_exit_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err


def test_import_takes_a_python_file_by_path_for_the_cli_and_the_workers(tmp_path):
    # The file is not in the current directory: its folder goes on sys.path, so the
    # worker processes that unpickle `myenvs.make_pole` find the module by name.
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "myenvs.py").write_text(MYENVS)
    for path in ("./envs/myenvs.py", str(tmp_path / "envs" / "myenvs.py")):
        out = _rl(tmp_path, "train", "--import", path, "--env", "Pole3", *SMALL)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout.strip().splitlines()[-1])["env_steps_total"] == 64
    out = _rl(tmp_path, "train", "--import", "./envs/nothere.py", "--env", "Pole3", *SMALL)
    assert out.returncode == 2 and "--import ./envs/nothere.py: no such file" in out.stderr
