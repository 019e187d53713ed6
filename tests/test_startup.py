"""Start-up: built-in MLP weights drawn in numpy, workers that start (and sample) before
the driver imports torch, and early fragments that are used, or discarded whenever
what they were sampled from changes."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from rl.algorithms.dqn import DQNConfig
from rl.algorithms.ppo import PPOConfig
from rl.policies import ModelSpec
from rl.policies.numpy_init import initial_weights, orthogonal
from rl.policies.numpy_params import param_layout
from rl.runtime import shm

BOX4 = gym.spaces.Box(-1, 1, (4,))


def _ppo(**training):
    return (PPOConfig().environment("CartPole-v1")
            .env_runners(num_env_runners=1, num_envs_per_env_runner=2)
            .training(train_batch_size=128, minibatch_size=64, num_epochs=2, **training)
            .debugging(seed=3).resources(backend="process"))


def test_orthogonal_matrices_have_the_gain_and_are_haar_signed():
    rng = np.random.default_rng(0)
    for shape in [(64, 4), (4, 64), (32, 32)]:
        w = orthogonal(rng, shape, 2.0).astype(np.float64)
        small = min(shape)
        gram = w.T @ w if shape[0] >= shape[1] else w @ w.T
        np.testing.assert_allclose(gram, 4.0 * np.eye(small), atol=1e-5)
    # Haar: the first entry's sign is a fair coin over many draws (no QR sign bias).
    signs = [np.sign(orthogonal(rng, (8, 8), 1.0)[0, 0]) for _ in range(400)]
    assert abs(np.mean(signs)) < 0.2


@pytest.mark.parametrize("kind, action_space, kwargs", [
    ("actor_critic", gym.spaces.Discrete(3), {}),
    ("actor_critic", gym.spaces.Box(-1, 1, (2,)), {"vf_share_layers": True}),
    ("q", gym.spaces.Discrete(5), {"hiddens": [32, 16]}),
    ("squashed_gaussian", gym.spaces.Box(-1, 1, (2,)), {"hiddens": [16]})])
def test_initial_weights_follow_the_builtin_initialisation(kind, action_space, kwargs):
    import torch

    from rl.policies.models import load_flat_params

    spec = ModelSpec.create(kind, BOX4, action_space, None, kwargs)
    vector = initial_weights(spec, seed=7)
    module = spec.build()
    load_flat_params(module, vector)  # the layout fits the torch module exactly
    gains = {"pi_head": 0.01, "head": 0.01, "vf_head": 1.0, "adv_head": 1.0, "val_head": 1.0}
    for name, tensor in module.state_dict().items():
        value = tensor.double().numpy()
        layer, _, what = name.rpartition(".")
        if what == "weight":
            gain = gains.get(layer, np.sqrt(2))
            small = min(value.shape)
            gram = value.T @ value if value.shape[0] >= value.shape[1] else value @ value.T
            np.testing.assert_allclose(gram, gain ** 2 * np.eye(small), atol=1e-5, err_msg=name)
        else:
            assert not value.any(), f"{name} should start at zero"
    assert np.array_equal(initial_weights(spec, seed=7), vector)
    assert not np.array_equal(initial_weights(spec, seed=8), vector)
    assert not np.array_equal(initial_weights(spec, seed=7, index=1), vector)
    with torch.no_grad():  # and the torch module computes with them
        out = module(torch.zeros(2, 4))
    assert all(torch.isfinite(o).all() for o in (out if isinstance(out, tuple) else (out,)))


def test_models_without_a_numpy_layout_keep_torch_initialisation():
    image = ModelSpec.create("actor_critic", gym.spaces.Box(0, 255, (84, 84, 4), np.uint8),
                             gym.spaces.Discrete(4), None, {})
    gelu = ModelSpec.create("actor_critic", BOX4, gym.spaces.Discrete(2), None,
                            {"activation": "gelu"})
    unknown = ModelSpec.create("actor_critic", BOX4, gym.spaces.Discrete(2), None,
                               {"hiddens": ["64"]})
    for spec in (image, gelu, unknown):
        assert param_layout(spec) is None and initial_weights(spec, 0) is None


def test_learners_start_from_the_weights_the_workers_got():
    config = _ppo().resources(backend="inline").env_runners(num_env_runners=0)
    with config.build() as algo:
        expected = initial_weights(algo.model_spec, 3)
        np.testing.assert_array_equal(algo.learner_group.get_weights(), expected)
        np.testing.assert_array_equal(algo.board.reader().poll(0)[1], expected)
    dqn = DQNConfig().environment("CartPole-v1").env_runners(num_env_runners=0) \
        .debugging(seed=3).resources(backend="inline")
    with dqn.build() as algo:
        learner = algo.learner_group.local
        np.testing.assert_array_equal(learner.get_weights(), initial_weights(algo.model_spec, 3))
        np.testing.assert_array_equal(learner.target_weights(), learner.get_weights())


def test_workers_start_before_the_driver_imports_torch():
    code = """
import sys
from rl.rollout import worker_set
seen = []
init = worker_set.WorkerSet.prefetch
def prefetch(self, **request):
    seen.append("torch" in sys.modules)
    init(self, **request)
worker_set.WorkerSet.prefetch = prefetch
from rl.algorithms.ppo import PPOConfig
config = (PPOConfig().environment("CartPole-v1").env_runners(num_env_runners=1)
          .training(train_batch_size=128, minibatch_size=64, num_epochs=1)
          .resources(backend="process"))
with config.build() as algo:
    algo.train()
print(seen, "torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-2:] == ["[False]", "True"]


def _dqn():
    return (DQNConfig().environment("CartPole-v1")
            .env_runners(num_env_runners=1, num_envs_per_env_runner=2, rollout_fragment_length=16)
            .training(num_steps_sampled_before_learning_starts=64, train_batch_size=32)
            .reporting(min_sample_timesteps_per_iteration=64)
            .debugging(seed=3).resources(backend="process"))


@pytest.mark.parametrize("make", [_ppo, _dqn], ids=["ppo", "dqn"])
def test_early_fragments_are_the_first_iterations_fragments(make, monkeypatch):
    """A run that prefetches trains exactly as one that asks at its first sample."""
    def two_iterations(early: bool):
        with make().build() as algo:
            assert (algo.workers._prefetched is not None) == early
            results = [algo.train() for _ in range(2)]
            return algo.learner_group.get_weights(), [r["env_steps_total"] for r in results]

    weights, steps = two_iterations(True)
    from rl.algorithms.registry import algorithm_class

    monkeypatch.setattr(algorithm_class(make().algo_name), "first_sample_request",
                        lambda self: None)
    again, steps_again = two_iterations(False)
    assert steps == steps_again and steps[1] > steps[0] > 0
    np.testing.assert_array_equal(weights, again)


def test_new_weights_or_a_checkpoint_discard_early_fragments_without_leaks(tmp_path):
    algo = _ppo().build()
    try:
        prefix = algo.runtime.prefix
        assert algo.workers._prefetched is not None
        algo.save(str(tmp_path / "fresh"))  # the workers' state is saved without it
        assert algo.workers._prefetched is None
        algo.workers.prefetch()
        algo.sync_weights()  # sampled with the weights these replace
        assert algo.workers._prefetched is None
        assert algo.train()["env_steps_total"] == 128
        algo.workers.prefetch()  # one left in flight at stop
    finally:
        algo.stop()
    assert shm.list_segments(prefix) == []


def test_a_run_built_to_be_restored_asks_nothing_early(tmp_path):
    from rl import Algorithm

    config = _ppo().resources(backend="inline").env_runners(num_env_runners=0)
    with config.build() as algo:
        algo.train()
        path = algo.save(str(tmp_path / "ckpt"))
    algo = Algorithm.from_checkpoint(path, workers=False)
    try:
        assert algo.workers._prefetched is None
    finally:
        algo.stop()
