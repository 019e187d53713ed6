"""The scripts in examples/ run as a user would run them (short budgets)."""

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
