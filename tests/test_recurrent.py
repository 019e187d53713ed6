"""Recurrent policies: the worker carries a state per sub-env, resets it where an episode
starts and ships the states the learner's sequences start from; the learner's
first-epoch log-probabilities equal the workers' behaviour ones across episode
boundaries and fragment ends; no state leaks from one episode into the next;
compute_actions / evaluate carry the state; DQN and IMPALA refuse use_lstm."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rl import DQNConfig, IMPALAConfig, PPOConfig
from rl.algorithms.ppo.loss import recurrent_forward
from rl.algorithms.ppo.ppo import fragments_to_train_batch
from rl.cli import main
from rl.config import ConfigError
from rl.data import columns as C
from rl.data.sequences import sequence_layout, to_sequences
from rl.policies.recurrent import states_after


def test_sequences_start_at_fragment_starts_every_L_rows_and_episode_starts():
    T, N, L = 7, 2, 3
    term = np.zeros((T, N), bool)
    trunc = np.zeros((T, N), bool)
    term[1, 0] = True   # env 0: episode ends at row 1 -> a sequence starts at row 2
    trunc[4, 1] = True  # env 1: truncation at row 4 -> a sequence starts at row 5
    env, start, length = sequence_layout(terminateds=term, truncateds=trunc, max_seq_len=L)
    assert list(zip(env.tolist(), start.tolist(), length.tolist())) == [
        (0, 0, 2), (0, 2, 1), (0, 3, 3), (0, 6, 1),
        (1, 0, 3), (1, 3, 2), (1, 5, 1), (1, 6, 1)]
    cols = {"x": np.arange(T * N, dtype=np.float32).reshape(T, N)}
    recorded = [np.arange(3 * N * 2, dtype=np.float32).reshape(3, N, 2) + 100]
    seqs = to_sequences(cols, recorded, [np.full(2, -1.0, np.float32)], terminateds=term,
                        truncateds=trunc, max_seq_len=L, pad_to_multiple=3)
    assert seqs["x"].shape == (9, L) and seqs[C.SEQ_MASK].sum() == T * N
    np.testing.assert_array_equal(seqs["x"][1], [cols["x"][2, 0], 0, 0])
    np.testing.assert_array_equal(seqs[C.SEQ_MASK][1], [1, 0, 0])
    # A sequence at row 0, L, 2L starts from the recorded state; one at an episode
    # start from the initial state.
    np.testing.assert_array_equal(seqs[C.state_column(0)][2], recorded[0][1, 0])
    np.testing.assert_array_equal(seqs[C.state_column(0)][1], [-1.0, -1.0])
    assert seqs[C.SEQ_MASK][8].sum() == 0  # padding sequence


def lstm_ppo(env="tests.toy_envs:ScriptedEnv", env_config=None, **overrides):
    return (PPOConfig().environment(env, env_config=env_config or {})
            .env_runners(num_env_runners=0, num_envs_per_env_runner=3, rollout_fragment_length=7)
            .training(train_batch_size=21, minibatch_size=21, num_epochs=1, use_lstm=True,
                      lstm_cell_size=16, max_seq_len=4, model_hiddens=[16])
            .resources(backend="inline").debugging(seed=0).set(**overrides))


def test_learner_log_probs_equal_the_behaviour_ones_across_episodes_and_fragments():
    # Episodes of 3 and 5 steps, truncated at 4: ends inside fragments of 7 rows, and
    # episodes running from one fragment into the next.
    # Unseeded, ScriptedEnv alternates 3-step (terminated) and 5-step (truncated at 4)
    # episodes.
    config = lstm_ppo(env_config={"lengths": [3, 5], "max_steps": 4}, seed=None)
    with config.build() as algo:
        learner = algo.learner_group.local
        for fragment in range(3):
            results = algo.workers.sample()
            batch = fragments_to_train_batch(results, 0.99, 0.95, None, algo.sequences)
            b = results[0]["batch"]
            assert b[C.TERMINATEDS].any() and b[C.TRUNCATEDS].any()
            tensors = batch.to_torch(keys=list(batch))
            with torch.no_grad():
                rows, dist_inputs, values, mask = recurrent_forward(learner.module, tensors)
                logp = learner.dist_spec(dist_inputs).log_prob(rows[C.ACTIONS])
            real = mask > 0
            assert int(real.sum()) == 21
            diff = (logp[real] - rows[C.LOGP][real]).abs().max()
            assert float(diff) <= 1e-5, (fragment, float(diff))
            assert float((values[real] - rows[C.VF_PREDS][real]).abs().max()) <= 1e-5


def test_no_state_leaks_from_one_episode_into_the_next():
    with lstm_ppo("tests.toy_envs:CueEnv").build() as algo:
        fresh = algo._driver_worker()
        for _ in range(2):
            b = algo.workers.sample()[0]["batch"]
            starts = np.zeros(b[C.TERMINATEDS].shape, bool)
            starts[1:] = (b[C.TERMINATEDS] | b[C.TRUNCATEDS])[:-1]
            rows, envs = np.nonzero(starts)
            assert len(rows) >= 3
            # At an episode's first step the logits depend on that observation alone: a
            # policy from the initial state gives the same.
            with torch.no_grad():
                expected, _, _ = fresh.policy.module(
                    torch.from_numpy(b[C.OBS][rows, envs])[:, None],
                    fresh.policy.module.initial_state(len(rows)))
            np.testing.assert_allclose(b[C.BEHAVIOUR_LOGITS][rows, envs], expected[:, 0].numpy(),
                                       atol=1e-6)


def test_compute_actions_and_evaluate_carry_the_state():
    with lstm_ppo("tests.toy_envs:CueEnv").build() as algo:
        actions, state = algo.compute_actions(np.array([1.0], np.float32))
        assert actions in (0, 1) and [s.shape for s in state] == [(16,), (16,)]
        _, state2 = algo.compute_actions(np.zeros(1, np.float32), state)
        assert not np.allclose(state2[0], state[0])
        batch, states = algo.compute_actions(np.ones((5, 1), np.float32))
        assert batch.shape == (5,) and states[0].shape == (5, 16)
        with pytest.raises(ValueError, match="has no state"):
            with PPOConfig().environment("CartPole-v1").env_runners(
                    num_env_runners=0).resources(backend="inline").build() as ff:
                ff.compute_actions(np.zeros(4, np.float32), state)
        assert algo.evaluate(4)["eval/episodes"] == 4


def test_compute_actions_with_state_from_several_threads_equals_sequential_calls():
    # Each thread runs its own episode (its own observations) carrying its own state;
    # calls interleave on the driver's one worker, and every answer must be the one a
    # sequential run gives.
    import threading

    def episode(algo, k, steps=40):
        rng = np.random.default_rng(k)
        state, out = None, []
        for _ in range(steps):
            actions, state = algo.compute_actions(rng.normal(size=(3, 1)).astype(np.float32),
                                                  state)
            out.append((actions.copy(), [s.copy() for s in state]))
        return out

    with lstm_ppo("tests.toy_envs:CueEnv").build() as algo:
        expected = [episode(algo, k) for k in range(6)]
        got: dict[int, list] = {}
        threads = [threading.Thread(target=lambda k=k: got.__setitem__(k, episode(algo, k)))
                   for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for k in range(6):
        for (a, s), (ea, es) in zip(got[k], expected[k]):
            np.testing.assert_array_equal(a, ea)
            for x, y in zip(s, es):
                np.testing.assert_allclose(x, y, atol=1e-6)


def test_workers_on_processes_carry_states_across_fragments_and_checkpoints(tmp_path):
    config = lstm_ppo(env_config={"lengths": [3, 5], "max_steps": 4}, backend="process",
                      num_env_runners=1)
    with config.build() as algo:
        algo.train()
        path = algo.save(str(tmp_path / "ckpt"))
        expected = algo.train()
    from rl import Algorithm

    with Algorithm.from_checkpoint(path) as restored:
        again = restored.train()
    assert again["learner/policy_loss"] == pytest.approx(expected["learner/policy_loss"],
                                                         rel=1e-4, abs=1e-6)


def test_dqn_refuses_use_lstm_naming_the_algorithms_that_have_it():
    config = DQNConfig().environment("CartPole-v1").env_runners(num_env_runners=0) \
        .resources(backend="inline").set(use_lstm=True)
    with pytest.raises(ConfigError, match="cannot train recurrent policies .*use IMPALA, PPO"):
        config.build()


def test_impala_unrolls_from_the_state_at_each_unroll_start():
    """The learner's target policy, run over the unroll from the worker's row-0 state
    (initial again at episode starts), reproduces the behaviour log-probs before any
    update (every importance ratio 1), and its bootstrap values V(x_T) and V(final obs)
    equal the worker's, computed from the states it carried there."""
    from rl.algorithms.impala.learner import loss_inputs, stack_fragments
    from rl.algorithms.impala.loss import IMPALALossSettings, impala_loss

    config = (IMPALAConfig().environment("tests.toy_envs:ScriptedEnv",
                                         env_config={"lengths": [3, 6], "max_steps": 5})
              .env_runners(num_env_runners=0, num_envs_per_env_runner=3,
                           rollout_fragment_length=9)
              .training(train_batch_size=27, use_lstm=True, lstm_cell_size=16, max_seq_len=4,
                        model_hiddens=[16])
              .resources(backend="inline").debugging(seed=None))  # unseeded: 3, 6, 3, ...
    with config.build() as algo:
        learner = algo.learner_group.local
        seen = np.zeros(2, bool)
        for _ in range(3):
            fragment = algo.workers.sample()[0]["batch"]
            seen |= [fragment[C.TERMINATEDS].any(), fragment[C.TRUNCATEDS].any()]
            tensors = loss_inputs(stack_fragments([fragment]), torch.device("cpu"))
            settings = IMPALALossSettings(0.99, 0.5, 0.0, 1.0, 1.0, 1.0)
            with torch.no_grad():
                _, metrics = impala_loss(learner.module, learner.dist_spec, tensors, settings)
            assert abs(float(metrics["approx_kl"])) < 1e-6
            assert float(metrics["mean_is_ratio"]) == pytest.approx(1.0, abs=1e-6)
            # Bootstrap values from the target model's own states = the worker's.
            module = learner.module
            obs = torch.from_numpy(fragment[C.OBS])
            done = fragment[C.TERMINATEDS] | fragment[C.TRUNCATEDS]
            starts = torch.zeros(done.shape, dtype=torch.bool)
            starts[1:] = torch.from_numpy(done[:-1])
            start = tuple(torch.from_numpy(fragment[C.state_column(k)][0]) for k in range(2))
            initial = module.initial_state(1)
            after = states_after(module, obs, start, initial, starts)
            T = obs.shape[0]
            with torch.no_grad():
                v_last = module(torch.from_numpy(fragment[C.NEXT_OBS][-1])[:, None],
                                after[T - 1])[1][:, 0].numpy()
            live = ~done[-1]
            np.testing.assert_allclose(v_last[live], fragment[C.NEXT_VF_PREDS][-1][live],
                                       atol=1e-5)
            for t, n in zip(*np.nonzero(fragment[C.TRUNCATEDS] & ~fragment[C.TERMINATEDS])):
                state = tuple(x[n][None] for x in after[t])
                with torch.no_grad():
                    v = module(torch.from_numpy(fragment[C.NEXT_OBS][t, n])[None, None],
                               state)[1]
                assert float(v) == pytest.approx(float(fragment[C.NEXT_VF_PREDS][t, n]),
                                                 abs=1e-5)
        assert seen.all()  # unrolls crossed terminations and truncations
        result = algo.train()
        assert np.isfinite(result["learner/policy_loss"])


def test_cli_use_lstm_with_dqn_exits_2(capsys):
    assert main(["train", "--algo", "dqn", "--env", "CartPole", "--set", "use_lstm=true"]) == 2
    assert "use IMPALA, PPO" in capsys.readouterr().err


def _cue_run(use_lstm: bool, seed: int) -> float:
    config = (PPOConfig().environment("tests.toy_envs:CueEnv")
              .env_runners(num_env_runners=0, num_envs_per_env_runner=8,
                           rollout_fragment_length=32)
              .training(train_batch_size=256, minibatch_size=128, num_epochs=10, lr=1e-3,
                        use_lstm=use_lstm, lstm_cell_size=32, max_seq_len=8,
                        model_hiddens=[32])
              .resources(backend="inline").debugging(seed=seed))
    with config.build() as algo:
        while algo.env_steps_total < 12_000:
            algo.train()
        return algo.evaluate(20)["eval/episode_return_mean"]


@pytest.mark.learning
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_lstm_remembers_what_a_feed_forward_policy_cannot(seed):
    """CueEnv shows its cue only at the first step and pays for recalling it at the
    last: measured over seeds 0-4, the LSTM scored 1.0 greedy at 12k steps on every
    seed, the feed-forward policy 0.35-0.6 (chance is 0.5)."""
    assert _cue_run(True, seed) >= 0.9
    assert _cue_run(False, seed) <= 0.75


@pytest.mark.learning
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_impala_lstm_learns_the_memory_task(seed):
    """Measured on seeds 0-2: greedy 1.0 at 30k env steps (5-11 s each)."""
    config = (IMPALAConfig().environment("tests.toy_envs:CueEnv")
              .env_runners(num_env_runners=1, num_envs_per_env_runner=8,
                           rollout_fragment_length=16)
              .training(train_batch_size=256, lr=1e-3, use_lstm=True, lstm_cell_size=32,
                        model_hiddens=[32], entropy_coeff=0.01)
              .resources(backend="process").debugging(seed=seed))
    with config.build() as algo:
        while algo.env_steps_total < 30_000:
            algo.train()
        assert algo.evaluate(20)["eval/episode_return_mean"] >= 0.9


@pytest.mark.learning
@pytest.mark.parametrize("seed", [0, 1])
def test_stateless_cartpole_needs_memory(seed):
    """Feed-forward PPO with the tuned LSTM example's settings, less the LSTM, cannot
    balance the pole: its smoothed training return stays below 200 over 200k env steps
    with the rate decayed to 0 at 150k (measured: below 200 on seeds 0 and 1, ~60 s a
    seed; the LSTM passes 475 within its budget)."""
    from rl.experiment import load_example

    example = load_example("tuned_examples/ppo/stateless_cartpole_lstm.yaml")
    example.config.set(seed=seed, use_lstm=False, backend="inline", num_env_runners=0,
                       schedule_timesteps=150_000)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the inline learner: no spin-waiting beside the envs
    best = 0.0
    try:
        with example.config.build() as algo:
            while algo.env_steps_total < 200_000:
                best = max(best, algo.train()["episode_return_mean"] or 0.0)
    finally:
        torch.set_num_threads(threads)
    assert best < 200, best
