"""Several policies in one multi-agent run: the mapping, frozen policies, per-policy
settings, results, checkpoints and ``compute_actions``."""

from __future__ import annotations

import dataclasses
import glob
import json
import os

import numpy as np
import pytest
import torch
from gymnasium import spaces

from rl import PPOConfig
from rl.algorithms.policy_map import PolicyMap
from rl.algorithms.ppo.ppo import PPO
from rl.checkpoint import CheckpointError
from rl.cli import main as cli_main
from rl.config import ConfigError
from rl.envs import MatchingGame
from rl.policies import load_flat_params
from tests.test_multi_agent import matching

TWO = ["agent_0", "agent_1"]
MAPPING = "tests.multi_agent_mapping:"


def weights(algo, pid: str) -> np.ndarray:
    return algo.learner_groups[pid].get_weights().copy()


def module(algo, pid: str) -> torch.nn.Module:
    """Policy ``pid``'s model with the learner's current weights."""
    net = algo.model_specs[pid].build()
    load_flat_params(net, algo.learner_groups[pid].get_weights())
    return net.eval()


@pytest.mark.learning
@pytest.mark.parametrize("seed", [0, 1])
def test_independent_policies_reach_the_optimum_of_the_matching_game(seed):
    # Seeds 0-5 measured: every one evaluates to the optimum, 16, after 4096 env steps.
    with matching(seed).multi_agent(policies=TWO).build() as algo:
        while algo.env_steps_total < 4096:
            algo.train()
        metrics = algo.evaluate(10)
    assert metrics["eval/episode_return_mean"] == 16.0


def test_each_policy_trains_on_its_own_agents_and_reports_its_own_results():
    with matching(0).multi_agent(policies=TWO).build() as algo:
        before = {p: weights(algo, p) for p in TWO}
        result = algo.train()
        result = algo.train()
        for p in TWO:
            assert not np.array_equal(weights(algo, p), before[p])
            assert f"learner/{p}/policy_loss" in result
            assert f"policy/{p}/episode_return_mean" in result
        assert "learner/policy_loss" not in result
        # The windows hold the same games: the policies' shares add up to the game return.
        total = sum(result[f"policy/{p}/episode_return_mean"] for p in TWO)
        assert total == pytest.approx(result["episode_return_mean"])
        assert result["policy/agent_0/episode_return_max"] <= 8.0


def test_a_frozen_policy_acts_but_its_weights_never_move():
    cfg = matching(0).multi_agent(policies=TWO, policies_to_train=["agent_0"])
    with cfg.build() as algo:
        frozen, learning = weights(algo, "agent_1"), weights(algo, "agent_0")
        board_version = algo.weight_boards["agent_1"].version
        for _ in range(3):
            result = algo.train()
        assert np.array_equal(weights(algo, "agent_1"), frozen)
        assert not np.array_equal(weights(algo, "agent_0"), learning)
        assert algo.weight_boards["agent_1"].version == board_version
        assert "learner/agent_0/policy_loss" in result
        assert not any(k.startswith("learner/agent_1/") for k in result)
        # It still plays: its agent's rows get actions, its episodes are counted.
        assert result["policy/agent_1/episode_return_mean"] >= 0


def test_compute_actions_sends_each_agent_through_its_own_policy():
    cfg = matching(0).multi_agent(policies=TWO)
    with cfg.build() as algo:
        rng = np.random.default_rng(0)
        obs = rng.uniform(0, 1, (64, 7)).astype(np.float32)
        greedy = {p: module(algo, p)(torch.from_numpy(obs))[0].argmax(-1).numpy() for p in TWO}
        assert (greedy["agent_0"] != greedy["agent_1"]).any()  # the test can tell them apart
        for i in range(len(obs)):
            actions = algo.compute_actions({"agent_0": obs[i], "agent_1": obs[i]})
            assert int(actions["agent_0"]) == greedy["agent_0"][i]
            assert int(actions["agent_1"]) == greedy["agent_1"][i]
        assert int(algo.compute_actions({"agent_1": obs[3]})["agent_1"]) == greedy["agent_1"][3]


def test_a_mapping_function_names_the_policies_in_agent_order():
    cfg = matching(0, num_agents=3).multi_agent(policy_mapping_fn=MAPPING + "by_parity")
    with cfg.build() as algo:
        assert algo.policy_map.ids == ("even", "odd")
        assert algo.policy_map.agents_of("even") == ["agent_0", "agent_2"]
        assert algo.policy_map.slots(0, 2).tolist() == [0, 2, 3, 5]
        result = algo.train()
    assert {"learner/even/vf_loss", "learner/odd/vf_loss"} <= set(result)
    assert result["env_steps_total"] == 128


def test_per_policy_settings_build_different_models():
    cfg = matching(0).multi_agent(policies=TWO, policy_overrides={
        "agent_1": {"model_hiddens": [16], "lr": 1e-4}})
    with cfg.build() as algo:
        sizes = {p: len(weights(algo, p)) for p in TWO}
        assert sizes["agent_1"] < sizes["agent_0"]
        result = algo.train()
    assert result["learner/agent_1/lr"] == pytest.approx(1e-4)
    assert result["learner/agent_0/lr"] == pytest.approx(3e-3)


@pytest.mark.parametrize("settings, match", [
    ({"policies": ["a", "b"]}, r"not all agent ids.*policy_mapping_fn"),
    ({"policy_mapping_fn": MAPPING + "to_missing", "policies": TWO},
     r"maps agent 'agent_0' to 'nobody'"),
    ({"policy_mapping_fn": MAPPING + "not_a_string"}, r"must return a policy id \(str\)"),
    ({"policy_mapping_fn": MAPPING + "raises"}, r"raised for agent 'agent_0': KeyError"),
    ({"policy_mapping_fn": "tests.no_such_module:f"}, r"cannot import 'tests.no_such_module'"),
    ({"policies": ["agent_0", "agent_1", "spare"], "policy_mapping_fn": MAPPING + "by_parity"},
     r"maps agent 'agent_0' to 'even'"),
    ({"policies": ["agent_0"], "policies_to_train": ["agent_9"]},
     r"policies_to_train names \['agent_9'\].*valid: \['agent_0'\]"),
    ({"policies": TWO, "policy_overrides": {"agent_1": {"gamma": 0.5}}},
     r"\['gamma'\] cannot differ per policy"),
    ({"policies": TWO, "policy_overrides": {"agent_1": {"lr": -1}}},
     r"policy_overrides\['agent_1'\]: lr must be >= 0"),
    ({"policies": TWO, "policy_overrides": {"agent_5": {"lr": 0.1}}},
     r"policy_overrides names 'agent_5'"),
])
def test_bad_policy_settings_are_config_errors_before_any_process(settings, match):
    cfg = matching(0).multi_agent(**settings)
    with pytest.raises(ConfigError, match=match):
        PolicyMap.create(cfg, ("agent_0", "agent_1"))


@pytest.fixture
def no_runtime(monkeypatch):
    """Fails the test if building the algorithm gets as far as its runtime (the first
    process, socket or shared memory): a config error must come before."""
    def refuse(*args, **kwargs):
        raise AssertionError("the runtime started before the config error")
    monkeypatch.setattr("rl.algorithms.algorithm.make_runtime", refuse)


@pytest.mark.parametrize("settings", [
    {"lstm_cell_size": 0},
    {"lr": -0.1},
    {"model_activation": "swish"},
    {"model_hiddens": []},
    {"lstm_cell_size": "big"},  # wrong types
    {"use_lstm": "yes"},
    {"lstm_use_prev_action": True},  # a rule between fields: it needs use_lstm
    {"use_lstm": True, "model_class": "tests.custom_models:TorchActorCritic"},
    {"model_class": "tests.no_such_module:Model"},
], ids=["cell-size", "lr", "activation", "hiddens", "int-type", "bool-type", "prev-action",
        "lstm-and-model-class", "model-class"])
def test_a_bad_per_policy_value_is_the_run_level_error_for_that_policy(settings, no_runtime):
    with pytest.raises(ConfigError) as run_level:
        matching(0).set(**settings).build()
    cfg = matching(0).multi_agent(policies=TWO, policy_overrides={"agent_1": settings})
    with pytest.raises(ConfigError) as per_policy:
        cfg.build()
    assert str(run_level.value) in str(per_policy.value)
    assert "'agent_1'" in str(per_policy.value)


def test_a_policy_that_drops_the_lstm_but_keeps_its_inputs_is_a_config_error(no_runtime):
    # The run's lstm_use_prev_action reaches agent_1, whose override turns the LSTM off.
    cfg = matching(0).training(use_lstm=True, lstm_use_prev_action=True).multi_agent(
        policies=TWO, policy_overrides={"agent_1": {"use_lstm": False}})
    with pytest.raises(ConfigError, match=r"policy 'agent_1' .*'use_lstm': False.*"
                                          r"lstm_use_prev_action=true needs use_lstm=true"):
        cfg.build()


def test_a_policy_no_agent_plays_is_a_config_error():
    cfg = matching(0).multi_agent(policies=["even", "odd", "spare"],
                                  policy_mapping_fn=MAPPING + "by_parity")
    with pytest.raises(ConfigError, match=r"no agent maps to the policies \['spare'\]"):
        cfg.build()


def test_policy_settings_on_a_single_agent_env_are_a_config_error():
    cfg = PPOConfig().environment("CartPole-v1").multi_agent(policies=["a"])
    with pytest.raises(ConfigError, match="only for multi-agent"):
        cfg.build()


def test_checkpoints_hold_every_policy_and_resume_on_the_process_backend(tmp_path):
    cfg = (matching(0).multi_agent(policies=TWO, policy_overrides={
        "agent_1": {"model_hiddens": [16]}})
           .env_runners(num_env_runners=1).set(backend="process"))
    with cfg.build() as algo:
        algo.train()
        path = algo.save(str(tmp_path / "ckpt"))
        saved = {p: weights(algo, p) for p in TWO}
        episodes = algo.policy_episodes["agent_1"].total
    assert os.path.isfile(os.path.join(path, "learner.pt"))
    assert os.path.isfile(os.path.join(path, "learner_agent_1.pt"))
    with open(os.path.join(path, "state.json")) as f:
        assert json.load(f)["policies"] == TWO
    with PPO.from_checkpoint(path) as algo:
        for p in TWO:
            assert np.array_equal(weights(algo, p), saved[p])
        assert algo.policy_episodes["agent_1"].total == episodes
        result = algo.train()
        assert result["training_iteration"] == 2
    # Another set of policies does not load it.
    other = matching(0).multi_agent(policies=["agent_0"])
    with pytest.raises(CheckpointError, match=r"holds the policies \['agent_0', 'agent_1'\]"):
        other.build(checkpoint=path)


def test_rl_train_and_evaluate_with_two_policies(tmp_path, capsys):
    code = cli_main(["train", "--algo", "ppo", "--env", "MatchingGame-v0",
                     "--stop-timesteps", "256",
                     "--set", "train_batch_size=128", "--set", "minibatch_size=64",
                     "--set", "policies=[agent_0, agent_1]",
                     "--set", "policies_to_train=[agent_0]",
                     "--logdir", str(tmp_path)])
    assert code == 0
    rows = [json.loads(line) for line in
            open(glob.glob(str(tmp_path / "*" / "result.jsonl"))[0])]
    assert "policy/agent_1/episode_return_mean" in rows[1]
    checkpoint = sorted(glob.glob(str(tmp_path / "*" / "checkpoint_*")))[-1]
    capsys.readouterr()
    assert cli_main(["evaluate", checkpoint, "--episodes", "4"]) == 0
    assert "4 episodes: return" in capsys.readouterr().out


class Lopsided(MatchingGame):
    """MatchingGame where agent_1 sees two more features and has a fourth action that
    never matches: the agents have different spaces, so each needs a policy of its own."""

    EXTRA = np.array([1.0, 0.5], np.float32)

    def observation_space(self, agent):
        if agent != "agent_1":
            return super().observation_space(agent)
        return spaces.Box(0.0, 1.0, (self._obs_space.shape[0] + 2,), np.float32)

    def action_space(self, agent):
        return spaces.Discrete(4) if agent == "agent_1" else super().action_space(agent)

    def _extend(self, obs):
        if "agent_1" in obs:
            obs["agent_1"] = np.concatenate([obs["agent_1"], self.EXTRA])
        return obs

    def reset(self, seed=None, options=None):
        obs, infos = super().reset(seed, options)
        return self._extend(obs), infos

    def step(self, actions):
        obs, rewards, terms, truncs, infos = super().step(actions)
        return self._extend(obs), rewards, terms, truncs, infos


LOPSIDED = f"{__name__}:Lopsided"


def test_agents_of_different_spaces_get_a_policy_each_and_reach_the_optimum():
    # Seeds 0-5 measured: training return >= 15.5 by 3.2k-4.5k of the 6144 env steps,
    # greedy evaluation 16.0 on every one (3-4 s a seed on a quiet machine).
    cfg = matching(0).environment(LOPSIDED)
    with cfg.build() as algo:
        assert algo.policy_map.ids == ("agent_0", "agent_1")
        assert algo.model_specs["agent_1"].obs_space.shape == (9,)
        assert algo.model_specs["agent_1"].action_space.n == 4
        while algo.env_steps_total < 6144:
            result = algo.train()
        metrics = algo.evaluate(10)
        obs = {"agent_0": np.zeros(7, np.float32),
               "agent_1": np.concatenate([np.zeros(7, np.float32), Lopsided.EXTRA])}
        actions = algo.compute_actions(obs)
    assert metrics["eval/episode_return_mean"] == 16.0
    assert int(actions["agent_0"]) == int(actions["agent_1"])
    assert {"learner/agent_0/policy_loss", "learner/agent_1/policy_loss"} <= set(result)


def test_agents_of_different_spaces_cannot_share_a_policy():
    cfg = matching(0).environment(LOPSIDED).multi_agent(policies=["shared"])
    with pytest.raises(ConfigError, match=r"'agent_0' and 'agent_1' have different spaces.*"
                                          r"both map to policy 'shared'"):
        cfg.build()


class Reach:
    """Parallel env whose agents act in Boxes of different sizes and bounds: agent_0 in
    ``[-1, 1]^1``, agent_1 in ``[-2, 2]^2``; 4-step episodes. Records the actions it gets."""

    metadata = {"name": "reach_v0"}
    possible_agents = ["agent_0", "agent_1"]
    received: list[tuple[str, np.ndarray]] = []
    DIMS = {"agent_0": (1, 1.0), "agent_1": (2, 2.0)}

    def __init__(self):
        self.agents: list[str] = []
        self._t = 0

    def observation_space(self, agent):
        return spaces.Box(-1.0, 1.0, (self.DIMS[agent][0] + 1,), np.float32)

    def action_space(self, agent):
        dim, bound = self.DIMS[agent]
        return spaces.Box(-bound, bound, (dim,), np.float32)

    def _obs(self):
        return {a: np.full(self.DIMS[a][0] + 1, self._t / 4, np.float32) for a in self.agents}

    def reset(self, seed=None, options=None):
        self.agents, self._t = list(self.possible_agents), 0
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions):
        for agent, action in actions.items():
            Reach.received.append((agent, np.asarray(action)))
        rewards = {a: -float(np.sum(np.square(actions[a]))) for a in self.agents}
        self._t += 1
        ended = self._t >= 4
        obs = self._obs()
        keys = list(self.agents)
        if ended:
            self.agents = []
        return (obs, rewards, dict.fromkeys(keys, False), dict.fromkeys(keys, ended),
                {a: {} for a in keys})


def test_box_actions_of_different_sizes_and_bounds_reach_each_agent_as_its_own():
    Reach.received = []
    cfg = matching(0).environment(f"{__name__}:Reach")
    with cfg.build() as algo:
        algo.train()
        algo.evaluate(2)
        actions = algo.compute_actions({"agent_0": np.zeros(2, np.float32),
                                        "agent_1": np.zeros(3, np.float32)})
    assert np.shape(actions["agent_0"]) == (1,) and np.shape(actions["agent_1"]) == (2,)
    got = {a: np.stack([x for b, x in Reach.received if b == a]) for a in Reach.DIMS}
    assert got["agent_0"].shape[1] == 1 and got["agent_1"].shape[1] == 2
    assert np.abs(got["agent_0"]).max() <= 1.0 and np.abs(got["agent_1"]).max() <= 2.0
    # agent_1's actions use its own, wider bounds (unit-variance samples exceed 1).
    assert np.abs(got["agent_1"]).max() > 1.0


def test_simple_adversary_trains_a_policy_per_agent_or_per_team():
    # mpe2's simple_adversary: the adversary sees 8 features, the good agents 10.
    env = "mpe2.simple_adversary_v3:parallel_env"
    base = matching(0).environment(env, env_config={"max_cycles": 25})
    with base.build() as algo:
        assert algo.policy_map.ids == ("adversary_0", "agent_0", "agent_1")
        result = algo.train()
    assert {f"policy/{p}/episode_return_mean" for p in algo.policy_map.ids} <= set(result)
    teams = base.copy().multi_agent(policy_mapping_fn=MAPPING + "by_team")
    with teams.build() as algo:
        assert algo.policy_map.ids == ("adversaries", "good")
        assert algo.policy_map.agents_of("good") == ["agent_0", "agent_1"]
        result = algo.train()
    assert "learner/good/vf_loss" in result and "learner/adversaries/vf_loss" in result


def test_the_policy_overrides_help_names_every_per_policy_field():
    from rl.algorithms.policy_map import PER_POLICY_FIELDS
    from rl.config import AlgorithmConfig

    text = next(f.metadata["doc"] for f in dataclasses.fields(AlgorithmConfig)
                if f.name == "policy_overrides")
    assert all(name in text for name in PER_POLICY_FIELDS), text
