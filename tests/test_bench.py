"""rl bench / rl plot: report rows, learning-curve PNGs, pass/fail exit codes."""

import json
import os

import numpy as np

from rl.cli import main

EXAMPLE = """\
algo: ppo
env: CartPole-v1
config:
  backend: inline
  num_env_runners: 0
  num_envs_per_env_runner: 4
  train_batch_size: 256
  minibatch_size: 128
  num_epochs: 2
stop:
  training_iteration: 3
pass:
  metric: episode_return_mean
  min: {threshold}
reference:
  source: rl-baselines3-zoo
  value: 500
  std: 0
  protocol: training_return
  budget: 100000
"""

GREEDY = EXAMPLE.replace("  metric: episode_return_mean\n",
                         "  metric: eval/episode_return_mean\n  episodes: 3\n").replace(
    "protocol: training_return", "protocol: greedy_eval\n  episodes: 300")


def test_bench_writes_report_and_curves(tmp_path, capsys):
    easy = tmp_path / "easy.yaml"
    easy.write_text(EXAMPLE.format(threshold=1))
    out = tmp_path / "out"
    assert main(["bench", str(easy), "--seeds", "0,1", "--out", str(out), "--as-test"]) == 0
    report = (out / "report.md").read_text()
    row = [line for line in report.splitlines() if line.startswith("| ppo | CartPole-v1")][0]
    assert "| 2/2 |" in row and "500 ± 0 (training return) @ 100,000 steps (rl-baselines3-zoo)" in row
    # The rl figure beside it is measured the same way: the final training return.
    assert "(training return, 2 seeds) | 500 ± 0" in row
    assert (out / "ppo_easy.png").stat().st_size > 1000
    runs = json.loads((out / "runs.json").read_text())
    run_dirs = [r["run_dir"] for r in runs[str(easy)]]
    assert all(os.path.isfile(os.path.join(d, "result.jsonl")) for d in run_dirs)
    png = tmp_path / "curves.png"
    assert main(["plot", *run_dirs, "-o", str(png)]) == 0
    assert png.stat().st_size > 1000


def test_a_greedy_criterion_is_checked_by_an_evaluation_after_the_run(tmp_path, capsys):
    easy, hard = tmp_path / "easy.yaml", tmp_path / "hard.yaml"
    easy.write_text(GREEDY.format(threshold=1))
    hard.write_text(GREEDY.format(threshold=100000))
    out = tmp_path / "out"
    assert main(["bench", str(easy), str(hard), "--seeds", "0,1", "--out", str(out),
                 "--as-test"]) == 1
    runs = json.loads((out / "runs.json").read_text())
    for path, passed in ((str(easy), [True, True]), (str(hard), [False, False])):
        assert [r["passed"] for r in runs[path]] == passed
        assert [r["eval_episodes"] for r in runs[path]] == [3, 3]
    easy_runs = runs[str(easy)]
    # Passed at the run's end, the one point the greedy criterion is measured.
    assert [r["steps_to_pass"] for r in easy_runs] == [r["env_steps"] for r in easy_runs]
    # The evaluation is logged after the run's three iterations: a fourth result.jsonl row.
    with open(os.path.join(easy_runs[0]["run_dir"], "result.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == 4 and rows[-1]["eval/episodes"] == 3
    report = (out / "report.md").read_text()
    row = [line for line in report.splitlines() if line.startswith("| ppo | CartPole-v1")][0]
    means = [r["eval_return"] for r in easy_runs]
    assert f"| {np.mean(means):.1f} ± " in row and "(greedy eval over 6 episodes, 2 seeds)" in row
    assert "eval/episode_return_mean >= 1 (greedy eval over 3 episodes)" in row
    assert "500 ± 0 (greedy eval over 300 episodes) @ 100,000 steps (rl-baselines3-zoo)" in row
    assert "greedy eval" in capsys.readouterr().err


def test_greedy_figures_pool_the_episodes_of_every_seed():
    from rl.bench import SeedRun, measured_like

    def run(returns):
        return SeedRun(seed=0, passed=True, steps_to_pass=1, time_to_pass_s=1.0,
                       final_return=0.0, env_steps=1, wall_s=1.0, run_dir="",
                       eval_return=float(np.mean(returns)), eval_std=float(np.std(returns)),
                       eval_episodes=len(returns))

    a, b = [1.0, 3.0], [10.0, 20.0, 30.0, 40.0]
    text = measured_like("greedy_eval", [run(a), run(b)])
    assert text == f"{np.mean(a + b):.1f} ± {np.std(a + b):.1f} (greedy eval over 6 episodes, 2 seeds)"


def test_bench_as_test_fails_when_criterion_missed(tmp_path, capsys):
    hard = tmp_path / "hard.yaml"
    hard.write_text(EXAMPLE.format(threshold=100000))
    assert main(["bench", str(hard), "--seeds", "0", "--out", str(tmp_path / "o"),
                 "--as-test"]) == 1
    assert "| 0/1 |" in (tmp_path / "o" / "report.md").read_text()


def test_bench_rejects_missing_path(capsys):
    assert main(["bench", "/nonexistent/dir"]) == 2
    assert "neither a tuned-example file nor a directory" in capsys.readouterr().err


def test_bench_stop_flags_cap_every_run_and_the_report_says_so(tmp_path, capsys):
    easy, hard = tmp_path / "easy.yaml", tmp_path / "hard.yaml"
    easy.write_text(EXAMPLE.format(threshold=1))
    hard.write_text(EXAMPLE.format(threshold=100000))
    out = tmp_path / "out"
    # One 256-step iteration instead of the examples' three.
    assert main(["bench", str(easy), str(hard), "--seeds", "0", "--out", str(out),
                 "--stop-timesteps", "256", "--as-test"]) == 1
    runs = json.loads((out / "runs.json").read_text())
    assert [r["env_steps"] for rs in runs.values() for r in rs] == [256, 256]
    for rs in runs.values():
        with open(os.path.join(rs[0]["run_dir"], "result.jsonl")) as f:
            assert len(f.readlines()) == 1
    report = (out / "report.md").read_text()
    assert "Capped for a quick look: every run stopped at env_steps_total ≤ 256" in report
    # The pass criteria are still the examples' own, and still checked.
    rows = [line for line in report.splitlines() if line.startswith("| ppo | CartPole-v1")]
    assert ["| 1/1 |" in rows[0], "| 0/1 |" in rows[1]] == [True, True]
    assert "failed: " + str(hard) in capsys.readouterr().err


def test_a_cap_lowers_criteria_and_never_raises_them():
    from rl.bench import capped
    from rl.experiment import Stop

    own = Stop(training_iteration=3, episode_return_mean=475)
    cap = Stop(training_iteration=10, env_steps_total=5000, episode_return_mean=100)
    assert capped(own, cap).to_dict() == {"episode_return_mean": 100, "env_steps_total": 5000,
                                          "training_iteration": 3}
    assert capped(own, None) is own and own.to_dict() == {"episode_return_mean": 475,
                                                           "training_iteration": 3}


def test_an_env_that_cannot_be_made_fails_before_any_example_runs(tmp_path, capsys):
    good = tmp_path / "a_good.yaml"
    good.write_text(EXAMPLE.format(threshold=1))
    broken = tmp_path / "b_broken.yaml"
    broken.write_text(EXAMPLE.format(threshold=1).replace(
        "env: CartPole-v1", "env: tests.toy_envs:NoSuchEnv"))
    out = tmp_path / "out"
    assert main(["bench", str(good), str(broken), "--seeds", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "NoSuchEnv" in err and "[1/" not in err  # nothing ran
    assert not (out / "runs.json").exists()
