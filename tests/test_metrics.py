"""The run's writers: evaluations in result.jsonl and TensorBoard under eval/, and the
one progress line that ``rl train`` and Python ``fit()`` both show."""

import io
import json
import os
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import rl
from rl import metrics as M
from rl.experiment import Stop, fit


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


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def _progress_text(results: list[dict], stream: io.StringIO, budget: int | None) -> str:
    progress = M.Progress(stream, budget_steps=budget)
    for r in results:
        progress.update(r)
    progress.close()
    return stream.getvalue()


def test_fit_shows_the_cli_progress_line_on_a_tty(monkeypatch):
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    seen: list[dict] = []
    with _config().build() as algo:
        fit(algo, Stop(env_steps_total=256), checkpoint_at_end=False, on_result=seen.append)
    text = tty.getvalue()
    assert text.count("\r\x1b[2K") == 2 and text.endswith("\n")
    assert f"[{'#' * 30}] 100.0% iter    2  steps       256" in text
    # The very line RunLogger prints for `rl train`: one home for the format.
    assert text == _progress_text(seen, FakeTTY(), budget=256)


def test_algorithm_fit_verbose_false_is_silent_and_none_is_quiet_off_a_tty(monkeypatch):
    with _config().build() as algo:
        for stream, verbose in ((FakeTTY(), False), (io.StringIO(), None)):
            monkeypatch.setattr(sys, "stderr", stream)
            algo.fit({"training_iteration": algo.iteration + 1}, checkpoint_at_end=False,
                     verbose=verbose)
            assert stream.getvalue() == ""


def test_fit_verbose_off_a_tty_prints_one_line_per_iteration(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    with _config().build() as algo:
        algo.fit({"training_iteration": 2}, checkpoint_at_end=False, verbose=True)
    lines = stream.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [["iter", "1"], ["iter", "2"]]


def test_fit_adds_no_second_line_to_a_logger_that_prints(tmp_path, monkeypatch):
    tty, console = FakeTTY(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", tty)
    with _config().build() as algo:
        algo.attach_logger(str(tmp_path), console=console, tensorboard=False)
        algo.fit({"training_iteration": 2}, checkpoint_at_end=False)
    assert tty.getvalue() == "" and len(console.getvalue().splitlines()) == 2
