"""The scripts in examples/ run as a user would run them (short budgets)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_custom_env_example_trains_evaluates_and_records(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "custom_env.py"), "--timesteps", "1024",
         "--video", "videos"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert "trained 1024 env steps" in out.stdout and "greedy evaluation:" in out.stdout
    videos = sorted((tmp_path / "videos").glob("corridor-env*-episode-*.mp4"))
    assert len(videos) == 2 and all(v.stat().st_size > 0 for v in videos)


def test_custom_env_example_serves_the_cli_through_import(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "rl.cli", "train", "--algo", "ppo", "--import", "custom_env",
         "--env", "corridor", "--stop-timesteps", "512", "--logdir", str(tmp_path),
         "--num-env-runners", "1", "--no-eval", "--json"],
        cwd=ROOT / "examples", capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert any(d.name.startswith("ppo_corridor_") for d in tmp_path.iterdir())


def test_custom_model_example_trains_both_algorithms_and_reloads(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "custom_model.py"), "--timesteps", "2048"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert "PPO with resmlp: 2048 env steps" in out.stdout, out.stdout
    assert "DQN with custom_model:DuelingQ:" in out.stdout, out.stdout
    assert out.stdout.count("greedy evaluation:") == 2


def _custom_keys(result: dict) -> dict:
    return {k: v for k, v in result.items() if k.startswith("custom/")}


def test_custom_metrics_example_reports_its_metrics_and_logs_them(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "custom_metrics.py"), "--timesteps", "2048"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert "trained 2048 env steps" in out.stdout, out.stdout
    (jsonl,) = tmp_path.glob("runs/ppo_cartpole_info_*/result.jsonl")
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        custom = _custom_keys(row)
        for name in ("max_pole_angle", "max_cart_position", "length"):
            low, mean, high = (custom[f"custom/{name}_{s}"] for s in ("min", "mean", "max"))
            assert 0 < low <= mean <= high, (name, custom)
        # An untrained policy's episodes end by the pole falling past 12 degrees
        # (0.2095 rad), which each one's largest |angle| shows, just past the limit.
        assert 0.2095 < custom["custom/max_pole_angle_min"] < 0.35, custom
        assert custom["custom/max_cart_position_max"] < 2.4 + 0.1, custom
        assert custom["custom/length_min"] >= 8 and custom["custom/length_max"] <= 500
    # on_train_result's running best, in the driver
    assert [r["custom/best_length_mean"] for r in rows] == [
        max(r["custom/length_mean"] for r in rows[: i + 1]) for i in range(len(rows))]
    assert "custom/max_pole_angle_mean = " in out.stdout


def test_custom_metrics_example_serves_the_cli_through_callbacks_class(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "rl.cli", "train", "--algo", "ppo", "--env", "cartpole_info",
         "--import", "custom_metrics", "--set", "callbacks_class=custom_metrics:PoleStats",
         "--stop-iters", "1", "--logdir", str(tmp_path), "--num-env-runners", "1",
         "--no-eval", "--json"],
        cwd=ROOT / "examples", capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    custom = _custom_keys(result)
    assert custom["custom/best_length_mean"] == custom["custom/length_mean"] > 0
    assert 0.2095 < custom["custom/max_pole_angle_min"] <= custom["custom/max_pole_angle_max"]


def test_action_masking_example_trains_both_algorithms_within_the_mask(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "action_masking.py"), "--timesteps", "2048"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    # CardHand raises on a card not in hand: finishing at all means no illegal play.
    lines = [line for line in out.stdout.splitlines() if line.startswith(("PPO:", "DQN:"))]
    assert len(lines) == 2, out.stdout
    for line in lines:
        assert line.split("plays card ")[1].split(" ")[0] in ("0", "2", "5"), line


def test_recurrent_policy_example_trains_and_carries_the_state_through_an_episode():
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "recurrent_policy.py"), "--timesteps", "1024"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert "trained 1024 env steps" in out.stdout
    assert "one greedy episode carrying the LSTM state: return" in out.stdout


def test_multi_agent_example_trains_a_policy_per_agent_and_plays_a_game(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "multi_agent.py"), "--timesteps", "4096",
         "--independent"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert "trained 4096 env steps" in out.stdout, out.stdout
    # One policy per agent: their greedy actions match only once both learned the same
    # convention (seeds 0-5 all do within 4096 env steps, tests/test_multi_policy.py).
    assert "one greedy game: return 16 of 16" in out.stdout, out.stdout
    trained = float(out.stdout.split("training return ")[1].split()[0])
    assert trained >= 15.0, out.stdout
