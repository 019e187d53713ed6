"""Action masks (``action_mask`` in a Dict observation) for PPO, IMPALA and DQN: masked
logits and Q-values, finite entropy and KL at -inf logits (against float64 references),
epsilon-random actions among the allowed ones, compute_actions / evaluate / rl evaluate,
custom models that get the whole dict, and learning the legal optimum of an env whose
illegal actions would pay most but raise if taken."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rl import DQNConfig, IMPALAConfig, PPOConfig
from rl.cli import main
from rl.envs import UnsupportedSpaceError
from rl.envs.obs_layout import ObsLayout
from rl.policies import Categorical, DistributionSpec
from rl.policies.distributions import masked_logits

ENV = "tests.toy_envs:IllegalBestEnv"
MODELS = "tests.custom_models"


# ----------------------------------------------------------------------------- math
def test_masked_logits_per_row_and_per_sub_action():
    logits = torch.zeros(3, 5)
    mask = torch.tensor([[1, 0, 1, 0, 1], [0, 0, 0, 0, 0], [0, 0, 1, 1, 0]])
    out = masked_logits(logits, mask)
    assert torch.isinf(out[0, [1, 3]]).all() and (out[0, [0, 2, 4]] == 0).all()
    assert (out[1] == 0).all()  # nothing allowed: left unmasked, never undefined
    # MultiDiscrete([3, 2]): each sub-action's group on its own.
    multi = masked_logits(logits, mask, (3, 2))
    assert torch.isinf(multi[2, :2]).all() and multi[2, 2] == 0
    assert multi[2, 3] == 0 and multi[2, 4] == float("-inf")


def _entropy64(logits):
    p = torch.softmax(logits.double(), -1)
    return -sum(float(pi * math.log(pi)) for pi in p if pi > 0)


def test_entropy_and_kl_are_finite_with_masked_logits_and_match_float64():
    inf = float("-inf")
    a = torch.tensor([[0.3, inf, -1.2, 2.0], [inf, inf, 0.5, 0.1]])
    b = torch.tensor([[1.0, inf, 0.0, -0.5], [inf, 2.0, 0.0, inf]])
    ca, cb = Categorical(a), Categorical(b)
    ent = ca.entropy()
    assert torch.isfinite(ent).all()
    for row in range(2):
        assert float(ent[row]) == pytest.approx(_entropy64(a[row]), rel=1e-6)
    torch.testing.assert_close(ent, torch.distributions.Categorical(logits=a).entropy())
    kl = ca.kl(cb)
    pa, pb = torch.softmax(a.double(), -1), torch.softmax(b.double(), -1)
    expected0 = sum(float(p * (math.log(p) - math.log(q))) for p, q in zip(pa[0], pb[0])
                    if p > 0)
    assert float(kl[0]) == pytest.approx(expected0, rel=1e-5)
    assert torch.isfinite(kl).all()  # row 1: a puts mass where b has none -> large, finite
    assert float(ca.kl(ca).abs().max()) < 1e-6
    # Gradients through masked logits stay finite.
    x = torch.tensor([[0.3, 0.0, -1.2, 2.0]], requires_grad=True)
    Categorical(masked_logits(x, torch.tensor([[1, 0, 1, 1]]))).entropy().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[0, 1] == 0


def test_masked_distribution_never_samples_a_disallowed_action():
    spec = DistributionSpec(gym.spaces.Discrete(4))
    mask = torch.tensor([[0, 1, 0, 1]]).repeat(2000, 1)
    dist = spec(spec.mask(torch.randn(2000, 4) * 3, mask))
    actions = dist.sample(torch.Generator().manual_seed(0))
    assert set(actions.tolist()) == {1, 3}
    assert torch.isfinite(dist.log_prob(actions)).all()


def test_layout_finds_the_mask_wherever_the_key_sorts():
    space = gym.spaces.Dict({"a": gym.spaces.Box(0, 1, (2,)), "action_mask":
                             gym.spaces.MultiBinary(3), "z": gym.spaces.Discrete(2)})
    layout = ObsLayout.of(space)
    flat = np.stack([gym.spaces.flatten(space, space.sample()) for _ in range(4)])
    rest, mask = layout.split(flat)
    assert layout.mask == (2, 5) and rest.shape == (4, 4) and mask.shape == (4, 3)
    parts = layout.to_dict(torch.from_numpy(flat))
    assert parts["a"].shape == (4, 2) and parts["z"].shape == (4, 2)  # Discrete: one-hot


# ----------------------------------------------------------------------------- checks
def test_a_mask_that_does_not_fit_the_actions_is_refused_before_any_process():
    with pytest.raises(UnsupportedSpaceError, match=r"must be a MultiBinary or Box of shape "
                                                    r"\[5\] for Discrete\(5\)"):
        PPOConfig().environment("tests.toy_envs:WrongMaskEnv").env_runners(
            num_env_runners=0).build()


def test_cli_mask_errors_exit_2(capsys):
    code = main(["train", "--algo", "ppo", "--env", "tests.toy_envs:MaskedBoxActionEnv",
                 "--stop-iters", "1"])
    assert code == 2
    assert "action masks apply to Discrete and MultiDiscrete actions only" in \
        capsys.readouterr().err


# ----------------------------------------------------------------------------- inference
def _built(config):
    return config.environment(ENV).env_runners(num_env_runners=0, num_envs_per_env_runner=2) \
        .resources(backend="inline").debugging(seed=0).build()


STATES = [{"obs": np.eye(4, dtype=np.float32)[s],
           "action_mask": np.array([int(i != s) for i in range(4)], np.int8)} for s in range(4)]


@pytest.mark.parametrize("config", [
    PPOConfig().training(model_class=f"{MODELS}:DictPolicy"),
    DQNConfig().training(model_class=f"{MODELS}:DictQ"),
], ids=["ppo", "dqn"])
def test_compute_actions_respects_the_mask_where_the_model_prefers_the_illegal(config):
    with _built(config) as algo:
        for s, obs in enumerate(STATES):
            assert algo.compute_actions(obs) != s  # the model's favourite is s
            explored = [int(algo.compute_actions(obs, explore=True)) for _ in range(50)]
            assert s not in explored
        batch = {"obs": np.stack([o["obs"] for o in STATES]),
                 "action_mask": np.stack([o["action_mask"] for o in STATES])}
        assert (algo.compute_actions(batch) != np.arange(4)).all()
        # evaluate() plays the env, which raises on an illegal action.
        assert algo.evaluate(3)["eval/episodes"] == 3


def test_dqn_epsilon_random_actions_are_allowed_ones():
    config = DQNConfig().training(epsilon_initial=1.0, epsilon_final=1.0,
                                  num_steps_sampled_before_learning_starts=10_000)
    with _built(config) as algo:
        result = algo.train()  # every action random; the env raises on an illegal one
        assert result["env/errors"] == 0 and result["env_steps_total"] >= 1000


def test_normalised_observations_keep_the_mask_raw():
    config = PPOConfig().environment(ENV).env_runners(num_env_runners=0) \
        .training(train_batch_size=64, minibatch_size=32, num_epochs=1) \
        .set(normalize_obs=True).resources(backend="inline")
    with config.build() as algo:
        algo.train()
        flat = np.stack([gym.spaces.flatten(algo.env_obs_space, o) for o in STATES])
        seen = algo._driver_worker().normalize(flat)
        a, b = algo.model_spec.layout.mask
        np.testing.assert_array_equal(seen[:, a:b], flat[:, a:b])
        assert not np.array_equal(seen[:, b:], flat[:, b:])


def test_rl_evaluate_respects_the_mask(tmp_path, capsys):
    config = PPOConfig().environment(ENV).env_runners(num_env_runners=0) \
        .training(train_batch_size=64, minibatch_size=32, num_epochs=1,
                  model_class=f"{MODELS}:DictPolicy").resources(backend="inline")
    with config.build() as algo:
        algo.train()
        path = algo.save(str(tmp_path / "ckpt"))
    assert main(["evaluate", path, "--episodes", "4", "--json"]) == 0
    assert '"episodes": 4' in capsys.readouterr().out


def test_multi_discrete_masks_per_sub_action():
    config = (PPOConfig().environment("tests.toy_envs:MaskedMultiDiscreteEnv")
              .env_runners(num_env_runners=1, num_envs_per_env_runner=4)
              .training(train_batch_size=256, minibatch_size=64, num_epochs=4, lr=3e-3)
              .resources(backend="process").debugging(seed=0))
    with config.build() as algo:
        for _ in range(6):
            result = algo.train()
        assert result["workers/restarts"] == 0 and result["env/errors"] == 0
        assert algo.evaluate(4)["eval/episode_return_mean"] == 4.0  # (2, 0) every step


# ----------------------------------------------------------------------------- learning
LEARNERS = {
    "ppo": lambda: PPOConfig().env_runners(num_env_runners=1, num_envs_per_env_runner=4)
    .training(train_batch_size=256, minibatch_size=64, num_epochs=4, lr=3e-3),
    "impala": lambda: IMPALAConfig().env_runners(num_env_runners=1, num_envs_per_env_runner=4,
                                                 rollout_fragment_length=32)
    .training(train_batch_size=256, lr=3e-3),
    "dqn": lambda: DQNConfig().env_runners(num_env_runners=1, num_envs_per_env_runner=4)
    .training(num_steps_sampled_before_learning_starts=256, train_batch_size=32,
              training_intensity=0.25, epsilon_timesteps=1500, lr=2e-3,
              target_network_update_freq=200, model_hiddens=[32, 32]),
}
BUDGET = {"ppo": 4000, "impala": 6000, "dqn": 3000}


@pytest.mark.learning
@pytest.mark.parametrize("algo_name", sorted(LEARNERS))
@pytest.mark.parametrize("seed", [0, 1])
def test_masked_algorithms_never_take_an_illegal_action_and_learn_the_legal_optimum(
        algo_name, seed):
    config = LEARNERS[algo_name]().environment(ENV).resources(backend="process") \
        .debugging(seed=seed)
    with config.build() as algo:
        while algo.env_steps_total < BUDGET[algo_name]:
            result = algo.train()
        # An illegal action raises in the env: a worker would have failed and restarted.
        assert result["workers/restarts"] == 0 and result["env/errors"] == 0, result
        evaluation = algo.evaluate(10)
    # The legal optimum is 8 (the illegal action would pay 10 a step).
    assert evaluation["eval/episode_return_mean"] >= 7.5, evaluation
