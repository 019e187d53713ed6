"""IMPALA on multi-agent envs: V-trace along each agent's own trajectory (padding rows
skipped and left out of every loss term), one shared policy or several (each with its
own learner, board and lag; frozen ones never move), turn-based self-play, checkpoints."""

from __future__ import annotations

import glob
import json

import numpy as np
import pytest
import torch

from rl import Algorithm, IMPALAConfig
from rl.algorithms.impala.learner import loss_inputs, stack_fragments
from rl.algorithms.impala.loss import IMPALALossSettings, impala_loss
from rl.checkpoint import CheckpointError
from rl.cli import main as cli_main
from rl.data import columns as C
from tests.envs.test_turn_based import MoveLog

STAGGERED = {"agent_1": [2, 5]}
TWO = ["agent_0", "agent_1"]


def weights(algo, pid: str) -> np.ndarray:
    return algo.learner_groups[pid].get_weights().copy()


def matching(seed: int = 0, **env_config) -> IMPALAConfig:
    return (IMPALAConfig().environment("MatchingGame-v0", env_config=env_config)
            .env_runners(num_env_runners=0, num_envs_per_env_runner=4,
                         rollout_fragment_length=32)
            .training(train_batch_size=128, lr=1e-2, model_hiddens=[32, 32])
            .set(backend="inline", seed=seed, metrics_smoothing_episodes=16))


@pytest.mark.learning
def test_a_shared_policy_learns_the_matching_game():
    # Both agents see the same observation, so a shared policy's greedy play matches
    # from the start (greedy 16 even untrained): the learning signal is the *sampled*
    # return. Measured (inline backend, this config, lr 1e-2): the mean of the last 16
    # sampled games first reached >= 15 at 5888 / 8448 / 5760 / 4480 / 3712 env steps
    # for seeds 0-4 (16.0 by 8192 for seeds 0, 2, 3, 4; seed 1 by 16384); greedy 16 for
    # all. CI runs seed 4 for 8192 steps, 2.2x its measured need.
    with matching(seed=4).build() as algo:
        best = 0.0
        while algo.env_steps_total < 8192:
            result = algo.train()
            best = max(best, result["episode_return_mean"])
        metrics = algo.evaluate(10)
    assert best >= 15.0
    assert metrics["eval/episode_return_mean"] == 16.0  # 8 steps x 2 agents, all matched
    # env steps, not agent rows
    assert result["learner/default_policy/env_steps_trained"] == 8192


def test_padding_rows_count_in_no_loss_term():
    with matching(0, lifetimes=STAGGERED).build() as algo:
        result = algo.train()
        fragment = algo.workers.sample()[0]
        learner = algo.learner_group.local
    assert result["env_steps_total"] == 128
    assert np.isfinite(result["learner/default_policy/policy_loss"])
    batch = dict(stack_fragments([fragment["batch"]]))
    valid = batch[C.VALID]
    np.testing.assert_array_equal(valid, ~fragment["discarded"])
    assert (~valid).any() and valid.any()  # agent_1 lives at steps 2..5 only
    settings = IMPALALossSettings(gamma=0.9, vf_loss_coeff=0.5, entropy_coeff=0.01,
                                  clip_rho_threshold=1.0, clip_c_threshold=1.0,
                                  clip_pg_rho_threshold=1.0)

    def loss_of(b):
        with torch.no_grad():
            loss, metrics = impala_loss(learner.module, learner.dist_spec,
                                        loss_inputs(b, torch.device("cpu")), settings)
        return float(loss), {k: float(v) for k, v in metrics.items()}

    loss, metrics = loss_of(batch)
    # Rewrite everything on the padding rows: neither the loss nor a metric may move.
    other = {k: v.copy() for k, v in batch.items()}
    pad = ~valid
    rng = np.random.default_rng(0)
    other[C.OBS][pad] = rng.random(other[C.OBS][pad].shape)
    other[C.REWARDS][pad] = 100.0
    other[C.LOGP][pad] = -5.0
    other[C.ACTIONS][pad] = (other[C.ACTIONS][pad] + 1) % 3
    other[C.NEXT_OBS][pad] = rng.random(other[C.NEXT_OBS][pad].shape)
    loss2, metrics2 = loss_of(other)
    assert loss2 == pytest.approx(loss, rel=1e-5, abs=1e-6)
    for k in metrics:
        assert metrics2[k] == pytest.approx(metrics[k], rel=1e-5, abs=1e-6), k
    # ... while the same rewrite on a valid row does move it.
    other[C.REWARDS][valid.nonzero()[0][0], valid.nonzero()[1][0]] += 100.0
    assert loss_of(other)[0] != pytest.approx(loss, rel=1e-5, abs=1e-6)


def tictactoe(env: str = "CheckedTicTacToe-v0") -> IMPALAConfig:
    return (IMPALAConfig().environment(env)
            .env_runners(num_env_runners=0, num_envs_per_env_runner=4,
                         rollout_fragment_length=24)
            .training(train_batch_size=96, lr=1e-3)
            .set(backend="inline", seed=0))


def test_turn_based_self_play_trains_without_an_illegal_move():
    MoveLog.moves, MoveLog.illegal = 0, []
    with tictactoe().build() as algo:
        for _ in range(2):
            result = algo.train()
            # Zero-sum: every legal game sums to 0; an illegal move ends one at -1.
            assert result["episode_return_mean"] == 0.0
        fragment = algo.workers.sample()[0]
    assert result["env_steps_total"] == 192
    assert np.isfinite(result["learner/default_policy/vf_loss"])
    assert MoveLog.moves >= 3 * 96 and MoveLog.illegal == []
    # Each resolved move bootstraps from the observation its agent acts from next: the
    # next move's row where the slot has one in the fragment.
    b = fragment["batch"]
    valid = b[C.VALID]
    np.testing.assert_array_equal(valid, ~fragment["discarded"])
    checked = 0
    for s in range(valid.shape[1]):
        rows = np.flatnonzero(valid[:, s])
        for t, u in zip(rows[:-1], rows[1:]):
            if not (b[C.TERMINATEDS][t, s] or b[C.TRUNCATEDS][t, s]):
                np.testing.assert_array_equal(b[C.NEXT_OBS][t, s], b[C.OBS][u, s])
                checked += 1
    assert checked > 10


@pytest.mark.learning
@pytest.mark.parametrize("seed", [0, 1, 3])
def test_independent_policies_reach_the_optimum_of_the_matching_game(seed):
    # Unlike a shared policy, two independent ones do not match by construction: each
    # must learn the other's convention. Measured (inline backend, this config): the
    # mean of the last 16 sampled games first reached >= 15 at 4864 / 5504 / 4736 /
    # 7168 / 4224 / 5888 / 5504 / 5504 env steps for seeds 0-7, and every seed
    # evaluated greedy to 16 at 16384; ~2.5 s a seed on 2 cores. CI runs seeds 0, 1
    # and 3 (the slowest) for 12288 steps, 1.7x the slowest measured need.
    with matching(seed).multi_agent(policies=TWO).build() as algo:
        best = 0.0
        while algo.env_steps_total < 12288:
            result = algo.train()
            best = max(best, result["episode_return_mean"])
        metrics = algo.evaluate(10)
    assert best >= 15.0
    assert metrics["eval/episode_return_mean"] == 16.0
    for p in TWO:  # each policy trained on every batch, on its own agent's columns
        assert result[f"learner/{p}/env_steps_trained"] == 12288
        assert result[f"learner/{p}/num_updates"] == 12288 // 128


def test_each_policy_has_its_own_learner_board_and_metrics():
    cfg = matching(0).multi_agent(policies=TWO, policy_overrides={
        "agent_1": {"model_hiddens": [16], "lr": 1e-3}})
    with cfg.build() as algo:
        before = {p: weights(algo, p) for p in TWO}
        assert len(before["agent_1"]) < len(before["agent_0"])
        for _ in range(3):
            result = algo.train()
        for p in TWO:
            assert not np.array_equal(weights(algo, p), before[p])
            assert algo.weight_boards[p].version == 4  # 1 + one publish per update
            for key in ("policy_loss", "vf_loss", "entropy", "policy_lag_mean",
                        "weights_version", "num_updates", "env_steps_trained"):
                assert np.isfinite(result[f"learner/{p}/{key}"]), (p, key)
            assert f"policy/{p}/episode_return_mean" in result
        assert not any(k.startswith("learner/default_policy") for k in result)
        assert "learner/policy_loss" not in result
        assert result["learner/agent_1/lr"] == pytest.approx(1e-3)
        assert result["learner/agent_0/lr"] == pytest.approx(1e-2)
        # Both boards move at every update: the fragments in flight lag both alike.
        for key in ("policy_lag_mean", "policy_lag_max"):
            assert result[f"learner/agent_0/{key}"] == result[f"learner/agent_1/{key}"]
        # The fragment carries each policy's behaviour version, from its own board.
        fragment = algo.workers.sample()[0]
        assert fragment["weights_versions"] == [4, 4]


def test_a_policy_trains_on_its_own_agents_columns_only(monkeypatch):
    # agent_1 lives at steps 2..5 only: its policy's batch has its padding rows, and
    # agent_0's policy's batch has none.
    from rl.algorithms.impala.learner import IMPALALearner

    seen = {}
    original = IMPALALearner.update

    def spy(self, batch, **hyper):
        seen[len(self.get_weights())] = batch[C.VALID].copy()
        return original(self, batch, **hyper)

    monkeypatch.setattr(IMPALALearner, "update", spy)
    cfg = matching(0, lifetimes=STAGGERED).multi_agent(policies=TWO, policy_overrides={
        "agent_1": {"model_hiddens": [16]}})
    with cfg.build() as algo:
        algo.train()
        sizes = {p: len(weights(algo, p)) for p in TWO}
    valid0, valid1 = seen[sizes["agent_0"]], seen[sizes["agent_1"]]
    assert valid0.shape == valid1.shape == (32, 4)  # T x (4 games x 1 agent)
    assert valid0.all()
    assert (~valid1).any() and valid1.any()


def test_a_frozen_policy_acts_but_its_weights_and_board_never_move():
    cfg = matching(0).multi_agent(policies=TWO, policies_to_train=["agent_1"])
    with cfg.build() as algo:
        frozen, learning = weights(algo, "agent_0"), weights(algo, "agent_1")
        board_version = algo.weight_boards["agent_0"].version
        for _ in range(3):
            result = algo.train()
        assert np.array_equal(weights(algo, "agent_0"), frozen)
        assert not np.array_equal(weights(algo, "agent_1"), learning)
        assert algo.weight_boards["agent_0"].version == board_version
        assert algo.weight_boards["agent_1"].version > board_version
        assert "learner/agent_1/policy_loss" in result
        assert not any(k.startswith("learner/agent_0/") for k in result)
        # It still plays: its agent's rows get actions, its episodes are counted.
        assert result["policy/agent_0/episode_return_mean"] >= 0
        fragment = algo.workers.sample()[0]
        assert fragment["weights_versions"][0] == board_version


def test_agents_of_different_spaces_train_a_policy_each(monkeypatch):
    # agent_1 sees 9 features (agent_0: 7) and has 4 actions: each policy's batch is cut
    # to its own widths (observations, next observations) out of the padded fragment.
    from rl.algorithms.impala.learner import IMPALALearner
    from tests.test_multi_policy import LOPSIDED

    shapes = {}
    original = IMPALALearner.update

    def spy(self, batch, **hyper):
        width = int(self.model_spec.obs_space.shape[0])
        shapes[width] = (batch[C.OBS].shape, batch[C.NEXT_OBS].shape)
        return original(self, batch, **hyper)

    monkeypatch.setattr(IMPALALearner, "update", spy)
    with matching(0).environment(LOPSIDED).build() as algo:
        assert algo.policy_map.ids == ("agent_0", "agent_1")
        for _ in range(2):
            result = algo.train()
    assert shapes == {7: ((32, 4, 7), (32, 4, 7)), 9: ((32, 4, 9), (32, 4, 9))}
    for p in TWO:
        assert np.isfinite(result[f"learner/{p}/policy_loss"])


def test_two_policies_with_learner_processes_and_a_threaded_learner(tmp_path):
    cfg = (matching(0).multi_agent(policies=TWO, policies_to_train=["agent_0"])
           .env_runners(num_env_runners=1).set(backend="process").learners(num_learners=1))
    with cfg.build() as algo:
        frozen = weights(algo, "agent_1")
        # The threaded learner reports its first update whenever it gets there (on a loaded
        # machine after several iterations): train until it has, within a bound.
        for _ in range(100):
            result = algo.train()
            if result.get("learner/agent_0/env_steps_trained", 0) > 0:
                break
        iterations = result["training_iteration"]
        assert algo.runner.threaded
        assert np.array_equal(weights(algo, "agent_1"), frozen)
        assert algo.weight_boards["agent_1"].version == 1
        path = algo.save(str(tmp_path / "ckpt"))
        saved = {p: weights(algo, p) for p in TWO}
    assert result["learner/agent_0/env_steps_trained"] > 0
    assert np.isfinite(result["learner/agent_0/policy_loss"])
    with Algorithm.from_checkpoint(path) as algo:
        for p in TWO:
            np.testing.assert_array_equal(weights(algo, p), saved[p])
        result = algo.train()
        assert np.array_equal(weights(algo, "agent_1"), frozen)
    assert result["training_iteration"] == iterations + 1


def test_rl_train_and_evaluate_impala_with_two_policies(tmp_path, capsys):
    code = cli_main(["train", "--algo", "impala", "--env", "MatchingGame-v0",
                     "--backend", "inline", "--stop-timesteps", "512",
                     "--set", "train_batch_size=128", "--set", "rollout_fragment_length=16",
                     "--set", "policies=[agent_0, agent_1]",
                     "--set", "policies_to_train=[agent_1]", "--logdir", str(tmp_path)])
    assert code == 0
    rows = [json.loads(line) for line in
            open(glob.glob(str(tmp_path / "*" / "result.jsonl"))[0])]
    assert any(np.isfinite(r.get("learner/agent_1/policy_loss", np.nan)) for r in rows)
    assert not any(k.startswith("learner/agent_0/") for r in rows for k in r)  # frozen
    checkpoint = sorted(glob.glob(str(tmp_path / "*" / "checkpoint_*")))[-1]
    capsys.readouterr()
    assert cli_main(["evaluate", checkpoint, "--episodes", "4"]) == 0
    assert "4 episodes: return" in capsys.readouterr().out


def _two_policies(seed: int = 0) -> IMPALAConfig:
    return matching(seed, lifetimes=STAGGERED).multi_agent(
        policies=TWO, policy_overrides={"agent_1": {"model_hiddens": [16]}}).set(
        broadcast_interval=2)


def test_checkpoints_hold_every_policy_and_resume_exactly(tmp_path):
    with _two_policies().build() as algo:
        straight = [algo.train() for _ in range(4)]
        final = {p: weights(algo, p) for p in TWO}
    with _two_policies().build() as algo:
        for _ in range(2):
            algo.train()
        path = algo.save(str(tmp_path / "ckpt"))
        saved = {p: weights(algo, p) for p in TWO}
        versions = {p: algo.weight_boards[p].version for p in TWO}
    assert (tmp_path / "ckpt" / "learner.pt").is_file()
    assert (tmp_path / "ckpt" / "learner_agent_1.pt").is_file()
    with Algorithm.from_checkpoint(path) as algo:
        for p in TWO:
            np.testing.assert_array_equal(weights(algo, p), saved[p])
            assert algo.weight_boards[p].version == max(versions[p], 2)
        resumed = [algo.train() for _ in range(2)]
        for p in TWO:
            np.testing.assert_array_equal(weights(algo, p), final[p])
    for key in ("policy_loss", "vf_loss", "env_steps_trained"):
        for p in TWO:
            assert resumed[-1][f"learner/{p}/{key}"] == straight[-1][f"learner/{p}/{key}"]
    # Another set of policies does not load it.
    with pytest.raises(CheckpointError, match=r"holds the policies \['agent_0', 'agent_1'\]"):
        matching(0).build(checkpoint=path)


def test_resume_keeps_the_fragments_in_flight(tmp_path):
    # A fragment has num_envs x agents slot columns; the saved ones in flight must fit
    # the restored run's layout (none dropped) and count env steps, not agent rows.
    with matching(0, lifetimes=STAGGERED).build() as algo:
        algo.train()
        algo.train()
        saved_in_flight = len(algo.workers.in_flight_results())
        path = algo.save(str(tmp_path / "ckpt"))
    assert saved_in_flight > 0
    with matching(0, lifetimes=STAGGERED).build() as algo:
        algo.restore(path)
        assert algo.queue.dropped_env_steps == 0
        assert len(algo.workers.in_flight_results()) == saved_in_flight
        result = algo.train()
        result = algo.train()
    assert result["env_steps_total"] == 512
    assert result["learner/default_policy/env_steps_trained"] == 512
    assert result["learner/default_policy/dropped_env_steps"] == 0
    assert np.isfinite(result["policy/default_policy/episode_return_mean"])
