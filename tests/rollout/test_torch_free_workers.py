"""Process-backend workers of the built-in MLP models never import torch; others do."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rl.envs import resolve_env
from rl.policies import ModelSpec
from rl.rollout import RolloutWorker, WorkerSpec
from rl.runtime import make_runtime
from tests.rollout.torch_probe import ProbedWorker


def _spec(kind: str, model_class: str | None = None, seed: int = 3) -> WorkerSpec:
    env = gym.make("CartPole-v1")
    model = ModelSpec.create(kind, env.observation_space, env.action_space, model_class,
                             {} if model_class else {"hiddens": [16]})
    return WorkerSpec(resolve_env("CartPole-v1"), {}, env.observation_space, env.action_space,
                      2, 16, seed=seed, model=model)


@pytest.mark.parametrize("kind, model_class, torch_expected", [
    ("actor_critic", None, False),   # PPO's built-in MLP
    ("q", None, False),              # DQN's
    ("actor_critic", "tests.custom_models:TorchActorCritic", True),  # a user's model
])
def test_process_worker_imports_torch_only_for_models_run_in_torch(kind, model_class,
                                                                   torch_expected):
    runtime = make_runtime("process")
    try:
        worker = runtime.spawn(ProbedWorker, _spec(kind, model_class), worker_index=0,
                               boards=None)
        batch = runtime.get(worker.call("sample", epsilon=0.5))["batch"]
        assert batch["actions"].shape == (16, 2)
        assert runtime.get(worker.call("torch_loaded")) is torch_expected
    finally:
        runtime.shutdown()


@pytest.mark.parametrize("kind", ["actor_critic", "q"])
def test_numpy_workers_resume_their_action_stream_exactly(kind):
    first = RolloutWorker(_spec(kind), worker_index=1, boards=None)
    assert isinstance(first.generator, np.random.Generator)
    first.sample(epsilon=0.3)
    state = first.get_state()
    expected = first.sample(epsilon=0.3)["batch"]["actions"]
    second = RolloutWorker(_spec(kind), worker_index=1, boards=None)
    second.set_state(state)
    np.testing.assert_array_equal(second.sample(epsilon=0.3)["batch"]["actions"], expected)


def test_a_torch_model_worker_keeps_the_torch_generator():
    import torch

    worker = RolloutWorker(_spec("actor_critic", "tests.custom_models:TorchActorCritic"),
                           worker_index=0, boards=None)
    assert isinstance(worker.generator, torch.Generator)
