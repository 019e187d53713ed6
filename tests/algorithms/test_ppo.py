"""PPO: loss details, backends, spaces, checkpoints, evaluation and serving."""

import json
import math
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from rl import Algorithm, PPOConfig
from rl.algorithms.ppo.loss import PPOLossSettings, ppo_loss
from rl.algorithms.ppo.ppo import fragments_to_train_batch
from rl.data import columns as C
from rl.policies import DistributionSpec

KEYS = ("training_iteration", "env_steps_total", "episodes_total", "episode_return_mean",
        "episode_return_max", "episode_len_mean", "env_steps_per_s", "time_total_s",
        "learner/policy_loss", "learner/vf_loss", "learner/entropy", "learner/approx_kl",
        "learner/clip_frac", "learner/grad_norm", "learner/lr", "learner/explained_variance",
        "timers/sample_s", "timers/learn_s", "timers/sync_s", "workers/healthy",
        "workers/restarts")


def small(env="CartPole-v1", backend="inline", runners=2, **kw):
    return (PPOConfig().environment(env).resources(backend=backend)
            .env_runners(num_env_runners=runners, num_envs_per_env_runner=2)
            .training(train_batch_size=128, minibatch_size=64, num_epochs=2)
            .debugging(seed=0).set(**kw))


@pytest.mark.parametrize("backend,runners", [("inline", 0), ("inline", 2), ("process", 0),
                                             ("process", 2)])
def test_smoke_result_keys(backend, runners):
    with small(backend=backend, runners=runners).build() as algo:
        r1 = algo.train()
        r2 = algo.train()
    for key in KEYS:
        assert key in r2, key
    assert r1["env_steps_total"] == 128 and r2["env_steps_total"] == 256
    assert r2["training_iteration"] == 2 and r2["workers/healthy"] == max(1, runners)


def test_inline_and_process_backends_give_identical_results():
    def run(backend):
        with small(backend=backend).build() as algo:
            return [algo.train() for _ in range(3)]

    a, b = run("inline"), run("process")
    for ra, rb in zip(a, b):
        for key in ("env_steps_total", "episodes_total", "episode_return_mean",
                    "learner/policy_loss", "learner/vf_loss", "learner/entropy"):
            assert ra[key] == rb[key], key


def test_first_minibatch_has_ratio_one():
    with small(num_epochs=1).build() as algo:
        results = algo.workers.sample()
        batch = fragments_to_train_batch(results, 0.99, 0.95)
        t = batch.to_torch()
        s = PPOLossSettings(0.2, None, 0.5, 0.0, 0.0, True)
        _, m = ppo_loss(algo.learner_group.module, algo.learner_group.local.dist_spec, t, s)
    assert float(m["approx_kl"]) == pytest.approx(0.0, abs=1e-6)
    assert float(m["clip_frac"]) == 0.0


def test_ppo_loss_against_hand_computation():
    torch.manual_seed(0)
    with small().build() as algo:
        module = algo.learner_group.module
    obs = torch.randn(4, 4)
    actions = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        logits, values = module(obs)
    logp_now = torch.log_softmax(logits, -1).gather(1, actions[:, None]).squeeze(1)
    old_logp = logp_now - torch.tensor([0.5, -0.5, 0.1, 0.0])  # ratios e^.5, e^-.5, e^.1, 1
    adv = torch.tensor([1.0, 1.0, -1.0, 2.0])
    targets = values + torch.tensor([1.0, -2.0, 0.5, 0.0])
    mb = {C.OBS: obs, C.ACTIONS: actions, C.LOGP: old_logp, C.VF_PREDS: values,
          C.ADVANTAGES: adv, C.VALUE_TARGETS: targets}
    s = PPOLossSettings(0.2, None, 0.5, 0.01, 0.0, normalize_advantages=False)
    loss, m = ppo_loss(module, DistributionSpec(gym.spaces.Discrete(2)), mb, s)
    ratio = torch.exp(torch.tensor([0.5, -0.5, 0.1, 0.0]))
    surr = torch.min(ratio * adv, ratio.clamp(0.8, 1.2) * adv)
    pg = -surr.mean()
    vf = 0.5 * torch.tensor([1.0, 4.0, 0.25, 0.0]).mean()
    p = torch.softmax(logits, -1)
    ent = -(p * p.log()).sum(-1).mean()
    expected = pg + 0.5 * vf - 0.01 * ent
    torch.testing.assert_close(loss.detach(), expected, atol=1e-5, rtol=1e-5)
    assert float(m["clip_frac"]) == 0.5


class FixedOutputs(torch.nn.Module):
    """An actor-critic whose outputs are its parameters: logits [B, 2] and values [B]."""

    def __init__(self, logits: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.logits = torch.nn.Parameter(logits.clone())
        self.values = torch.nn.Parameter(values.clone())

    def forward(self, obs):
        return self.logits, self.values


def test_value_clipping_against_hand_computation():
    # PPO's clipped value loss (Schulman et al. 2017, as in the OpenAI baselines
    # implementation): 0.5 * mean(max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2)).
    # Four rows, c = 0.2; V - V_old (the move since sampling) and R - V:
    #   row  V - V_old  R - V   unclipped  clipped                        max
    #   0     0.5        1.0    1.0        (0.2 - 0.5 - 1.0)^2 = 1.69     1.69  (clipped)
    #   1    -0.05      -2.0    4.0        (-0.05 + 0.05 + 2.0)^2 = 4.0   4.0   (inside)
    #   2     0.3       -0.5    0.25       (0.2 - 0.3 + 0.5)^2 = 0.16     0.25  (unclipped)
    #   3    -1.0        0.0    0.0        (-0.2 + 1.0 - 0.0)^2 = 0.64    0.64  (clipped)
    values = torch.tensor([1.0, -2.0, 0.5, 3.0])
    moved = torch.tensor([0.5, -0.05, 0.3, -1.0])
    to_target = torch.tensor([1.0, -2.0, -0.5, 0.0])
    module = FixedOutputs(torch.zeros(4, 2), values)
    actions = torch.tensor([0, 1, 0, 1])
    mb = {C.OBS: torch.zeros(4, 1), C.ACTIONS: actions, C.LOGP: torch.full((4,), -math.log(2)),
          C.VF_PREDS: values - moved, C.ADVANTAGES: torch.ones(4),
          C.VALUE_TARGETS: values + to_target}
    s = PPOLossSettings(0.2, 0.2, vf_loss_coeff=0.5, entropy_coeff=0.0, kl_coeff=0.0,
                        normalize_advantages=False)
    loss, m = ppo_loss(module, DistributionSpec(gym.spaces.Discrete(2)), mb, s)
    expected_vf = 0.5 * (1.69 + 4.0 + 0.25 + 0.64) / 4
    assert float(m["vf_loss"]) == pytest.approx(expected_vf, rel=1e-6)
    # Ratio 1 everywhere (uniform logits, logp = log 1/2): policy loss -mean(adv) = -1.
    assert float(m["policy_loss"]) == pytest.approx(-1.0, rel=1e-6)
    assert float(loss.detach()) == pytest.approx(-1.0 + 0.5 * expected_vf, rel=1e-6)
    # Where the clipped term wins, the value gets no gradient (the clipped value is
    # constant once V - V_old is past the clip); elsewhere d/dV = coeff * 0.5 * 2 (V - R) / B.
    loss.backward()
    expected_grad = 0.5 * 0.5 * 2 * -to_target / 4 * torch.tensor([0.0, 1.0, 1.0, 0.0])
    torch.testing.assert_close(module.values.grad, expected_grad)
    # Without clipping the same rows give the plain squared error.
    _, plain = ppo_loss(module, DistributionSpec(gym.spaces.Discrete(2)), mb,
                        PPOLossSettings(0.2, None, 0.5, 0.0, 0.0, False))
    assert float(plain["vf_loss"]) == pytest.approx(0.5 * (1.0 + 4.0 + 0.25 + 0.0) / 4, rel=1e-6)


SPACE_CASES = [("Pendulum-v1", {}), ("tests.toy_envs:MultiDiscreteEnv", {}),
               ("tests.toy_envs:ImageEnv", {})] + [
    ("tests.toy_envs:SpaceEnv", {"obs": obs, "action": action}) for obs, action in
    [("box_2d", "box"), ("discrete", "multidiscrete"), ("multidiscrete", "discrete"),
     ("multibinary", "box"), ("tuple", "multidiscrete"), ("dict", "discrete")]]


@pytest.mark.parametrize("env,env_config", SPACE_CASES,
                         ids=[f"{e.split(':')[-1]}-{'-'.join(c.values())}" for e, c in SPACE_CASES])
def test_action_and_observation_spaces(env, env_config):
    with small(env=env, backend="process", env_config=env_config).build() as algo:
        r = algo.train()
        assert np.isfinite(r["learner/policy_loss"])
        raw = algo.env_spec.make(env_config)
        wrapped = gym.wrappers.FlattenObservation(algo.env_spec.make(env_config))
        obs = [raw.reset(seed=0)[0]] + [raw.step(raw.action_space.sample())[0] for _ in range(2)]
        space = algo.action_space
        # One observation in the env's own format: one action of the action space.
        action = algo.compute_actions(obs[0])
        assert np.shape(action) == space.shape
        assert space.contains(np.asarray(action, space.dtype))
        # A batch: a list of observations, or (not Dict/Tuple) a stacked array.
        batch = obs if isinstance(obs[0], dict | tuple) else np.stack(obs)
        actions = algo.compute_actions(batch)
        assert actions.shape == (3, *space.shape)
        assert all(space.contains(np.asarray(a, space.dtype)) for a in actions)
        np.testing.assert_allclose(actions[0], action, rtol=1e-5, atol=1e-6)  # batched matmul
        if algo.env_obs_space is not algo.obs_space:
            # The policy acts on the wrapper's flat vectors, as in training.
            flat = np.stack([wrapped.observation(o) for o in obs])
            np.testing.assert_array_equal(algo._driver_worker().compute_actions(flat), actions)
        with pytest.raises(ValueError, match=type(algo.env_obs_space).__name__):
            algo.compute_actions(np.zeros(97))


def test_unsupported_action_space_fails_before_processes():
    from rl.envs import UnsupportedSpaceError

    with pytest.raises(UnsupportedSpaceError, match="MultiBinary"):
        small(env="tests.toy_envs:MultiBinaryActionEnv", backend="process").build()


def test_checkpoint_resumes_counters_optimizer_and_filter(tmp_path):
    cfg = small(normalize_obs=True)
    with cfg.build() as algo:
        algo.train()
        algo.train()
        path = algo.save(str(tmp_path / "ckpt"))
        weights = algo.learner_group.get_weights()
        filt = algo.obs_filter.state()
        opt_state = algo.learner_group.state()["optimizer"]["state"]
    assert os.path.isfile(os.path.join(path, "state.json"))
    with Algorithm.from_checkpoint(path) as algo2:
        assert algo2.iteration == 2 and algo2.env_steps_total == 256
        np.testing.assert_array_equal(algo2.learner_group.get_weights(), weights)
        np.testing.assert_array_equal(algo2.obs_filter.state()["mean"], filt["mean"])
        restored = algo2.learner_group.state()["optimizer"]["state"]
        torch.testing.assert_close(restored[0]["exp_avg"], opt_state[0]["exp_avg"])
        r = algo2.train()
        assert r["training_iteration"] == 3


def test_checkpoint_loads_in_a_new_process(tmp_path):
    with small().build() as algo:
        algo.train()
        path = algo.save(str(tmp_path / "ckpt"))
        expected = algo.evaluate(4)["eval/episode_return_mean"]
    out = subprocess.run([sys.executable, "-m", "rl.cli", "evaluate", path, "--episodes", "4",
                          "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["episode_return_mean"] == pytest.approx(expected)


def test_evaluate_is_greedy_and_deterministic():
    with small().build() as algo:
        algo.train()
        a = algo.evaluate(5)
        b = algo.evaluate(5)
    assert a == b and a["eval/episodes"] == 5


def test_linear_lr_schedule_reaches_zero_at_horizon():
    with small(lr=1e-3, lr_schedule="linear", schedule_timesteps=256).build() as algo:
        lrs = [algo.train()["learner/lr"] for _ in range(2)]
    # Progress counts the steps sampled for the update: 128/256, then 256/256.
    assert lrs[0] == pytest.approx(0.5e-3) and lrs[1] == pytest.approx(0.0)
