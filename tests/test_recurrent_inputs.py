"""What the built-in LSTM reads beside the observation: the previous action and reward
(``lstm_use_prev_action`` / ``lstm_use_prev_reward``), and Dict observations (with and
without an action mask).

The key property is the one of ``test_recurrent``: on the first epoch the learner's
log-probabilities, recomputed from the recorded columns, equal the workers' behaviour
ones, across episode boundaries and fragment ends, now with the extra inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rl import Algorithm, IMPALAConfig, PPOConfig
from rl.algorithms.ppo.loss import recurrent_forward
from rl.algorithms.ppo.ppo import fragments_to_train_batch
from rl.cli import main
from rl.config import ConfigError
from rl.data import columns as C
from rl.envs.obs_layout import ObsLayout
from rl.rollout import RolloutWorker

SCRIPTED = {"lengths": [3, 5], "max_steps": 4}  # ends inside fragments of 7 rows
PREV = {"lstm_use_prev_action": True, "lstm_use_prev_reward": True}


def lstm_ppo(env="tests.toy_envs:ScriptedEnv", env_config=None, **overrides):
    return (PPOConfig().environment(env, env_config=env_config or {})
            .env_runners(num_env_runners=0, num_envs_per_env_runner=3, rollout_fragment_length=7)
            .training(train_batch_size=21, minibatch_size=21, num_epochs=1, use_lstm=True,
                      lstm_cell_size=16, max_seq_len=4, model_hiddens=[16])
            .resources(backend="inline").debugging(seed=0).set(**overrides))


def assert_first_epoch_log_probs_match(algo, results) -> None:
    batch = fragments_to_train_batch(results, 0.99, 0.95, None, algo.sequences)
    learner = algo.learner_group.local
    tensors = batch.to_torch(keys=list(batch))
    with torch.no_grad():
        rows, dist_inputs, values, mask = recurrent_forward(learner.module, tensors)
        logp = learner.dist_spec(dist_inputs).log_prob(rows[C.ACTIONS])
    real = mask > 0
    assert int(real.sum()) == sum(r["env_steps"] for r in results)
    assert float((logp[real] - rows[C.LOGP][real]).abs().max()) <= 1e-5
    assert float((values[real] - rows[C.VF_PREDS][real]).abs().max()) <= 1e-5


def assert_prev_columns_follow_the_episodes(fragments) -> None:
    """prev_* is the row before's action and reward inside an episode (the previous
    fragment's last row at row 0), zeros at an episode's first step."""
    carried = None
    for b in fragments:
        done = b[C.TERMINATEDS] | b[C.TRUNCATEDS]
        actions = b[C.ACTIONS].astype(np.float32)
        for t in range(len(done)):
            if t == 0:
                if carried is None:
                    expected = (np.zeros_like(actions[0]), np.zeros_like(b[C.REWARDS][0]))
                else:
                    expected = carried
            else:
                live = ~done[t - 1].reshape(-1, *([1] * (actions.ndim - 2)))
                expected = (np.where(live, actions[t - 1], 0), np.where(
                    ~done[t - 1], b[C.REWARDS][t - 1], 0))
            np.testing.assert_array_equal(b[C.PREV_ACTIONS][t], expected[0])
            np.testing.assert_array_equal(b[C.PREV_REWARDS][t], expected[1])
        live = ~done[-1]
        carried = (np.where(live.reshape(-1, *([1] * (actions.ndim - 2))), actions[-1], 0),
                   np.where(live, b[C.REWARDS][-1], 0))


def test_ppo_learner_feeds_the_previous_action_and_reward_the_workers_fed():
    with lstm_ppo(env_config=SCRIPTED, seed=None, **PREV).build() as algo:
        assert algo.learner_group.local.module.lstm.input_size == 16 + 2 + 1  # one-hot(2)+r
        fragments = []
        for _ in range(3):
            results = algo.workers.sample()
            b = results[0]["batch"]
            assert b[C.TERMINATEDS].any() and b[C.TRUNCATEDS].any()
            assert (b[C.PREV_REWARDS] > 0).any()
            fragments.append(b)
            assert_first_epoch_log_probs_match(algo, results)
        assert_prev_columns_follow_the_episodes(fragments)


@pytest.mark.parametrize("flags", [{"lstm_use_prev_action": True},
                                   {"lstm_use_prev_reward": True}])
def test_either_input_alone(flags):
    with lstm_ppo(env_config=SCRIPTED, seed=None, **flags).build() as algo:
        (name,) = algo.model_spec.prev_inputs
        results = algo.workers.sample()
        assert name in results[0]["batch"] and len({C.PREV_ACTIONS, C.PREV_REWARDS}
                                                    & set(results[0]["batch"])) == 1
        assert_first_epoch_log_probs_match(algo, results)


@pytest.mark.parametrize("action", ["box", "multidiscrete"])
def test_box_and_multidiscrete_previous_actions_with_dict_observations(action):
    """A Box action enters as its vector, a MultiDiscrete one as one one-hot per part;
    the observations are a nested Dict (flattened for the built-in encoder)."""
    config = lstm_ppo("tests.toy_envs:SpaceEnv", {"obs": "dict", "action": action}, **PREV)
    with config.build() as algo:
        width = {"box": 2, "multidiscrete": 2 + 3}[action]
        assert algo.learner_group.local.module.lstm.input_size == 16 + width + 1
        for _ in range(2):
            results = algo.workers.sample()
            assert_first_epoch_log_probs_match(algo, results)
        algo.train()


def test_impala_unrolls_feed_the_previous_action_and_reward():
    from rl.algorithms.impala.learner import loss_inputs, stack_fragments
    from rl.algorithms.impala.loss import IMPALALossSettings, impala_loss

    config = (IMPALAConfig().environment("tests.toy_envs:ScriptedEnv",
                                         env_config={"lengths": [3, 6], "max_steps": 5})
              .env_runners(num_env_runners=0, num_envs_per_env_runner=3,
                           rollout_fragment_length=9)
              .training(train_batch_size=27, use_lstm=True, lstm_cell_size=16, max_seq_len=4,
                        model_hiddens=[16], **PREV)
              .resources(backend="inline").debugging(seed=None))
    with config.build() as algo:
        learner = algo.learner_group.local
        seen = np.zeros(2, bool)
        fragments = []
        for _ in range(3):
            fragment = algo.workers.sample()[0]["batch"]
            fragments.append(fragment)
            seen |= [fragment[C.TERMINATEDS].any(), fragment[C.TRUNCATEDS].any()]
            tensors = loss_inputs(stack_fragments([fragment]), torch.device("cpu"))
            assert C.PREV_ACTIONS in tensors and C.PREV_REWARDS in tensors
            settings = IMPALALossSettings(0.99, 0.5, 0.0, 1.0, 1.0, 1.0)
            with torch.no_grad():
                _, metrics = impala_loss(learner.module, learner.dist_spec, tensors, settings)
            assert abs(float(metrics["approx_kl"])) < 1e-6
            assert float(metrics["mean_is_ratio"]) == pytest.approx(1.0, abs=1e-6)
        assert seen.all()
        assert_prev_columns_follow_the_episodes(fragments)
        assert np.isfinite(algo.train()["learner/policy_loss"])


def test_prev_inputs_without_use_lstm_are_a_config_error(capsys):
    config = PPOConfig().environment("CartPole-v1").set(lstm_use_prev_reward=True)
    with pytest.raises(ConfigError, match="lstm_use_prev_reward=true needs use_lstm=true"):
        config.validate()
    code = main(["train", "--algo", "impala", "--env", "CartPole-v1",
                 "--set", "lstm_use_prev_action=true", "--stop-iters", "1"])
    assert code == 2
    assert "lstm_use_prev_action=true needs use_lstm=true" in capsys.readouterr().err


def test_compute_actions_carries_the_previous_action_and_asks_for_the_reward():
    with lstm_ppo(env_config=SCRIPTED, **PREV).build() as algo:
        action, state = algo.compute_actions(np.zeros(2, np.float32))
        assert [s.shape for s in state] == [(16,), (16,), (), ()]
        assert float(state[2]) == action  # the previous action for the next call
        # At an episode's start (no state) the previous reward is 0, whatever is passed.
        _, fresh = algo.compute_actions(np.zeros(2, np.float32), prev_reward=3.0)
        np.testing.assert_array_equal(fresh[0], state[0])
        with pytest.raises(ValueError, match="pass prev_reward="):
            algo.compute_actions(np.zeros(2, np.float32), state)
        _, after_0 = algo.compute_actions(np.ones(2, np.float32), state, prev_reward=0.0)
        _, after_5 = algo.compute_actions(np.ones(2, np.float32), state, prev_reward=5.0)
        assert float(after_5[3]) == 5.0
        assert not np.allclose(after_0[0], after_5[0])  # the LSTM read the reward
        actions, states = algo.compute_actions(np.zeros((4, 2), np.float32))
        assert states[2].shape == (4,)
        _, states = algo.compute_actions(np.zeros((4, 2), np.float32), states,
                                         prev_reward=np.arange(4.0))
        np.testing.assert_array_equal(states[3], np.arange(4.0))
        assert algo.evaluate(4)["eval/episodes"] == 4
    with lstm_ppo(env_config=SCRIPTED).build() as plain, \
            pytest.raises(ValueError, match="only with lstm_use_prev_reward"):
        plain.compute_actions(np.zeros(2, np.float32), prev_reward=1.0)


def test_exact_resume_carries_the_previous_action_and_reward(tmp_path):
    """A checkpoint taken mid-episode restores the workers' previous actions and rewards
    with their model states: the restored run trains exactly as the original."""
    config = lstm_ppo(env_config={"lengths": [3, 5], "max_steps": 4}, backend="process",
                      num_env_runners=1, **PREV)
    with config.build() as algo:
        algo.train()
        path = algo.save(str(tmp_path / "ckpt"))
        expected = algo.train()
    with Algorithm.from_checkpoint(path) as restored:
        again = restored.train()
    assert again["learner/policy_loss"] == pytest.approx(expected["learner/policy_loss"],
                                                         rel=1e-4, abs=1e-6)
    # rl evaluate: the restored policy plays greedy episodes, feeding its own inputs.
    assert main(["evaluate", path, "--episodes", "2"]) == 0


def test_worker_state_holds_the_previous_inputs():
    with lstm_ppo(env_config=SCRIPTED, **PREV).build() as algo:
        worker = RolloutWorker(algo.worker_spec(), worker_index=0, boards=None)
        b = worker.sample()["batch"]
        saved = worker.get_state()
        prev_a, prev_r = worker.policy.state[2].copy(), worker.policy.state[3].copy()
        done = b[C.TERMINATEDS][-1] | b[C.TRUNCATEDS][-1]
        np.testing.assert_array_equal(prev_r, np.where(done, 0, b[C.REWARDS][-1]))
        np.testing.assert_array_equal(prev_a, np.where(done, 0, b[C.ACTIONS][-1]))
        worker.sample()
        worker.set_state(saved)
        np.testing.assert_array_equal(worker.policy.state[2], prev_a)
        np.testing.assert_array_equal(worker.policy.state[3], prev_r)


def test_ppo_lstm_on_dict_observations_with_an_action_mask():
    """IllegalBestEnv raises on a masked action: training without an error is the proof
    that none was sampled; the recorded actions are checked against the masks too."""
    config = lstm_ppo("tests.toy_envs:IllegalBestEnv", {"horizon": 5}, **PREV).set(
        num_envs_per_env_runner=4, rollout_fragment_length=16, train_batch_size=64,
        minibatch_size=64, num_epochs=4, lr=3e-3, entropy_coeff=0.0)
    with config.build() as algo:
        layout = ObsLayout.of(algo.env_obs_space)
        results = algo.workers.sample()
        assert_first_epoch_log_probs_match(algo, results)
        b = results[0]["batch"]
        mask = layout.split(b[C.OBS])[1]
        assert mask.shape == (16, 4, 4)
        assert (np.take_along_axis(mask, b[C.ACTIONS][..., None], -1) == 1).all()
        first, last = None, None
        for _ in range(12):
            result = algo.train()
            first = result["episode_return_mean"] if first is None else first
            last = result["episode_return_mean"]
        action, _ = algo.compute_actions({"obs": np.eye(4, dtype=np.float32)[2],
                                          "action_mask": np.array([1, 1, 0, 1], np.int8)})
        assert action != 2
        assert algo.evaluate(4)["eval/episodes"] == 4
    assert last > first  # it learns (legal optimum 5, random play ~1.7)


class DictGRU(torch.nn.Module):
    """A user's recurrent model on a Dict observation: it gets the dict (without
    masking it: the ObsAdapter masks its logits)."""

    def __init__(self, obs_space, action_space, num_outputs, hidden=16):
        super().__init__()
        assert set(obs_space.spaces) == {"obs", "action_mask"}
        self.gru = torch.nn.GRU(8, hidden, batch_first=True)
        self.pi = torch.nn.Linear(hidden, num_outputs)
        self.vf = torch.nn.Linear(hidden, 1)
        self.hidden = hidden

    def initial_state(self, batch_size):
        return (torch.zeros(batch_size, self.hidden),)

    def forward(self, obs, state):
        x = torch.cat([obs["obs"], obs["action_mask"]], dim=-1)
        out, h = self.gru(x, state[0][None].contiguous())
        return self.pi(out), self.vf(out).squeeze(-1), (h[0],)


def test_a_custom_recurrent_model_gets_the_dict_and_its_logits_are_masked():
    config = lstm_ppo("tests.toy_envs:IllegalBestEnv", {"horizon": 5}, use_lstm=False,
                      model_class="tests.test_recurrent_inputs:DictGRU")
    with config.build() as algo:
        assert algo.model_spec.recurrent and algo.model_spec.prev_inputs == ()
        results = algo.workers.sample()
        assert_first_epoch_log_probs_match(algo, results)
        assert np.isfinite(algo.train()["learner/policy_loss"])  # no masked action taken
