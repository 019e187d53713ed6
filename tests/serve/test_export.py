"""``rl export``: ONNX and TorchScript files that agree with ``compute_actions``.

Every test trains an algorithm for one iteration (so the weights and the observation
filter are not their initial values), exports it and runs the file itself: through
onnxruntime for ONNX (no torch on that path) and ``torch.jit.load`` for TorchScript.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch

from rl.algorithms.dqn import DQNConfig
from rl.algorithms.impala import IMPALAConfig
from rl.algorithms.ppo import PPOConfig
from rl.algorithms.sac import SACConfig
from rl.cli import main
from rl.config import ConfigError
from rl.serve import AgreementError, export_policy
from rl.serve.agreement import random_observations
from rl.serve.export import MissingExtraError
from rl.serve.graph import InferenceGraph
from tests.toy_envs import OBS_SPACES

MODELS = "tests.custom_models"
MASKED = "tests.toy_envs:IllegalBestEnv"


def _ppo(env, **training):
    return PPOConfig().environment(env).training(train_batch_size=64, minibatch_size=32,
                                                 num_epochs=1, **training)


def _dqn(env, **training):
    return DQNConfig().environment(env).training(
        num_steps_sampled_before_learning_starts=16, train_batch_size=16, **training)


def _impala(env):
    return IMPALAConfig().environment(env).env_runners(rollout_fragment_length=16) \
        .training(train_batch_size=32)


def _trained(config, normalize_obs: bool = False):
    config = config.env_runners(num_env_runners=0, num_envs_per_env_runner=2) \
        .resources(backend="inline").debugging(seed=0)
    config.normalize_obs = normalize_obs
    algo = config.build()
    algo.train()
    return algo


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory):
    """PPO on CartPole with normalize_obs, and its checkpoint."""
    algo = _trained(_ppo("CartPole-v1"), normalize_obs=True)
    assert algo.obs_filter.count > 0
    path = algo.save(str(tmp_path_factory.mktemp("ckpt") / "cartpole"))
    yield algo, path
    algo.stop()


def _session(path):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def _obs(algo, n, seed=1):
    from rl.envs.spaces import flatten_observations

    env_obs = random_observations(algo.env_obs_space, algo.action_space, n, seed)
    return env_obs, flatten_observations(algo.env_obs_space, env_obs)[0].astype(np.float32)


def test_onnx_folds_in_normalisation_and_agrees_on_any_batch_size(cartpole, tmp_path):
    algo, ckpt = cartpole
    path = str(tmp_path / "policy.onnx")
    result = export_policy(algo, path, "onnx", checkpoint=ckpt)
    assert result.agreement.ok and result.agreement.observations == 1000
    assert result.agreement.mismatched_actions == 0
    assert result.agreement.max_diff["values"] <= 1e-5
    session = _session(path)
    assert [i.name for i in session.get_inputs()] == ["obs"]
    assert [o.name for o in session.get_outputs()] == ["actions", "values", "logits"]
    assert session.get_inputs()[0].shape == ["batch", 4]
    for n in (1, 7):  # other batch sizes than the export's and the check's
        env_obs, batch = _obs(algo, n)
        actions, values, logits = session.run(None, {"obs": batch})
        np.testing.assert_array_equal(actions, algo.compute_actions(env_obs))
        assert values.shape == (n,) and logits.shape == (n, 2)
    meta = json.loads((tmp_path / "policy.onnx.json").read_text())
    assert meta["algorithm"] == "PPO" and meta["env"] == "CartPole-v1"
    assert meta["checkpoint"] == ckpt and meta["format"] == "onnx"
    assert meta["normalization"] == "folded in"
    assert meta["action_space"] == {"type": "Discrete", "shape": [], "dtype": "int64", "n": 2,
                                    "start": 0}
    assert [o["name"] for o in meta["outputs"]] == ["actions", "values", "logits"]
    assert meta["inputs"] == [{"name": "obs", "shape": ["batch", 4], "dtype": "float32"}]
    assert meta["agreement"]["ok"] is True


def test_torchscript_agrees(cartpole, tmp_path):
    algo, _ = cartpole
    path = str(tmp_path / "policy.pt")
    assert export_policy(algo, path, "torchscript").agreement.ok
    loaded = torch.jit.load(path)
    env_obs, batch = _obs(algo, 5)
    actions, _, _ = loaded(torch.from_numpy(batch))
    np.testing.assert_array_equal(actions.numpy(), algo.compute_actions(env_obs))
    assert export_policy(algo, path, "torchscript", stochastic=True).agreement.ok
    sampling = torch.jit.load(path)
    _, batch = _obs(algo, 1000)
    first, second = (sampling(torch.from_numpy(batch))[0] for _ in range(2))
    assert (first != second).any()  # the traced graph draws afresh on every call


def test_a_graph_without_the_filter_disagrees(cartpole, tmp_path, monkeypatch):
    # The check is real: skipping the normalisation shows as a named difference.
    algo, _ = cartpole
    monkeypatch.setattr(InferenceGraph, "prepare", lambda self, obs: obs)
    with pytest.raises(AgreementError, match="disagrees with compute_actions on 1000"):
        export_policy(algo, str(tmp_path / "p.onnx"), "onnx")


def test_stochastic_onnx_samples_afresh_each_call(cartpole, tmp_path):
    algo, _ = cartpole
    path = str(tmp_path / "policy.onnx")
    assert export_policy(algo, path, "onnx", stochastic=True).agreement.ok
    assert json.loads((tmp_path / "policy.onnx.json").read_text())["stochastic"] is True
    session = _session(path)
    _, batch = _obs(algo, 1000)
    first, second = (session.run(["actions"], {"obs": batch})[0] for _ in range(2))
    assert set(np.unique(first)) <= {0, 1}
    assert (first != second).any()  # a fresh draw, not a baked-in seed
    greedy = algo.compute_actions(_obs(algo, 1000)[0])
    assert (first != greedy).any()
    # The Gumbel-max draws follow the policy: one observation repeated 4,000 times picks
    # action 1 as often as softmax(logits) says (4 standard errors: 0.032).
    repeated = np.repeat(batch[:1], 4000, axis=0)
    actions, _, logits = session.run(None, {"obs": repeated})
    p1 = np.exp(logits[0, 1]) / np.exp(logits[0]).sum()
    assert abs(actions.mean() - p1) < 0.04


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_dqn_on_a_masked_env_never_picks_an_illegal_action(fmt, tmp_path):
    with _trained(_dqn(MASKED)) as algo:
        path = str(tmp_path / f"q.{fmt}")
        result = export_policy(algo, path, fmt)
        assert result.agreement.ok
        assert list(result.agreement.max_diff) == ["q_values", "actions"]
        if fmt == "onnx":
            env_obs, batch = _obs(algo, 200)
            actions, q = _session(path).run(None, {"obs": batch})
            masks = np.stack([o["action_mask"] for o in env_obs])
            assert masks[np.arange(200), actions].all()
            assert np.isinf(q[masks == 0]).all()
        meta = json.loads((tmp_path / f"q.{fmt}.json").read_text())
        assert meta["observation_layout"]["action_mask"] == [0, 4]
        assert [k["key"] for k in meta["observation_layout"]["keys"]] == ["action_mask", "obs"]


def test_a_custom_dict_model_behind_the_mask_exports_sampling_only_legal_actions(tmp_path):
    # DictPolicy prefers the illegal action: only the folded-in mask keeps it legal.
    with _trained(_ppo(MASKED, model_class=f"{MODELS}:DictPolicy")) as algo:
        for stochastic in (False, True):
            path = str(tmp_path / f"p{stochastic}.onnx")
            assert export_policy(algo, path, "onnx", stochastic=stochastic).agreement.ok
            env_obs, batch = _obs(algo, 500)
            actions = _session(path).run(["actions"], {"obs": batch})[0]
            masks = np.stack([o["action_mask"] for o in env_obs])
            assert masks[np.arange(500), actions].all()


def test_impala_multi_discrete_with_a_start_offset(tmp_path):
    with _trained(_impala("tests.toy_envs:MatchBitsEnv")) as algo:
        path = str(tmp_path / "p.onnx")
        assert export_policy(algo, path, "onnx").agreement.ok
        _, batch = _obs(algo, 50)
        actions, _, logits = _session(path).run(None, {"obs": batch})
        assert actions.shape == (50, 2) and logits.shape == (50, 5)
        assert actions.dtype == np.int64


def test_box_actions_are_clipped_means(tmp_path):
    with _trained(_ppo("Pendulum-v1"), normalize_obs=True) as algo:
        for fmt in ("onnx", "torchscript"):
            result = export_policy(algo, str(tmp_path / f"p.{fmt}"), fmt)
            assert result.agreement.ok and result.agreement.max_diff["actions"] <= 1e-5
        _, batch = _obs(algo, 100)
        actions = _session(str(tmp_path / "p.onnx")).run(["actions"], {"obs": batch})[0]
        assert actions.shape == (100, 1) and actions.dtype == np.float32
        assert (np.abs(actions) <= 2.0).all()
        result = export_policy(algo, str(tmp_path / "s.onnx"), "onnx", stochastic=True)
        assert result.agreement.ok


def test_sac_exports_its_squashed_actions_rescaled_to_the_bounds(tmp_path):
    """SAC's actor has no value head: ``actions`` and ``logits`` (mean, log-std); the
    greedy action is tanh(mean) rescaled to [low, high], the sampled one inside them."""
    config = SACConfig().environment("Pendulum-v1").training(
        learning_starts=64, train_batch_size=32).reporting(min_sample_timesteps_per_iteration=128)
    with _trained(config) as algo:
        assert algo.num_updates_total > 0
        for fmt in ("onnx", "torchscript"):
            result = export_policy(algo, str(tmp_path / f"p.{fmt}"), fmt)
            assert result.agreement.ok and result.agreement.max_diff["actions"] <= 1e-5
        sidecar = json.loads((tmp_path / "p.onnx.json").read_text())
        assert [o["name"] for o in sidecar["outputs"]] == ["actions", "logits"]
        _, batch = _obs(algo, 200)
        actions, logits = _session(str(tmp_path / "p.onnx")).run(None, {"obs": batch})
        assert actions.shape == (200, 1) and logits.shape == (200, 2)
        np.testing.assert_allclose(actions[:, 0], 2.0 * np.tanh(logits[:, 0]), atol=1e-5)
        np.testing.assert_allclose(actions, np.asarray(algo.compute_actions(batch)), atol=1e-5)
        result = export_policy(algo, str(tmp_path / "s.onnx"), "onnx", stochastic=True)
        assert result.agreement.ok
        run = _session(str(tmp_path / "s.onnx"))
        first, second = (run.run(["actions"], {"obs": batch})[0] for _ in range(2))
        assert (np.abs(first) <= 2.0).all() and not np.array_equal(first, second)
        assert np.abs(first - actions).max() > 1e-3  # sampled, not the mean


def test_a_custom_model_exports_to_onnx_and_torchscript_names_len(tmp_path):
    # TorchActorCritic reshapes with len(obs): torch.export keeps the batch dynamic,
    # torch.jit.trace bakes the traced batch size in, and the check says so.
    with _trained(_ppo("CartPole-v1", model_class=f"{MODELS}:TorchActorCritic")) as algo:
        assert export_policy(algo, str(tmp_path / "p.onnx"), "onnx").agreement.ok
        with pytest.raises(AgreementError, match=r"len\(obs\).*obs.shape\[0\]"):
            export_policy(algo, str(tmp_path / "p.pt"), "torchscript")


def test_missing_onnx_packages_name_the_extra(cartpole, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'rl\[export\]'"):
        export_policy(cartpole[0], str(tmp_path / "p.onnx"), "onnx")


# ----------------------------------------------------------------------------- CLI
def test_cli_export_prints_the_file_the_sidecar_and_the_figures(cartpole, tmp_path, capsys):
    out = tmp_path / "policy.onnx"
    assert main(["export", cartpole[1], "--format", "onnx", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out} (onnx)" in text and f"sidecar {out}.json" in text
    assert "greedy actions identical on 1000/1000" in text and "values" in text
    assert json.loads(out.with_suffix(".onnx.json").read_text())["checkpoint"] == cartpole[1]


def test_cli_export_disagreement_exits_1(cartpole, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(InferenceGraph, "prepare", lambda self, obs: obs)
    out = str(tmp_path / "p.pt")
    assert main(["export", cartpole[1], "--format", "torchscript", "-o", out]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("rl export: error: ") and "largest difference in" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("argv, message", [
    (["export", "{tmp}/nothing", "--format", "onnx", "-o", "{tmp}/p.onnx"], "nothing"),
    (["export", "{ckpt}", "--format", "tflite", "-o", "{tmp}/p"], "invalid choice: 'tflite'"),
    (["export", "{ckpt}", "--format", "onnx", "-o", "{tmp}/no/such/p.onnx"], "does not exist"),
    (["export", "{ckpt}", "--format", "onnx", "-o", "{tmp}"], "is a directory"),
    (["export", "{ckpt}", "--format", "onnx"], "-o/--output"),
])
def test_cli_export_bad_input_exits_2_with_one_line(cartpole, tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, ckpt=cartpole[1]) for a in argv]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors (its exit code is rl's: 2)
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


LSTM = dict(use_lstm=True, lstm_cell_size=8, max_seq_len=4)


def _impala_lstm(env):
    return _impala(env).training(**LSTM)


def _feeds(meta, batch, state, reward=None):
    """The recurrent file's inputs by name: obs, the state, then prev_rewards."""
    names = [i["name"] for i in meta["inputs"]]
    arrays = [batch, *state] + ([reward] if meta["state"]["prev_rewards"] else [])
    return dict(zip(names, arrays))


def _run_file(path, fmt, meta, feeds):
    if fmt == "onnx":
        return _session(path).run(None, feeds)
    loaded = torch.jit.load(path)
    with torch.no_grad():
        return [t.numpy() for t in loaded(*(torch.from_numpy(feeds[i["name"]])
                                            for i in meta["inputs"]))]


def _episode_agrees(algo, path, fmt, steps=6, n=5, prev_reward=False):
    """The file carried over ``steps`` steps of ``n`` sequences from the sidecar's
    initial state gives compute_actions' actions and states."""
    meta = json.load(open(path + ".json"))
    tensors = meta["state"]["tensors"]
    state = [np.repeat(np.asarray(t["initial"], t["dtype"])[None], n, axis=0)
             for t in tensors]
    ref = None
    rng = np.random.default_rng(2)
    for t in range(steps):
        env_obs, batch = _obs(algo, n, seed=10 + t)
        reward = rng.uniform(-1, 1, n).astype(np.float32) if t else np.zeros(n, np.float32)
        out = _run_file(path, fmt, meta, _feeds(meta, batch, state, reward))
        kwargs = {"prev_reward": reward} if prev_reward and t else {}
        actions, ref = algo.compute_actions(env_obs, ref, **kwargs)
        np.testing.assert_array_equal(out[0], actions)
        state = out[3:]
        assert len(state) == len(tensors)
        for got, want in zip(state, ref):
            np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("make", [_ppo, _impala_lstm], ids=["ppo", "impala"])
def test_a_recurrent_policy_exports_its_state_as_inputs_and_outputs(make, fmt, tmp_path):
    config = make("CartPole-v1", **LSTM) if make is _ppo else make("CartPole-v1")
    with _trained(config, normalize_obs=True) as algo:
        path = str(tmp_path / f"lstm.{fmt}")
        result = export_policy(algo, path, fmt)
        assert result.agreement.ok and result.agreement.observations == 1000
        assert {"state_out_0", "state_out_1", "values", "logits"} <= set(
            result.agreement.max_diff)
        meta = json.load(open(path + ".json"))
        assert [i["name"] for i in meta["inputs"]] == ["obs", "state_in_0", "state_in_1"]
        assert [o["name"] for o in meta["outputs"]] == [
            "actions", "values", "logits", "state_out_0", "state_out_1"]
        assert meta["inputs"][1] == {"name": "state_in_0", "shape": ["batch", 8],
                                     "dtype": "float32"}
        assert meta["state"]["prev_rewards"] is None and meta["state"]["steps_checked"] == 10
        assert [(t["input"], t["output"], t["role"], t["shape"]) for t in
                meta["state"]["tensors"]] == [("state_in_0", "state_out_0", "model", [8]),
                                              ("state_in_1", "state_out_1", "model", [8])]
        assert meta["state"]["tensors"][0]["initial"] == [0.0] * 8
        if fmt == "onnx":
            assert [i.shape for i in _session(path).get_inputs()] == [["batch", 4]] + \
                [["batch", 8]] * 2
        _episode_agrees(algo, path, fmt)
        stochastic = export_policy(algo, str(tmp_path / f"s.{fmt}"), fmt, stochastic=True)
        assert stochastic.agreement.ok


def test_prev_action_and_reward_are_a_state_tensor_and_an_input(tmp_path):
    config = _ppo("CartPole-v1", **LSTM, lstm_use_prev_action=True, lstm_use_prev_reward=True)
    with _trained(config) as algo:
        for fmt in ("onnx", "torchscript"):
            path = str(tmp_path / f"p.{fmt}")
            assert export_policy(algo, path, fmt).agreement.ok
            meta = json.load(open(path + ".json"))
            assert [i["name"] for i in meta["inputs"]] == [
                "obs", "state_in_0", "state_in_1", "state_in_2", "prev_rewards"]
            prev = meta["state"]["tensors"][2]
            assert (prev["role"], prev["shape"], prev["initial"]) == ("prev_actions", [], 0.0)
            assert meta["state"]["prev_rewards"] == "prev_rewards"
            _episode_agrees(algo, path, fmt, prev_reward=True)


def test_a_custom_recurrent_model_records_its_own_initial_state(tmp_path):
    with _trained(_ppo("CartPole-v1", model_class=f"{MODELS}:HalfGRU")) as algo:
        for fmt in ("onnx", "torchscript"):
            path = str(tmp_path / f"g.{fmt}")
            assert export_policy(algo, path, fmt).agreement.ok
            meta = json.load(open(path + ".json"))
            assert [t["initial"] for t in meta["state"]["tensors"]] == [[0.5] * 8]
            _episode_agrees(algo, path, fmt)


def test_a_masked_dict_recurrent_model_exports(tmp_path):
    config = _ppo(MASKED, model_class="tests.test_recurrent_inputs:DictGRU", max_seq_len=4)
    with _trained(config) as algo:
        path = str(tmp_path / "m.onnx")
        assert export_policy(algo, path, "onnx").agreement.ok
        _episode_agrees(algo, path, "onnx")


def test_cli_exports_a_recurrent_checkpoint(tmp_path, capsys):
    with _trained(_ppo("CartPole-v1", **LSTM)) as algo:
        ckpt = algo.save(str(tmp_path / "ckpt"))
    out = str(tmp_path / "lstm.pt")
    assert main(["export", ckpt, "--format", "torchscript", "-o", out]) == 0
    text = capsys.readouterr().out
    assert "greedy actions identical on 1000/1000" in text and "state_out_1" in text
    assert json.load(open(out + ".json"))["state"]["tensors"][0]["input"] == "state_in_0"


def test_a_graph_that_drops_the_state_disagrees(tmp_path, monkeypatch):
    # The recurrent check is real: a file that always starts from the initial state
    # agrees on the first step only, and the check names a state output.
    from rl.serve.graph import RecurrentInferenceGraph

    forward = RecurrentInferenceGraph.forward
    monkeypatch.setattr(RecurrentInferenceGraph, "forward", lambda self, obs, *inputs:
                        forward(self, obs, *(0 * x for x in inputs)))
    with _trained(_ppo("CartPole-v1", **LSTM)) as algo:
        with pytest.raises(AgreementError, match="disagrees with compute_actions") as e:
            export_policy(algo, str(tmp_path / "p.onnx"), "onnx")
        assert "largest difference in" in str(e.value)


def test_a_shared_recurrent_policy_of_a_multi_agent_run_exports(tmp_path):
    from tests.test_multi_agent import matching

    config = matching(0).env_runners(num_env_runners=0, num_envs_per_env_runner=2,
                                     rollout_fragment_length=8) \
        .training(train_batch_size=16, minibatch_size=16, num_epochs=1, use_lstm=True,
                  lstm_cell_size=8, max_seq_len=4, model_hiddens=[8])
    with config.build() as algo:
        algo.train()
        path = str(tmp_path / "shared.onnx")
        result = export_policy(algo, path, "onnx", policy="default_policy")
        assert result.agreement.ok and result.agreement.mismatched_actions == 0
        meta = json.load(open(path + ".json"))
        assert meta["agents"] == list(algo.agents) and len(meta["state"]["tensors"]) == 2
        obs = np.random.default_rng(1).uniform(0, 1, (1, meta["inputs"][0]["shape"][1]))
        obs = obs.astype(np.float32)
        state = [np.asarray(t["initial"], np.float32)[None] for t in meta["state"]["tensors"]]
        agent = algo.agents[0]
        ref = None
        for _ in range(3):
            out = _session(path).run(None, _feeds(meta, obs, state))
            actions, ref = algo.compute_actions({agent: obs[0]}, ref)
            assert int(out[0][0]) == int(actions[agent])
            np.testing.assert_allclose(out[3][0], ref[agent][0], atol=1e-5)
            state = out[3:]


def test_the_example_exports_and_plays_with_onnxruntime(tmp_path):
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, str(root / "examples" / "export_onnx.py"), "--timesteps", "1024"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr
    assert "agreement on 1000 observations" in out.stdout, out.stdout
    episode = float(out.stdout.rsplit("onnxruntime episode return: ", 1)[1])
    assert 1 <= episode <= 500
    assert (tmp_path / "cartpole.onnx.json").exists()


@pytest.mark.parametrize("obs", OBS_SPACES)
def test_every_observation_space_exports_to_onnx(obs, tmp_path):
    # Discrete sub-spaces flatten one-hot, images stay uint8: the graph takes what
    # flatten_observations makes, as the sidecar says.
    action = "box" if obs == "dict" else "multidiscrete" if obs == "tuple" else "discrete"
    config = _ppo("tests.toy_envs:SpaceEnv").environment(
        "tests.toy_envs:SpaceEnv", env_config={"obs": obs, "action": action})
    with _trained(config) as algo:
        path = str(tmp_path / "p.onnx")
        assert export_policy(algo, path, "onnx").agreement.ok
        meta = json.loads((tmp_path / "p.onnx.json").read_text())
        assert meta["inputs"][0]["shape"] == ["batch", *algo.obs_space.shape]
        assert meta["inputs"][0]["dtype"] == ("uint8" if obs == "image" else "float32")


def _run_onnx(path, batch):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch})


def test_each_policy_of_a_multi_agent_run_exports_for_its_own_agents(tmp_path):
    from tests.test_multi_policy import LOPSIDED, matching

    algo = matching(0).environment(LOPSIDED).build()  # agent_1: 9 features, 4 actions
    algo.train()
    try:
        with pytest.raises(ConfigError, match=r"policies \['agent_0', 'agent_1'\].*--policy"):
            export_policy(algo, str(tmp_path / "p.onnx"), "onnx")
        with pytest.raises(ConfigError, match="--policy 'nobody'"):
            export_policy(algo, str(tmp_path / "p.onnx"), "onnx", policy="nobody")
        for pid, width, n in (("agent_0", 7, 3), ("agent_1", 9, 4)):
            path = str(tmp_path / f"{pid}.onnx")
            result = export_policy(algo, path, "onnx", policy=pid)
            assert result.agreement.ok and result.agreement.mismatched_actions == 0
            meta = json.load(open(path + ".json"))
            assert meta["policy"] == pid and meta["agents"] == [pid]
            assert meta["action_space"]["n"] == n
            obs = np.random.default_rng(1).uniform(0, 1, (32, width)).astype(np.float32)
            actions = _run_onnx(path, obs)[0]
            want = [int(algo.compute_actions({pid: o})[pid]) for o in obs]
            assert actions.tolist() == want
    finally:
        algo.stop()


def test_rl_export_takes_the_policy_of_a_multi_agent_checkpoint(tmp_path, capsys):
    from tests.test_multi_policy import matching

    algo = matching(0).multi_agent(policies=["agent_0", "agent_1"]).build()
    try:
        algo.train()
        ckpt = algo.save(str(tmp_path / "ckpt"))
    finally:
        algo.stop()
    out = str(tmp_path / "p.onnx")
    assert main(["export", ckpt, "--format", "onnx", "-o", out]) == 2
    assert "--policy" in capsys.readouterr().err
    assert main(["export", ckpt, "--format", "onnx", "-o", out, "--policy", "agent_1"]) == 0
    assert json.load(open(out + ".json"))["policy"] == "agent_1"
