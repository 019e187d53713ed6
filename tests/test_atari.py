"""Atari: the preprocessing stack and a short PPO smoke run on ALE Pong (CPU)."""

import numpy as np

from rl import PPOConfig
from rl.envs import resolve_env
from rl.envs.atari import make_atari


def test_preprocessing_stack_shapes_and_real_episode_stats():
    env = make_atari("ALE/Pong-v5")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert env.has_wrapper_attr("reports_real_episodes")
    rewards, real = [], None
    rng = np.random.default_rng(0)
    for _ in range(3000):
        obs, r, term, trunc, info = env.step(int(rng.integers(6)))
        rewards.append(r)
        if "rl_episode" in info:
            real = info["rl_episode"]
            break
        if term or trunc:
            env.reset()
    assert set(np.unique(rewards)) <= {-1.0, 0.0, 1.0}
    assert real is not None and -21 <= real[0] <= 21 and real[1] > 100


def test_short_names_resolve_to_atari():
    assert resolve_env("ALE/Pong").env_id == "ALE/Pong-v5"
    assert resolve_env("ALE/Pong").kind == "atari"


def test_ppo_trains_on_pong_end_to_end():
    cfg = (PPOConfig().environment("ALE/Pong-v5").resources(backend="process")
           .env_runners(num_env_runners=2, num_envs_per_env_runner=2)
           .training(train_batch_size=2048, minibatch_size=512, num_epochs=1, lr=2.5e-4)
           .debugging(seed=0))
    with cfg.build() as algo:
        assert algo.obs_space.shape == (4, 84, 84)
        for _ in range(2):
            result = algo.train()
        batch = algo.workers.sample()[0]["batch"]
    assert batch["obs"].dtype == np.uint8 and batch["obs"].shape[2:] == (4, 84, 84)
    assert result["episodes_total"] >= 1
    assert -21 <= result["episode_return_mean"] <= 21
    assert np.isfinite(result["learner/policy_loss"])
