"""Rendering evaluations: ``rl evaluate --video`` writes real MP4s of the greedy episodes
(with the checkpoint's observation filter); what cannot render is one line, exit 2."""

import json
import os
import sys

import gymnasium as gym
import imageio_ffmpeg
import numpy as np
import pytest
from gymnasium.envs.classic_control import CartPoleEnv

import rl
from rl.algorithms.algorithm import Algorithm
from rl.cli import main
from rl.config import ConfigError
from rl.envs import VectorEnv, env_factory
from rl.envs.render import has_display


def _config(env="CartPole-v1", **overrides):
    cfg = rl.PPOConfig().environment(env).env_runners(num_env_runners=0,
                                                      num_envs_per_env_runner=4)
    return cfg.set(backend="inline", train_batch_size=128, minibatch_size=64, num_epochs=1,
                   normalize_obs=True, seed=0, model_hiddens=[16], **overrides)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A CartPole checkpoint one iteration in, with a non-trivial observation filter."""
    with _config().build() as algo:
        algo.train()
        return algo.save(str(tmp_path_factory.mktemp("ckpt") / "checkpoint"))


def _frames(path: str) -> int:
    reader = imageio_ffmpeg.read_frames(path)
    next(reader)  # the stream's metadata
    return sum(1 for _ in reader)


def test_evaluate_writes_one_decodable_mp4_per_episode(checkpoint, tmp_path, capsys):
    videos = tmp_path / "videos"
    assert main(["evaluate", checkpoint, "--video", str(videos), "--episodes", "3",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(out["videos"]) == 3 and sorted(os.listdir(videos)) == sorted(
        os.path.basename(p) for p in out["videos"])
    assert all(os.path.getsize(p) > 0 for p in out["videos"])
    # CartPole pays 1 a step, so a return is a length; a video holds the frame after
    # the reset and one per step (moviepy's duration rounding may drop one at the end).
    frames = [_frames(p) for p in out["videos"]]
    expected = round(3 * out["episode_return_mean"]) + 3
    assert min(frames) > 1 and expected - 3 <= sum(frames) <= expected


def test_recorded_episodes_are_the_greedy_filtered_ones(checkpoint, tmp_path):
    with Algorithm.from_checkpoint(checkpoint) as algo:
        assert algo.obs_filter is not None and algo.obs_filter.count > 1
        plain = algo.evaluate(1)
        recorded = algo.evaluate(1, video_dir=str(tmp_path))
        # The same episode played by hand: greedy actions through the checkpoint's
        # filter (compute_actions), on the evaluation's seed stream.
        venv = VectorEnv(env_factory(algo.env_spec), 1, algo.config.seed + 1_000_003)
        obs, ret, done = venv.reset(), 0.0, False
        while not done:
            res = venv.step(algo.compute_actions(obs))
            ret += float(res.rewards[0])
            done, obs = bool(res.final_obs), res.obs
        venv.close()
    assert recorded == plain
    assert recorded["eval/episode_return_mean"] == ret
    assert len(os.listdir(tmp_path)) == 1


def test_an_env_that_cannot_render_frames_is_one_line_exit_2(tmp_path, capsys):
    with _config("tests.toy_envs:ConfigurableEnv").build() as algo:
        path = algo.save(str(tmp_path / "ckpt"))
    capsys.readouterr()
    assert main(["evaluate", path, "--video", str(tmp_path / "v"), "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "env tests.toy_envs:ConfigurableEnv cannot be created with render_mode='rgb_array'" \
        in err


def test_a_registered_creator_that_drops_render_mode_is_named(tmp_path):
    rl.register_env("NoFramesPole", lambda config: CartPoleEnv())
    with _config("NoFramesPole").build() as algo, \
            pytest.raises(ConfigError, match="env NoFramesPole does not render 'rgb_array' "
                          r"frames: .* must pass env_config\['render_mode'\]"):
        algo.evaluate(1, video_dir=str(tmp_path))


def test_recording_without_moviepy_names_the_extra(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "moviepy", None)  # import moviepy -> ImportError
    with Algorithm.from_checkpoint(checkpoint) as algo, \
            pytest.raises(ConfigError, match=r"needs moviepy: pip install 'rl\[video\]'"):
        algo.evaluate(1, video_dir=str(tmp_path))


def test_render_without_a_display_is_one_line_exit_2(checkpoint, monkeypatch, capsys):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["evaluate", checkpoint, "--render", "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "there is no display" in err


def test_has_display_reads_x11_and_wayland(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert not has_display()
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert has_display()


def test_video_and_render_together_are_a_usage_error(checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", checkpoint, "--video", str(tmp_path), "--render"])
    assert exit_.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_videos_record_only_the_counted_episodes(tmp_path):
    from rl.envs import resolve_env
    from rl.envs.render import RenderingEnvFactory

    make = RenderingEnvFactory(resolve_env("CartPole-v1"), {}, "rgb_array", str(tmp_path),
                               episodes=[2, 1])
    venv = VectorEnv(make, 2, seed=0)
    venv.reset()
    rng = np.random.default_rng(0)
    ends = np.zeros(2, np.int64)
    while (ends < 3).any():  # past every quota: later episodes are not recorded
        for i in venv.step(rng.integers(0, 2, 2)).final_obs:
            ends[i] += 1
    venv.close()
    assert sorted(os.listdir(tmp_path)) == ["CartPole-v1-env0-episode-0.mp4",
                                            "CartPole-v1-env0-episode-1.mp4",
                                            "CartPole-v1-env1-episode-0.mp4"]
    assert isinstance(make(), gym.wrappers.RecordVideo)
