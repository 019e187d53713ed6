"""rl plot: a subplot per metric, legends from the configs, resumed runs as one line, a
band over seeds; unknown metrics are one line with exit 2."""

import json
import os

import numpy as np
import pytest

import rl
from rl.cli import main
from rl.metrics import read_results
from rl.plot import merge_rows, plot_runs


def _run_dir(root, name, config, rows):
    path = root / name
    path.mkdir(parents=True)
    (path / "params.json").write_text(json.dumps(config.to_dict()))
    (path / "result.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _row(iteration, ret, **extra):
    return {"training_iteration": iteration, "env_steps_total": 100 * iteration,
            "time_total_s": 2.0 * iteration, "episode_return_mean": ret,
            "learner/vf_loss": 1.0, **extra}


def _eval_row(iteration, ret):
    return {"training_iteration": iteration, "env_steps_total": 100 * iteration,
            "time_total_s": 2.0 * iteration, "eval/episode_return_mean": ret}


def _ppo(**fields):
    return rl.PPOConfig().environment("CartPole-v1").set(**fields)


@pytest.fixture
def runs(tmp_path):
    """Three seeds of one PPO config (each with a final evaluation row), one PPO run
    with another lr in two directories (resumed with --logdir elsewhere, on another
    backend), and a DQN run resumed into its own directory."""
    dirs = [_run_dir(tmp_path, f"ppo_CartPole-v1_2026-01-0{seed}", _ppo(seed=seed),
                     [_row(i, seed + i) for i in range(1, 6)] + [_eval_row(5, 10 * seed)])
            for seed in range(3)]
    # Checkpointed at 2, ran on to 4 and was stopped; resumed from the checkpoint.
    dirs.append(_run_dir(tmp_path, "ppo_a", _ppo(seed=0, lr=3e-4),
                         [_row(i, -i) for i in range(1, 5)]))
    dirs.append(_run_dir(tmp_path, "ppo_b", _ppo(seed=0, lr=3e-4, backend="process"),
                         [_row(i, 100 + i) for i in range(3, 7)]))
    dqn = rl.DQNConfig().environment("CartPole-v1").set(seed=4)
    dirs.append(_run_dir(tmp_path, "dqn_CartPole-v1_2026", dqn,
                         [_row(i, i) for i in range(1, 5)] + [_row(i, 50 + i) for i in (3, 4, 5)]))
    return dirs


def _lines(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_plot_draws_metrics_groups_bands_and_joined_runs(runs, tmp_path):
    png = tmp_path / "curves.png"
    fig = plot_runs(runs, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    returns, evals = fig.axes
    assert returns.get_ylabel() == "episode_return_mean"
    assert evals.get_ylabel() == "eval/episode_return_mean"
    assert evals.get_xlabel() == "env steps"
    # The PPO groups differ in lr: their labels say so.
    band_label = "PPO CartPole-v1 lr=0.001 (3 seeds: mean, band min-max)"
    labels = [t.get_text() for t in returns.get_legend().get_texts()]
    assert labels == [band_label, "PPO CartPole-v1 lr=0.0003 seed 0", "DQN CartPole-v1 seed 4"]
    lines = _lines(returns)
    # The seeds: their mean, and one band (seed 0 lowest, seed 2 highest).
    np.testing.assert_array_equal(lines[band_label].get_xdata(), [100, 200, 300, 400, 500])
    np.testing.assert_array_equal(lines[band_label].get_ydata(), [2, 3, 4, 5, 6])
    (shaded,) = returns.collections
    ys = shaded.get_paths()[0].vertices[:, 1]
    assert (ys.min(), ys.max()) == (1, 7)
    # The resumed run: one line, the re-done iterations 3 and 4 from its second piece.
    resumed = lines["PPO CartPole-v1 lr=0.0003 seed 0"]
    np.testing.assert_array_equal(resumed.get_xdata(), [100, 200, 300, 400, 500, 600])
    np.testing.assert_array_equal(resumed.get_ydata(), [-1, -2, 103, 104, 105, 106])
    np.testing.assert_array_equal(lines["DQN CartPole-v1 seed 4"].get_ydata(),
                                  [1, 2, 53, 54, 55])
    # Only the seeds have evaluations: at iteration 5, mean 10 over 0, 10, 20.
    (eval_line,) = evals.get_lines()
    assert eval_line.get_label() == band_label
    assert (list(eval_line.get_xdata()), list(eval_line.get_ydata())) == ([500], [10])
    (bar,) = evals.collections  # the band over one x: a bar from 0 to 20
    np.testing.assert_array_equal(bar.get_segments()[0], [[500, 0], [500, 20]])


def test_plot_metrics_x_axis_and_std_band_from_the_cli(runs, tmp_path, capsys):
    png = tmp_path / "loss.png"
    assert main(["plot", *runs[:3], "--metric", "learner/vf_loss", "--metric",
                 "episode_return_mean", "--x", "time_total_s", "--band", "std",
                 "-o", str(png)]) == 0
    assert capsys.readouterr().out.strip() == str(png) and png.stat().st_size > 1000
    fig = plot_runs(runs[:3], None, ["learner/vf_loss", "episode_return_mean"],
                    x="time_total_s", band_kind="std")
    assert [ax.get_ylabel() for ax in fig.axes] == ["learner/vf_loss", "episode_return_mean"]
    assert fig.axes[-1].get_xlabel() == "time (s)"
    (line,) = fig.axes[1].get_lines()
    assert line.get_label() == "PPO CartPole-v1 (3 seeds: mean, band mean ± std)"
    np.testing.assert_array_equal(line.get_xdata(), [2, 4, 6, 8, 10])
    ys = fig.axes[1].collections[0].get_paths()[0].vertices[:, 1]
    assert ys.max() == pytest.approx(6 + np.std([0, 1, 2]))


def test_a_directory_of_runs_plots_them_all(runs, tmp_path):
    fig = plot_runs([str(tmp_path)], None)
    assert len(fig.axes[0].get_lines()) == 3


def test_unknown_metric_is_one_line_exit_2_listing_the_keys(runs, capsys):
    assert main(["plot", runs[0], "--metric", "episode_reward_mean", "-o", os.devnull]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "unknown metric 'episode_reward_mean': did you mean episode_return_mean?" in err
    assert "env_steps_total, episode_return_mean, eval/episode_return_mean" in err


def test_not_a_run_directory_is_one_line_exit_2(tmp_path, capsys):
    assert main(["plot", str(tmp_path), "-o", os.devnull]) == 2
    assert "is not a run directory and holds none" in capsys.readouterr().err


def test_rows_merge_by_iteration():
    rows = [_row(1, 1.0), _row(2, 2.0), _eval_row(2, 9.0), _row(2, 3.0), _eval_row(2, 8.0)]
    merged = merge_rows(rows)
    assert [r["training_iteration"] for r in merged] == [1, 2]
    assert merged[1]["episode_return_mean"] == 3.0
    assert merged[1]["eval/episode_return_mean"] == 8.0


def test_a_run_without_params_json_is_labelled_by_its_directory(tmp_path):
    path = _run_dir(tmp_path, "ppo_CartPole-v1_2026-01-01", _ppo(), [_row(1, 1.0)])
    os.remove(os.path.join(path, "params.json"))
    fig = plot_runs([path], None)
    assert [line.get_label() for line in fig.axes[0].get_lines()] == [
        "ppo_CartPole-v1_2026-01-01"]


def test_runs_without_params_json_are_separate_lines(tmp_path):
    paths = [_run_dir(tmp_path, name, _ppo(), [_row(i, ret + i) for i in range(1, 4)])
             for name, ret in (("run_a", 0.0), ("run_b", 10.0))]
    # A second piece past iteration 1, without params: nothing says it continues run_a.
    paths.append(_run_dir(tmp_path, "run_c", _ppo(), [_row(i, 100.0) for i in (4, 5)]))
    for path in paths:
        os.remove(os.path.join(path, "params.json"))
    lines = _lines(plot_runs(paths, None).axes[0])
    assert sorted(lines) == ["run_a", "run_b", "run_c"]
    np.testing.assert_array_equal(lines["run_b"].get_ydata(), [11, 12, 13])


def test_a_last_line_cut_by_a_crash_is_left_out_a_bad_middle_line_is_an_error(tmp_path, capsys):
    path = _run_dir(tmp_path, "ppo_cut", _ppo(), [_row(i, i) for i in range(1, 4)])
    results = os.path.join(path, "result.jsonl")
    with open(results, "a") as f:
        f.write('{"training_iteration": 4, "episode_ret')
    assert [r["training_iteration"] for r in read_results(path)] == [1, 2, 3]
    (line,) = plot_runs([path], None).axes[0].get_lines()
    np.testing.assert_array_equal(line.get_ydata(), [1, 2, 3])
    with open(results, "a") as f:
        f.write("\n" + json.dumps(_row(4, 4)) + "\n")
    assert main(["plot", path, "-o", os.devnull]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "line 4 is not JSON" in err


@pytest.mark.parametrize("name,needle", [
    ("out.xyz", "unknown image format 'xyz'; use one of"),
    (os.path.join("missing", "out.png"), "does not exist"),
])
def test_an_output_matplotlib_cannot_write_is_one_line_exit_2(runs, tmp_path, capsys, name,
                                                              needle):
    assert main(["plot", runs[0], "-o", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err


def test_runs_named_by_a_short_env_name_are_labelled_and_grouped_by_the_resolved_id(tmp_path):
    # An older rl wrote the env as typed (--env CartPole); a tuned example gave CartPole-v1.
    typed = rl.PPOConfig().set(seed=0).to_dict() | {"env": "CartPole"}
    path = tmp_path / "ppo_CartPole-v1_old"
    path.mkdir()
    (path / "params.json").write_text(json.dumps(typed))
    (path / "result.jsonl").write_text("".join(json.dumps(_row(i, i)) + "\n" for i in (1, 2)))
    tuned = _run_dir(tmp_path, "ppo_CartPole-v1_new", _ppo(seed=1), [_row(1, 3), _row(2, 5)])
    (line,) = plot_runs([str(path), tuned], None).axes[0].get_lines()
    assert line.get_label() == "PPO CartPole-v1 (2 seeds: mean, band min-max)"
    np.testing.assert_array_equal(line.get_ydata(), [2, 3.5])


def test_runs_of_one_config_and_seed_are_lines_apart_not_a_band(tmp_path):
    # Three seed-0 runs with other budgets: nothing to average over, three lines, told
    # apart by how far each went; two of one length also by their directories.
    paths = [_run_dir(tmp_path, f"ppo_{n}_{k}", _ppo(seed=0), [_row(i, i) for i in range(1, n + 1)])
             for n, k in ((2, "a"), (4, "b"), (6, "c"), (6, "d"))]
    paths.append(_run_dir(tmp_path, "ppo_seed1", _ppo(seed=1), [_row(1, 1)]))
    fig = plot_runs(paths, None)
    lines = _lines(fig.axes[0])
    assert sorted(lines) == ["PPO CartPole-v1 seed 0, 200 env steps",
                             "PPO CartPole-v1 seed 0, 400 env steps",
                             "PPO CartPole-v1 seed 0, 600 env steps (ppo_6_c)",
                             "PPO CartPole-v1 seed 0, 600 env steps (ppo_6_d)",
                             "PPO CartPole-v1 seed 1"]
    assert not fig.axes[0].collections  # no band
    np.testing.assert_array_equal(lines["PPO CartPole-v1 seed 0, 400 env steps"].get_ydata(),
                                  [1, 2, 3, 4])


def test_without_matplotlib_the_error_names_the_plot_extra(runs, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import raises ImportError
    assert main(["plot", runs[0], "-o", os.devnull]) == 2
    err = capsys.readouterr().err.strip()
    assert "rl plot needs matplotlib, which is not installed: pip install 'rl[plot]'" in err
    assert len(err.splitlines()) == 1


def test_plot_help_names_the_plot_extra(capsys):
    with pytest.raises(SystemExit):
        main(["plot", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "Needs matplotlib: pip install 'rl[plot]' (the bench extra includes it)." in out
