"""Callbacks and custom metrics: every hook fires where the docs say, custom metrics
reach results, result.jsonl and TensorBoard with the right statistics, a hook that
raises stops training without a retry, and a hook that is not overridden costs
nothing in the per-step loop."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from rl import CallbackError, Callbacks, ConfigError, DQNConfig, IMPALAConfig, PPOConfig
from rl.callbacks import EpisodeHooks
from rl.envs import VectorEnv
from tests.custom_callbacks import EndOnly, EpisodeStats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CB = "tests.custom_callbacks"
SCRIPTED = "tests.toy_envs:ScriptedEnv"


def scripted_ppo(backend="inline", workers=0, callbacks=f"{CB}:EpisodeStats", **overrides):
    return (PPOConfig().environment(SCRIPTED, env_config={"lengths": [3, 5]})
            .env_runners(num_env_runners=workers, num_envs_per_env_runner=2)
            .training(train_batch_size=64, minibatch_size=32, num_epochs=1)
            .resources(backend=backend).callbacks(callbacks).debugging(seed=None)
            .set(**overrides))


@pytest.mark.parametrize(("backend", "workers"), [("inline", 0), ("process", 2)])
def test_custom_metrics_have_the_mean_min_and_max_of_the_episodes_that_ended(backend, workers):
    with scripted_ppo(backend, workers).build() as algo:
        first = algo.train()
        # After one iteration the episode window holds exactly this iteration's episodes.
        assert first["episodes_total"] > 0
        assert first["custom/length_mean"] == pytest.approx(first["episode_len_mean"])
        assert first["custom/ret_mean"] == pytest.approx(first["episode_return_mean"])
        assert first["custom/ret_min"] == first["episode_return_min"] == 6.0  # 1 + 2 + 3
        assert first["custom/ret_max"] == first["episode_return_max"] == 15.0  # 1 + ... + 5
        assert (first["custom/length_min"], first["custom/length_max"]) == (3.0, 5.0)
        # on_episode_step saw every step; the end hook got the last step's info.
        assert first["custom/steps_seen_mean"] == first["custom/length_mean"]
        assert first["custom/last_t_mean"] == first["custom/length_mean"]
        # Global sub-env indices across the workers: 0..1 inline, 0..3 with 2 workers x 2.
        assert first["custom/env_index_min"] == 0.0
        assert first["custom/env_index_max"] == 2.0 * max(1, workers) - 1
        second = algo.train()
        ended = second["episodes_total"] - first["episodes_total"]
        # Only the second iteration's episodes: lengths 3 and 5 ended alternately per
        # sub-env, so the mean lies strictly between them.
        assert ended > 0 and 3.0 < second["custom/length_mean"] < 5.0


def test_dqn_and_impala_report_custom_metrics_too():
    dqn = (DQNConfig().environment(SCRIPTED).env_runners(num_env_runners=0)
           .training(num_steps_sampled_before_learning_starts=16, train_batch_size=8)
           .resources(backend="inline").callbacks(f"{CB}:EndOnly"))
    impala = (IMPALAConfig().environment(SCRIPTED)
              .env_runners(num_env_runners=0, num_envs_per_env_runner=2,
                           rollout_fragment_length=8)
              .training(train_batch_size=16).resources(backend="inline")
              .callbacks(f"{CB}:EndOnly"))
    for config in (dqn, impala):
        with config.build() as algo:
            result = algo.train()
            assert result["custom/length_min"] >= 3.0 and result["custom/length_max"] <= 5.0


def test_custom_metrics_reach_result_jsonl_and_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with scripted_ppo().build(logdir=str(tmp_path)) as algo:
        result = algo.train()
        run_dir = algo.run_dir
    with open(os.path.join(run_dir, "result.jsonl")) as f:
        row = json.loads(f.readline())
    for key in ("custom/length_mean", "custom/length_min", "custom/length_max"):
        assert row[key] == result[key]
    events = EventAccumulator(run_dir)
    events.Reload()
    (scalar,) = events.Scalars("custom/ret_max")
    assert scalar.value == result["custom/ret_max"] and scalar.step == result["env_steps_total"]


def test_driver_hooks_fire_and_may_add_keys(tmp_path, monkeypatch):
    notes = tmp_path / "hooks.txt"
    monkeypatch.setenv("RL_TEST_HOOKS", str(notes))
    config = scripted_ppo(callbacks=f"{CB}:DriverHooks", evaluation_interval=2,
                          evaluation_duration=2)
    with config.build(logdir=str(tmp_path / "runs")) as algo:
        algo.train()
        second = algo.train()  # evaluates: on_evaluate_end, then on_train_result
        path = algo.save(str(tmp_path / "ckpt"))
        evaluation = algo.evaluate(2)
        run_dir = algo.run_dir
    assert second["custom/driver_iteration"] == 2.0 and second["eval/driver_marker"] == 7.0
    assert evaluation["eval/driver_marker"] == 7.0
    assert notes.read_text().splitlines() == [
        "init PPO", "train 1", "evaluate", "train 2", "checkpoint True", "evaluate"]
    assert os.path.isdir(path)
    with open(os.path.join(run_dir, "result.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert rows[1]["custom/driver_iteration"] == 2.0 and rows[-1]["eval/driver_marker"] == 7.0


def test_a_worker_hook_that_raises_stops_training_without_a_restart():
    with scripted_ppo("process", 1, callbacks=f"{CB}:RaisesAtEpisodeEnd").build() as algo:
        with pytest.raises(CallbackError) as info:
            algo.train()
        assert algo.workers.total_restarts == 0
    err = info.value
    assert err.hook == "RaisesAtEpisodeEnd.on_episode_end"
    assert str(err).startswith("callback RaisesAtEpisodeEnd.on_episode_end raised "
                               "ZeroDivisionError: division by zero")
    # The user's traceback: both of their frames, none of rl's.
    assert "custom_callbacks.py" in err.user_traceback and "_divide" in err.user_traceback
    assert "rl/envs/vector.py" not in err.user_traceback


def test_a_custom_metric_that_is_not_a_number_is_a_callback_error():
    with scripted_ppo(callbacks=f"{CB}:NotANumber").build() as algo:
        with pytest.raises(CallbackError, match=r"custom_metrics\['label'\] = 'long' is not a "
                                                r"number"):
            algo.train()


def _rl(tmp_path, *argv):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "rl.cli", *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)


def test_cli_exits_1_naming_the_hook_with_the_users_traceback(tmp_path):
    out = _rl(tmp_path, "train", "--algo", "ppo", "--env", "CartPole", "--num-env-runners", "1",
              "--set", f"callbacks_class={CB}:RaisesInTrainResult", "--set",
              "train_batch_size=64", "--set", "minibatch_size=32", "--stop-iters", "2",
              "--no-eval", "--logdir", "runs")
    assert out.returncode == 1, out.stderr
    assert "rl train: error: callback RaisesInTrainResult.on_train_result raised KeyError: " \
           "'no such metric'" in out.stderr
    assert "custom_callbacks.py" in out.stderr and 'raise KeyError("no such metric")' in out.stderr
    assert "Traceback (most recent call last)" in out.stderr


@pytest.mark.parametrize(("value", "needle"), [
    (f"{CB}:NotCallbacks", "not a subclass of rl.Callbacks"),
    (f"{CB}:Missing", "not found"),
    ("no_such_module_q:C", "cannot import 'no_such_module_q'"),
])
def test_bad_callbacks_classes_fail_before_any_process_starts(value, needle):
    with pytest.raises(ConfigError, match=needle):
        scripted_ppo("process", 1, callbacks=value).build()


def test_callbacks_builder_takes_the_class_and_stores_its_path():
    config = PPOConfig().callbacks(EpisodeStats)
    assert config.callbacks_class == "tests.custom_callbacks:EpisodeStats"
    assert PPOConfig.from_dict(config.to_dict()).callbacks_class == config.callbacks_class

    class Local(Callbacks):
        pass

    with pytest.raises(ConfigError, match="define it at module level"):
        PPOConfig().callbacks(Local)
    with pytest.raises(ConfigError, match="callbacks_class must be 'package.module:Class'"):
        PPOConfig().callbacks("EpisodeStats")


def test_hooks_that_are_not_overridden_are_never_looked_up():
    hooks = EpisodeHooks(EndOnly(), num_envs=2, first_index=0)
    assert hooks.on_step is None
    assert EpisodeHooks(EpisodeStats(), 2, 0).on_step is not None
    # A vector env without callbacks has no hooks at all.
    from tests.toy_envs import ScriptedEnv

    venv = VectorEnv(ScriptedEnv, 2, seed=0)
    assert venv.hooks is None
    venv.reset()
    res = venv.step(np.zeros(2, np.int64))
    assert res.rewards.tolist() == [1.0, 1.0]
