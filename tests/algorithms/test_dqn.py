"""DQN: loss and target math by hand, target updates, replay ratio, schedules, config errors."""

from __future__ import annotations

import math
import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import rl.algorithms.algorithm as algorithm_module
from rl import DQNConfig
from rl.algorithms.dqn.learner import TD_ERRORS, DQNLearner
from rl.algorithms.dqn.loss import DQNLossSettings, dqn_loss, q_targets
from rl.cli import main as cli_main
from rl.config import ConfigError
from rl.data import SampleBatch
from rl.data import columns as C
from rl.data.replay import PrioritizedReplayBuffer
from rl.envs import UnsupportedSpaceError
from rl.experiment import load_example
from rl.policies import ModelSpec, flat_params

GAMMA = 0.99


class TableQ(nn.Module):
    """Q(s, .) = table[s]; the observation is the state index as a float [B, 1]."""

    def __init__(self, table: list[list[float]]):
        super().__init__()
        self.table = nn.Parameter(torch.tensor(table, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.table[obs[:, 0].long()]


ONLINE = [[1.0, 2.0], [3.0, 5.0], [1.0, 4.0]]
TARGET = [[0.5, 0.7], [10.0, 20.0], [30.0, 7.0]]


def hand_batch() -> dict[str, torch.Tensor]:
    """Three transitions: a 1-step one, a 3-step one, and a terminated one."""
    return {
        C.OBS: torch.tensor([[0.0], [0.0], [1.0]]),
        C.ACTIONS: torch.tensor([1, 0, 1]),
        C.REWARDS: torch.tensor([1.0, 2.0, -1.0]),
        C.NEXT_OBS: torch.tensor([[1.0], [2.0], [2.0]]),
        C.TERMINATEDS: torch.tensor([0.0, 0.0, 1.0]),
        C.DISCOUNTS: torch.tensor([GAMMA, GAMMA**3, GAMMA]),
        C.WEIGHTS: torch.tensor([1.0, 0.5, 0.25]),
    }


# Q(s, a) of the batch rows: online[0][1], online[0][0], online[1][1].
Q_TAKEN = np.array([2.0, 1.0, 5.0])
# Double Q: row 0 picks argmax online(s1) = 1 -> target 20; row 1 picks argmax
# online(s2) = 1 -> target 7 (plain DQN would take max target(s2) = 30); row 2 ended.
DOUBLE_Y = np.array([1 + GAMMA * 20.0, 2 + GAMMA**3 * 7.0, -1.0])
PLAIN_Y = np.array([1 + GAMMA * 20.0, 2 + GAMMA**3 * 30.0, -1.0])


def huber(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < 1, 0.5 * x**2, np.abs(x) - 0.5)


# ---------------------------------------------------------------------------- loss math
@pytest.mark.parametrize("double_q, expected", [(True, DOUBLE_Y), (False, PLAIN_Y)])
def test_q_targets_by_hand(double_q, expected):
    b = hand_batch()
    y = q_targets(TableQ(ONLINE), TableQ(TARGET), rewards=b[C.REWARDS], next_obs=b[C.NEXT_OBS],
                  terminateds=b[C.TERMINATEDS], discounts=b[C.DISCOUNTS], double_q=double_q)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("loss_fn", ["huber", "mse"])
def test_loss_is_importance_weighted_mean(loss_fn):
    online, target = TableQ(ONLINE), TableQ(TARGET)
    b = hand_batch()
    loss, metrics, td = dqn_loss(online, target, b, DQNLossSettings(True, loss_fn))
    expected_td = Q_TAKEN - DOUBLE_Y
    per_row = huber(expected_td) if loss_fn == "huber" else 0.5 * expected_td**2
    weights = np.array([1.0, 0.5, 0.25])
    np.testing.assert_allclose(td.numpy(), expected_td, rtol=1e-6)
    assert float(loss.detach()) == pytest.approx(float(np.mean(weights * per_row)), rel=1e-6)
    assert float(metrics["td_error_mean"]) == pytest.approx(np.abs(expected_td).mean(), rel=1e-6)
    assert float(metrics["q_mean"]) == pytest.approx(Q_TAKEN.mean())
    # The gradient flows into the taken actions only, scaled by the weights; the
    # target network gets none.
    loss.backward()
    grad = online.table.grad.numpy()
    dl = np.clip(expected_td, -1, 1) if loss_fn == "huber" else expected_td
    expected = np.zeros((3, 2))
    for (s, a), w, g in zip([(0, 1), (0, 0), (1, 1)], weights, dl):
        expected[s, a] += w * g / 3
    np.testing.assert_allclose(grad, expected, rtol=1e-5)
    assert target.table.grad is None


def _learner(**overrides) -> DQNLearner:
    cfg = DQNConfig().environment("CartPole-v1").set(model_hiddens=[8], **overrides)
    obs = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    return DQNLearner(ModelSpec.create("q", obs, gym.spaces.Discrete(2), None,
                                       {"hiddens": [8], "activation": "relu"}), cfg)


def _random_batch(n: int = 16, seed: int = 0) -> SampleBatch:
    rng = np.random.default_rng(seed)
    return SampleBatch({
        C.OBS: rng.normal(size=(n, 4)).astype(np.float32),
        C.ACTIONS: rng.integers(0, 2, n),
        C.REWARDS: rng.normal(size=n).astype(np.float32),
        C.NEXT_OBS: rng.normal(size=(n, 4)).astype(np.float32),
        C.TERMINATEDS: rng.random(n) < 0.2,
        C.DISCOUNTS: np.full(n, GAMMA, np.float32),
        C.WEIGHTS: np.ones(n, np.float32),
    })


def test_learner_publishes_the_online_network_only():
    learner = _learner()
    assert learner.get_weights().shape == flat_params(learner.module).shape
    np.testing.assert_array_equal(learner.get_weights(), flat_params(learner.module))


def test_hard_target_update_copies_the_pre_step_online_weights():
    learner = _learner()
    learner.update(_random_batch(seed=1))  # online moves away from the target
    before = flat_params(learner.module)
    assert not np.array_equal(before, learner.target_weights())
    out = learner.update(_random_batch(seed=2), sync_target=True)
    np.testing.assert_array_equal(learner.target_weights(), before)
    assert not np.array_equal(flat_params(learner.module), before)
    assert out[TD_ERRORS].shape == (16,)
    assert {"loss", "q_mean", "td_error_mean", "grad_norm", "lr"} <= set(out)


def test_polyak_update():
    learner = _learner()
    learner.update(_random_batch())
    online, target = flat_params(learner.module), learner.target_weights()
    learner.update_target(0.25)
    np.testing.assert_allclose(learner.target_weights(), 0.25 * online + 0.75 * target,
                               rtol=1e-5, atol=1e-7)


def test_polyak_after_every_step_when_tau_is_set():
    learner = _learner(tau=0.5)
    target = learner.target_weights()
    learner.update(_random_batch())
    online = flat_params(learner.module)
    np.testing.assert_allclose(learner.target_weights(), 0.5 * online + 0.5 * target,
                               rtol=1e-5, atol=1e-7)


def test_grad_norm_is_clipped():
    learner = _learner(grad_clip=1e-3, lr=1.0)
    batch = _random_batch()
    batch[C.REWARDS] = batch[C.REWARDS] * 1000
    before = {k: v.clone() for k, v in learner.module.state_dict().items()}
    out = learner.update(batch)
    assert out["grad_norm"] > 1e-3  # reported before clipping
    assert all(torch.isfinite(v).all() for v in learner.module.state_dict().values())
    assert any(not torch.equal(before[k], v) for k, v in learner.module.state_dict().items())


# ---------------------------------------------------------------------------- algorithm
def small_config(**overrides) -> DQNConfig:
    """A DQN that runs a few rounds in well under a second."""
    settings = dict(backend="inline", num_env_runners=0, num_envs_per_env_runner=2,
                    rollout_fragment_length=4, model_hiddens=[16], train_batch_size=8,
                    replay_buffer_capacity=1000, num_steps_sampled_before_learning_starts=16,
                    min_sample_timesteps_per_iteration=40, training_intensity=0.5,
                    epsilon_timesteps=200, n_step=1, seed=0)
    settings.update(overrides)
    return DQNConfig().environment("CartPole-v1").set(**settings)


def test_priorities_and_importance_weights_by_hand():
    # The TD errors of the hand batch become priorities (|td| + eps)^alpha; sampling
    # probabilities and max-normalised importance weights follow from them.
    _, _, td = dqn_loss(TableQ(ONLINE), TableQ(TARGET), hand_batch(),
                        DQNLossSettings(True, "huber"))
    buf = PrioritizedReplayBuffer(8, alpha=0.5, beta=1.0, eps=1e-6)
    buf.add({C.REWARDS: np.zeros(3, np.float32)})
    buf.update_priorities(np.arange(3), td.numpy())
    p = (np.abs(Q_TAKEN - DOUBLE_Y) + 1e-6) ** 0.5  # [18.8, 7.79..., 6.0] ** 0.5
    np.testing.assert_allclose(buf.state_dict()["priorities"], p, rtol=1e-6)
    batch = buf.sample(3000, np.random.default_rng(0))
    idx = batch[C.BATCH_INDEXES]
    probs = p / p.sum()
    np.testing.assert_allclose(np.bincount(idx, minlength=3) / len(idx), probs, atol=0.02)
    w = (3 * probs) ** -1.0
    np.testing.assert_allclose(batch[C.WEIGHTS], (w / w.max())[idx], rtol=1e-5)


def test_algorithm_updates_priorities_from_the_learner_td_errors():
    cfg = small_config(prioritized_replay=True, training_intensity=1.0)
    with cfg.build() as algo:
        algo.train()
        learner = algo.learner_group.local
        # The networks before the step define the TD errors that become priorities.
        online = algo.model_spec.build()
        online.load_state_dict(learner.module.state_dict())
        target = algo.model_spec.build()
        target.load_state_dict(learner.target.state_dict())
        drawn = []
        sample = algo.replay.sample

        def recording_sample(*args, **kwargs):
            drawn.append(sample(*args, **kwargs))
            return drawn[-1]

        algo.replay.sample = recording_sample
        algo.learn(1)
        (batch,) = drawn
        assert batch[C.WEIGHTS].min() < 1.0  # priorities differ by now: weights do too
        tensors = batch.to_torch(keys=[C.OBS, C.ACTIONS, C.REWARDS, C.NEXT_OBS, C.TERMINATEDS,
                                       C.DISCOUNTS, C.WEIGHTS])
        _, _, td = dqn_loss(online, target, tensors, DQNLossSettings(True, "huber"))
        expected = (np.abs(td.numpy().astype(np.float64)) + cfg.prioritized_replay_eps) \
            ** cfg.prioritized_replay_alpha
        leaves = algo.replay.state_dict()["priorities"]
        np.testing.assert_allclose(leaves[batch[C.BATCH_INDEXES]], expected, rtol=1e-4)


@pytest.mark.parametrize("num_workers", [1, 2])
def test_training_intensity_holds_for_any_number_of_workers(num_workers):
    cfg = small_config(num_env_runners=num_workers, training_intensity=0.25,
                       min_sample_timesteps_per_iteration=160)
    with cfg.build() as algo:
        result = algo.train()
        steps = result["env_steps_total"]
        assert steps == 160  # 1 worker: 20 rounds of 8; 2 workers: 10 rounds of 16
        learned_on = steps - cfg.num_steps_sampled_before_learning_starts
        assert algo.num_updates_total == math.floor(0.25 * learned_on)
        assert result["learner/num_updates_total"] == algo.num_updates_total
        assert algo.learner_group.local.num_updates == algo.num_updates_total


def test_no_updates_before_learning_starts():
    cfg = small_config(num_steps_sampled_before_learning_starts=1000)
    with cfg.build() as algo:
        result = algo.train()
        assert algo.num_updates_total == 0
        assert result["replay/size"] == result["env_steps_total"]
        assert "learner/loss" not in result


def test_hard_target_updates_every_n_env_steps():
    # 8 env steps per round; a copy is due every 16 steps, once learning started.
    cfg = small_config(target_network_update_freq=16, num_steps_sampled_before_learning_starts=0,
                       min_sample_timesteps_per_iteration=80)
    with cfg.build() as algo:
        learner = algo.learner_group.local
        copies = []
        update_target = learner.update_target
        learner.update_target = lambda tau=1.0: (copies.append(tau), update_target(tau))
        algo.train()
        assert algo.num_target_updates == 5  # at 16, 32, 48, 64, 80
        assert copies == [1.0] * 5  # the learner made exactly those hard copies


def test_polyak_updates_after_every_gradient_step():
    cfg = small_config(tau=0.1)
    with cfg.build() as algo:
        algo.train()
        assert algo.num_target_updates == algo.num_updates_total > 0


def test_epsilon_schedule_by_global_env_steps():
    cfg = small_config(epsilon_initial=1.0, epsilon_final=0.1, epsilon_timesteps=100)
    with cfg.build() as algo:
        sent = []
        sample = algo.workers.sample

        def recording_sample(**request):
            sent.append((algo.env_steps_total, request["epsilon"]))
            return sample(**request)

        algo.workers.sample = recording_sample
        result = algo.train()
        for steps, epsilon in sent:
            assert epsilon == pytest.approx(1.0 - 0.9 * min(1.0, steps / 100))
        assert sent[0] == (0, 1.0)
        algo.env_steps_total = 50
        assert algo.epsilon() == pytest.approx(0.55)
        algo.env_steps_total = 10_000
        assert algo.epsilon() == pytest.approx(0.1)
        assert result["learner/epsilon"] == pytest.approx(sent[-1][1])


def test_restarted_worker_stream_is_flushed_not_joined():
    cfg = small_config(n_step=3)
    with cfg.build() as algo:
        def fragment(first_obs: float) -> dict:
            obs = np.arange(first_obs, first_obs + 4, dtype=np.float32)
            return {
                C.OBS: np.repeat(obs[:, None, None], 4, axis=2),  # [T=4, N=1, 4]
                C.ACTIONS: np.zeros((4, 1), np.int64),
                C.REWARDS: np.ones((4, 1), np.float32),
                C.TERMINATEDS: np.zeros((4, 1), bool),
                C.TRUNCATEDS: np.zeros((4, 1), bool),
                C.NEXT_OBS: np.repeat((obs + 1)[:, None, None], 4, axis=2),
            }

        algo.store_fragments([{"worker_index": 0, "batch": fragment(0.0)}])
        assert len(algo.replay) == 2  # windows from steps 0 and 1; 2 and 3 pending
        algo.workers.restarts[0] += 1  # the worker was replaced: a new stream
        algo.store_fragments([{"worker_index": 0, "batch": fragment(100.0)}])
        rows = algo.replay.state_dict()
        obs = rows[f"column/{C.OBS}"][:, 0]
        discounts = rows[f"column/{C.DISCOUNTS}"]
        next_obs = rows[f"column/{C.NEXT_OBS}"][:, 0]
        flushed = np.isin(obs, [2.0, 3.0])
        np.testing.assert_allclose(discounts[flushed], [GAMMA**2, GAMMA], rtol=1e-6)
        np.testing.assert_array_equal(next_obs[flushed], [4.0, 4.0])  # old stream's end
        assert (next_obs[obs >= 100] >= 100).all()  # nothing joins the two streams


# ---------------------------------------------------------------------------- config errors
def test_box_action_space_fails_before_any_process_starts(monkeypatch):
    def no_runtime(*args, **kwargs):
        raise AssertionError("a runtime was started")

    monkeypatch.setattr(algorithm_module, "make_runtime", no_runtime)
    with pytest.raises(UnsupportedSpaceError, match=r"DQN cannot handle action space Box.*PPO"):
        DQNConfig().environment("Pendulum-v1").build()


def test_cli_box_action_space_exits_2_with_one_line(capsys):
    code = cli_main(["train", "--algo", "dqn", "--env", "Pendulum-v1"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "DQN cannot handle action space Box" in err and "PPO" in err


@pytest.mark.parametrize("settings, message", [
    ({"train_batch_size": 512, "replay_buffer_capacity": 100}, "replay_buffer_capacity"),
    ({"normalize_obs": True}, "normalize_obs"),
    ({"tau": 0.0}, "tau"),
    ({"epsilon_final": 1.5}, "epsilon_final must be <= 1"),
    ({"n_step": 0}, "n_step must be >= 1"),
    ({"training_intensity": 0.0}, "training_intensity must be > 0"),
])
def test_invalid_settings_are_rejected_with_the_numbers(settings, message):
    # A value invalid on its own fails at set(); one that conflicts with another field
    # fails at validate().
    with pytest.raises(ConfigError, match=message):
        DQNConfig().environment("CartPole-v1").set(**settings).validate()


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean n_step"):
        DQNConfig().training(n_steps=3)


def test_config_round_trips_through_yaml():
    cfg = DQNConfig().environment("CartPole-v1").training(n_step=3, tau=0.01,
                                                          prioritized_replay=True)
    assert DQNConfig.from_yaml(cfg.to_yaml()) == cfg


def test_tuned_example_loads_and_validates():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "tuned_examples", "dqn",
                        "cartpole.yaml")
    example = load_example(path)
    example.config.validate()
    assert isinstance(example.config, DQNConfig) and example.config.env == "CartPole-v1"
    assert example.stop.env_steps_total == 100_000
    assert (example.pass_criterion.metric, example.pass_criterion.min) == (
        "eval/episode_return_mean", 475)
