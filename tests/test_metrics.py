"""The run's writers: evaluations in result.jsonl and TensorBoard under eval/."""

import json
import os

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import rl
from rl import metrics as M


def _config(**overrides):
    cfg = rl.PPOConfig().environment("CartPole-v1").env_runners(num_env_runners=0,
                                                                num_envs_per_env_runner=4)
    return cfg.set(backend="inline", train_batch_size=128, minibatch_size=64, num_epochs=1,
                   model_hiddens=[16], seed=0, **overrides)


def _rows(run_dir: str) -> list[dict]:
    with open(os.path.join(run_dir, "result.jsonl")) as f:
        return [json.loads(line) for line in f]


def _scalars(run_dir: str, key: str) -> list[tuple[int, float]]:
    events = EventAccumulator(run_dir)
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(key)]


def test_periodic_and_explicit_evaluations_reach_result_jsonl_and_tensorboard(tmp_path):
    with _config(evaluation_interval=2, evaluation_duration=2).build() as algo:
        run_dir = algo.attach_logger(str(tmp_path))
        results = [algo.train() for _ in range(2)]
        final = algo.evaluate(3)
    rows = _rows(run_dir)
    assert [r["training_iteration"] for r in rows] == [1, 2, 2]
    assert "eval/episode_return_mean" not in rows[0] and not M.is_evaluation_row(rows[1])
    assert rows[1]["eval/episode_return_mean"] == results[1]["eval/episode_return_mean"]
    # The explicit evaluation: the counters of the iteration it followed, its eval/ keys.
    assert M.is_evaluation_row(rows[2])
    assert rows[2] == {"training_iteration": 2, "env_steps_total": 256,
                       "time_total_s": rows[1]["time_total_s"], **final}
    assert _scalars(run_dir, "eval/episode_return_mean") == [
        (256, pytest.approx(results[1]["eval/episode_return_mean"])),
        (256, pytest.approx(final["eval/episode_return_mean"]))]
    assert [step for step, _ in _scalars(run_dir, "eval/episodes")] == [256, 256]


def test_an_evaluation_without_a_logger_writes_nothing(tmp_path):
    with _config().build() as algo:
        algo.train()
        assert set(algo.evaluate(2)) == {"eval/episode_return_mean", "eval/episode_return_std",
                                         "eval/episode_len_mean", "eval/episodes"}
    assert os.listdir(tmp_path) == []
