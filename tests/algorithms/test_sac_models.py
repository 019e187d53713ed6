"""SAC with a user's own actor and critic through the extension API: registered with
``rl.register_model``, selected by ``model_class`` and ``critic_model_class``, run by
the rollout workers (the actor) and trained by the learner (actor, critics, targets);
the build-time contract check of a critic of the wrong shape."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import torch

import rl
from rl import ConfigError, SACConfig
from rl.algorithms.sac.learner import TwinCritics
from rl.policies import flat_params
from tests.custom_models import BrokenCriticShape, TorchCritic, TorchSquashedActor


def custom_config(**overrides) -> SACConfig:
    rl.register_model("test_sac_actor", TorchSquashedActor)
    rl.register_model("test_sac_critic", TorchCritic)
    settings = dict(backend="process", num_env_runners=1, num_envs_per_env_runner=2,
                    rollout_fragment_length=4, train_batch_size=8, replay_buffer_capacity=1000,
                    learning_starts=16, min_sample_timesteps_per_iteration=40,
                    training_intensity=0.5, seed=0,
                    model_class="test_sac_actor", model_kwargs={"width": 24},
                    critic_model_class="test_sac_critic", critic_model_kwargs={"width": 20})
    settings.update(overrides)
    return SACConfig().environment("Pendulum-v1").set(**settings)


def test_custom_actor_and_critic_train_on_the_learner_and_act_on_the_workers():
    obs = np.random.default_rng(0).uniform(-1, 1, (6, 3)).astype(np.float32)
    with custom_config().build() as algo:
        learner = algo.learner_group.local
        actor, critics = learner.actor, learner.critic_net
        # The learner trains the user's classes with their keyword arguments.
        assert type(actor) is TorchSquashedActor and actor.net[0].out_features == 24
        assert isinstance(critics, TwinCritics)
        for critic in (critics.q1, critics.q2, learner.target.q1, learner.target.q2):
            assert type(critic) is TorchCritic and critic.net[0].out_features == 20
        actor_before, critic_before = flat_params(actor), learner.critic_weights()
        results = [algo.train() for _ in range(3)]
        # The board carries the user's actor alone, and it moved, as did the critics.
        weights = algo.learner_group.get_weights()
        assert weights.size == flat_params(actor).size
        assert not np.allclose(flat_params(actor), actor_before)
        assert not np.allclose(learner.critic_weights(), critic_before)
        # The worker process acts with that actor and those weights: its greedy actions
        # are 2 * tanh(mean) of the learner's module (Pendulum's bounds are [-2, 2]).
        algo.workers.call_one(0, "sync_weights")
        worker_actions = algo.workers.call_one(0, "compute_actions", obs, False)
        with torch.no_grad():
            mean = actor(torch.from_numpy(obs))[:, :1].numpy()
    np.testing.assert_allclose(worker_actions, 2 * np.tanh(mean), rtol=1e-5, atol=1e-6)
    last = results[-1]
    assert last["learner/num_updates"] > 0
    for key in ("learner/alpha", "learner/actor_loss", "learner/critic_loss",
                "learner/q_mean", "learner/entropy"):
        assert np.isfinite(last[key]), key


def test_a_critic_of_the_wrong_shape_fails_the_build_before_any_process_starts():
    rl.register_model("test_sac_broken_critic", BrokenCriticShape)
    before = set(multiprocessing.active_children())
    config = custom_config(critic_model_class="test_sac_broken_critic")
    with pytest.raises(ConfigError) as err:
        config.build()
    assert str(err.value) == (
        "critic_model_class 'test_sac_broken_critic': forward(obs Tensor[2, 3], actions "
        "Tensor[2, 1]) of a critic for Box(-2.0, 2.0, (1,), float32) must return q Tensor[2] "
        "float; got Tensor[2, 1] float32")
    assert set(multiprocessing.active_children()) == before


def test_an_unknown_critic_class_names_the_critic_setting():
    with pytest.raises(ConfigError, match=r"^critic_model_class 'no_such_critic' is neither "
                                          r"'package.module:Class' nor a name"):
        custom_config(critic_model_class="no_such_critic").build()


def test_the_builtin_critic_takes_critic_model_kwargs():
    config = custom_config(backend="inline", num_env_runners=0, model_class=None,
                           model_kwargs={}, critic_model_class=None,
                           critic_model_kwargs={"hiddens": [12]}, model_hiddens=[16])
    with config.build() as algo:
        learner = algo.learner_group.local
        widths = [m.out_features for m in learner.critic_net.q1.mlp
                  if isinstance(m, torch.nn.Linear)]
        actor_widths = [m.out_features for m in learner.actor.trunk.modules()
                        if isinstance(m, torch.nn.Linear)]
    assert widths == [12] and actor_widths == [16]
