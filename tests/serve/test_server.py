"""``rl serve``: a real server in a subprocess, real HTTP requests through httpx.

The policies are trained for one iteration (weights and observation filter not their
initial values) and exported in this process; the server runs the ONNX file (or, once,
exports a checkpoint itself) and its answers are compared with
``Algorithm.compute_actions``. ``tests.serve.server_process`` always stops the server.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from rl.algorithms.ppo import PPOConfig
from rl.algorithms.sac import SACConfig
from rl.serve import export_policy
from rl.serve.agreement import random_observations
from rl.serve.export import space_to_json
from rl.serve.requests import ObservationCodec, RequestError
from tests.serve.server_process import serving
from tests.toy_envs import OBS_SPACES, SpaceEnv

MASKED = "tests.toy_envs:IllegalBestEnv"


def _trained(env, normalize_obs=False, **training):
    config = PPOConfig().environment(env).training(train_batch_size=64, minibatch_size=32,
                                                   num_epochs=1, **training) \
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2) \
        .resources(backend="inline").debugging(seed=0)
    config.normalize_obs = normalize_obs
    algo = config.build()
    algo.train()
    return algo


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    return np.asarray(x).tolist()


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory):
    """PPO on CartPole with normalize_obs: the algorithm, its checkpoint and ONNX file."""
    folder = tmp_path_factory.mktemp("cartpole")
    algo = _trained("CartPole-v1", normalize_obs=True)
    ckpt = algo.save(str(folder / "ckpt"))
    onnx = str(folder / "policy.onnx")
    export_policy(algo, onnx, "onnx", checkpoint=ckpt)
    yield algo, ckpt, onnx
    algo.stop()


@pytest.fixture(scope="module")
def server(cartpole):
    with serving(cartpole[2], "--max-wait-ms", "20") as s:
        yield s


def test_single_and_batched_answers_match_compute_actions(cartpole, server):
    algo = cartpole[0]
    obs = random_observations(algo.env_obs_space, algo.action_space, 300, seed=3)
    expected = np.asarray(algo.compute_actions(obs))
    r = server.client.post("/v1/actions", json={"obs": obs.tolist()})
    assert r.status_code == 200
    assert r.json()["actions"] == expected.tolist()
    for i in range(20):
        one = server.client.post("/v1/actions", json={"obs": obs[i].tolist()}).json()
        assert one == {"actions": int(expected[i])}


def test_concurrent_clients_get_their_own_answers_in_shared_batches(cartpole, server):
    algo = cartpole[0]
    obs = random_observations(algo.env_obs_space, algo.action_space, 320, seed=4)
    expected = np.asarray(algo.compute_actions(obs)).tolist()
    before = server.client.get("/v1/metadata").json()
    barrier = threading.Barrier(16)

    def client(k):
        with httpx.Client(base_url=server.url, timeout=30) as c:
            barrier.wait()
            return [(i, c.post("/v1/actions", json={"obs": obs[i].tolist()}).json())
                    for i in range(k, 320, 16)]

    with ThreadPoolExecutor(16) as pool:
        answers = [a for part in pool.map(client, range(16)) for a in part]
    assert len(answers) == 320
    assert all(a == {"actions": expected[i]} for i, a in answers)
    after = server.client.get("/v1/metadata").json()
    requests = after["requests_run"] - before["requests_run"]
    batches = after["batches_run"] - before["batches_run"]
    assert requests == 320 and after["rows_run"] - before["rows_run"] == 320
    assert batches < requests  # concurrent requests shared onnxruntime calls


def test_metadata_describes_the_policy_and_the_server_never_imported_torch(cartpole, server):
    meta = server.client.get("/v1/metadata").json()
    assert meta["torch_imported"] is False
    assert meta["algorithm"] == "PPO" and meta["env"] == "CartPole-v1"
    assert meta["checkpoint"] == cartpole[1]
    assert meta["rl_version"] == "0.1.0"
    assert meta["observation_space"]["shape"] == [4]
    assert meta["action_space"] == {"type": "Discrete", "shape": [], "dtype": "int64", "n": 2,
                                    "start": 0}
    assert [i["name"] for i in meta["inputs"]] == ["obs"]
    assert [o["name"] for o in meta["outputs"]] == ["actions", "values", "logits"]
    assert meta["max_batch"] == 64 and meta["max_wait_ms"] == 20


BAD = [
    # (what, body bytes, status, a phrase of the error)
    ("strings", json.dumps({"obs": ["a", "b", "c", "d"]}), 422, "expected numbers"),
    ("null entries", json.dumps({"obs": [0.0, None, 0.0, 0.0]}), 422, "expected numbers"),
    ("wrong shape", json.dumps({"obs": [0.0, 0.0, 0.0]}), 422, "expected one observation "
     "of shape (4,)"),
    ("wrong batch shape", json.dumps({"obs": [[0.0] * 5] * 2}), 422, "shape (2, 5)"),
    ("ragged", json.dumps({"obs": [[0.0] * 4, [0.0] * 3]}), 422, "ragged"),
    ("empty list", json.dumps({"obs": []}), 422, "non-empty list"),
    ("nan", '{"obs": [0.0, NaN, 0.0, 0.0]}', 422, "NaN or infinite"),
    ("inf", '{"obs": [0.0, 1e999, 0.0, 0.0]}', 422, "NaN or infinite"),
    ("missing obs", json.dumps({"observation": [0.0] * 4}), 400, "missing field 'obs'"),
    ("not an object", json.dumps([0.0] * 4), 400, "JSON object"),
    ("not json", "obs=1,2,3,4", 400, "not JSON"),
    ("pickle", b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x03obs\x94K\x01s.",
     400, "not JSON"),
    ("deep nesting", "[" * 200_000 + "]" * 200_000, 400, "not JSON"),
    ("over the size limit", json.dumps({"obs": [[0.0] * 4] * 80_000}), 413, "limit"),
]


@pytest.mark.parametrize("what,body,status,phrase", BAD, ids=[b[0] for b in BAD])
def test_a_bad_request_is_a_json_4xx_and_the_server_keeps_serving(server, what, body,
                                                                   status, phrase):
    r = server.client.post("/v1/actions", content=body,
                           headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert phrase in r.json()["error"]
    ok = server.client.post("/v1/actions", json={"obs": [0.0, 0.0, 0.0, 0.0]})
    assert ok.status_code == 200 and ok.json()["actions"] in (0, 1)


def test_unknown_paths_and_methods_answer_json(server):
    r = server.client.get("/v1/nothing")
    assert r.status_code == 404 and "POST /v1/actions" in r.json()["error"]
    r = server.client.get("/v1/actions")
    assert r.status_code == 405 and "error" in r.json()


def test_bad_requests_in_a_batch_do_not_spoil_the_good_ones(cartpole, server):
    algo = cartpole[0]
    obs = random_observations(algo.env_obs_space, algo.action_space, 32, seed=5)
    expected = np.asarray(algo.compute_actions(obs)).tolist()
    bodies = [{"obs": obs[i].tolist()} if i % 2 else {"obs": [float("nan")] * 4}
              for i in range(32)]

    def send(i):
        with httpx.Client(base_url=server.url, timeout=30) as c:
            return c.post("/v1/actions", content=json.dumps(bodies[i]))

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, range(32)))
    for i, r in enumerate(answers):
        if i % 2:
            assert r.status_code == 200 and r.json() == {"actions": expected[i]}
        else:
            assert r.status_code == 422


def test_a_token_is_required_when_given(cartpole):
    with serving(cartpole[2], "--token", "s3cret", "--max-body-bytes", "4096") as s:
        body = {"obs": [0.0] * 4}
        for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": "s3cret"}):
            r = s.client.post("/v1/actions", json=body, headers=headers)
            assert r.status_code == 401 and "Bearer" in r.json()["error"]
            assert s.client.get("/v1/metadata", headers=headers).status_code == 401
        auth = {"authorization": "Bearer s3cret"}
        assert s.client.post("/v1/actions", json=body, headers=auth).status_code == 200
        assert s.client.get("/v1/metadata", headers=auth).json()["max_body_bytes"] == 4096
        r = s.client.post("/v1/actions", json={"obs": [[0.0] * 4] * 400}, headers=auth)
        assert r.status_code == 413
        assert s.client.get("/healthz").status_code == 200  # probes need no token


def test_a_checkpoint_is_exported_and_sigterm_drains_in_flight_requests(cartpole):
    algo, ckpt, _ = cartpole
    obs = random_observations(algo.env_obs_space, algo.action_space, 8, seed=6)
    expected = np.asarray(algo.compute_actions(obs)).tolist()
    # A batch waits up to 1.5 s for company: the requests are still in flight at SIGTERM.
    with serving(ckpt, "--max-wait-ms", "1500") as s:
        assert s.client.get("/v1/metadata").json()["torch_imported"] is False

        def send(i):
            with httpx.Client(base_url=s.url, timeout=30) as c:
                return c.post("/v1/actions", json={"obs": obs[i].tolist()})

        with ThreadPoolExecutor(8) as pool:
            pending = [pool.submit(send, i) for i in range(8)]
            while s.client.get("/v1/metadata").json()["requests_received"] < 8:
                time.sleep(0.01)
            rc = s.stop()
            answers = [p.result() for p in pending]
        output = s.proc.stdout.read()
    assert rc == 0, output
    assert [r.json()["actions"] for r in answers] == expected
    assert "Shutting down" in output


def test_workers_each_serve_the_policy(cartpole):
    algo = cartpole[0]
    obs = random_observations(algo.env_obs_space, algo.action_space, 40, seed=7)
    expected = np.asarray(algo.compute_actions(obs)).tolist()
    with serving(cartpole[2], "--workers", "2") as s:
        got = [s.client.post("/v1/actions", json={"obs": o.tolist()}).json()["actions"]
               for o in obs]
        assert got == expected
        assert s.client.get("/v1/metadata").json()["torch_imported"] is False
        assert s.stop() == 0


def test_a_masked_dict_policy_answers_legal_actions_and_refuses_an_empty_mask(tmp_path):
    with _trained(MASKED) as algo:
        path = str(tmp_path / "masked.onnx")
        export_policy(algo, path, "onnx")
        obs = random_observations(algo.env_obs_space, algo.action_space, 100, seed=8)
        expected = np.asarray(algo.compute_actions(obs)).tolist()
    with serving(path) as s:
        r = s.client.post("/v1/actions", json={"obs": _jsonable(obs)})
        assert r.status_code == 200 and r.json()["actions"] == expected
        masks = np.stack([o["action_mask"] for o in obs])
        assert masks[np.arange(100), expected].all()
        one = _jsonable(obs[0])
        assert s.client.post("/v1/actions", json={"obs": one}).json() == \
            {"actions": expected[0]}
        dead = {**one, "action_mask": [0, 0, 0, 0]}
        r = s.client.post("/v1/actions", json={"obs": [one, dead]})
        assert r.status_code == 422 and "obs[1]['action_mask'] allows no action" in \
            r.json()["error"]
        r = s.client.post("/v1/actions", json={"obs": {"obs": one["obs"]}})
        assert r.status_code == 422 and "missing keys ['action_mask']" in r.json()["error"]


def test_a_sac_policy_answers_its_greedy_box_actions(tmp_path):
    config = SACConfig().environment("Pendulum-v1").training(
        learning_starts=64, train_batch_size=32).reporting(
        min_sample_timesteps_per_iteration=128).env_runners(num_env_runners=0) \
        .debugging(seed=0)
    with config.build() as algo:
        algo.train()
        path = str(tmp_path / "sac.onnx")
        export_policy(algo, path, "onnx")
        obs = random_observations(algo.env_obs_space, algo.action_space, 50, seed=9)
        expected = np.asarray(algo.compute_actions(obs))
    with serving(path) as s:
        r = s.client.post("/v1/actions", json={"obs": obs.tolist()})
        assert r.status_code == 200
        got = np.asarray(r.json()["actions"])
        assert got.shape == (50, 1) and (np.abs(got) <= 2.0).all()
        np.testing.assert_allclose(got, expected, atol=1e-5)
        meta = s.client.get("/v1/metadata").json()
        assert meta["algorithm"] == "SAC" and meta["action_space"]["type"] == "Box"


@pytest.fixture(scope="module")
def lstm(tmp_path_factory):
    """A recurrent PPO policy (use_lstm, normalize_obs), its checkpoint and ONNX file."""
    folder = tmp_path_factory.mktemp("lstm")
    algo = _trained("CartPole-v1", normalize_obs=True, use_lstm=True, lstm_cell_size=8,
                    max_seq_len=4)
    ckpt = algo.save(str(folder / "ckpt"))
    onnx = str(folder / "lstm.onnx")
    export_policy(algo, onnx, "onnx", checkpoint=ckpt)
    yield algo, ckpt, onnx
    algo.stop()


@pytest.fixture(scope="module")
def lstm_server(lstm):
    with serving(lstm[2], "--max-wait-ms", "20") as s:
        yield s


def _close(got, want):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64),
                               atol=1e-5)


def test_a_recurrent_episode_carries_its_state_across_requests(lstm, lstm_server):
    algo = lstm[0]
    obs = random_observations(algo.env_obs_space, algo.action_space, 12, seed=11)
    state, ref = None, None
    for t in range(12):
        body = {"obs": obs[t].tolist(), **({} if state is None else {"state": state})}
        r = lstm_server.client.post("/v1/actions", json=body)
        assert r.status_code == 200, r.text
        action, ref = algo.compute_actions(obs[t], ref)
        assert r.json()["actions"] == int(action)
        state = r.json()["state"]
        assert [np.shape(s) for s in state] == [(8,), (8,)]
        for got, want in zip(state, ref):
            _close(got, want)


def test_a_list_of_observations_carries_a_state_per_row(lstm, lstm_server):
    algo = lstm[0]
    state, ref = None, None
    for t in range(4):
        obs = random_observations(algo.env_obs_space, algo.action_space, 5, seed=20 + t)
        body = {"obs": obs.tolist(), **({} if state is None else {"state": state})}
        answer = lstm_server.client.post("/v1/actions", json=body).json()
        actions, ref = algo.compute_actions(obs, ref)
        assert answer["actions"] == np.asarray(actions).tolist()
        state = answer["state"]
        assert [np.shape(s) for s in state] == [(5, 8), (5, 8)]
        for got, want in zip(state, ref):
            _close(got, want)


def test_concurrent_recurrent_episodes_share_batches_and_keep_their_own_state(lstm,
                                                                            lstm_server):
    algo = lstm[0]
    before = lstm_server.client.get("/v1/metadata").json()
    barrier = threading.Barrier(8)

    # The expected episodes first: compute_actions swaps the worker's state, one caller
    # at a time.
    episodes = []
    for k in range(8):
        obs = random_observations(algo.env_obs_space, algo.action_space, 10, seed=40 + k)
        ref, steps = None, []
        for t in range(10):
            action, ref = algo.compute_actions(obs[t], ref)
            steps.append((obs[t].tolist(), int(action), ref[0]))
        episodes.append(steps)

    def episode(k):
        state, ok = None, True
        with httpx.Client(base_url=lstm_server.url, timeout=30) as c:
            barrier.wait()
            for obs, action, h in episodes[k]:
                body = {"obs": obs, **({} if state is None else {"state": state})}
                answer = c.post("/v1/actions", json=body).json()
                ok &= answer["actions"] == action
                ok &= bool(np.allclose(answer["state"][0], h, atol=1e-5))
                state = answer["state"]
        return ok

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(episode, range(8)))
    after = lstm_server.client.get("/v1/metadata").json()
    assert after["requests_run"] - before["requests_run"] == 80
    assert after["batches_run"] - before["batches_run"] < 80  # states batched together


def test_recurrent_metadata_shows_the_state_spec(lstm_server):
    meta = lstm_server.client.get("/v1/metadata").json()
    assert [i["name"] for i in meta["inputs"]] == ["obs", "state_in_0", "state_in_1"]
    assert [(t["input"], t["output"], t["shape"], t["dtype"]) for t in
            meta["state"]["tensors"]] == [("state_in_0", "state_out_0", [8], "float32"),
                                          ("state_in_1", "state_out_1", [8], "float32")]
    assert meta["state"]["tensors"][1]["initial"] == [0.0] * 8
    assert meta["state"]["prev_rewards"] is None
    assert meta["torch_imported"] is False


ZEROS = [0.0] * 8
BAD_STATE = [
    # (what, body, a phrase of the error)
    ("not a list", {"obs": [0.0] * 4, "state": 3}, "expected a list of 2 arrays of shapes "
     "[8], [8]"),
    ("one tensor short", {"obs": [0.0] * 4, "state": [ZEROS]}, "expected a list of 2"),
    ("wrong shape", {"obs": [0.0] * 4, "state": [ZEROS, [0.0] * 7]},
     "state[1]: shape (7,); expected [8] (for one observation)"),
    ("batch shape for one obs", {"obs": [0.0] * 4, "state": [[ZEROS], [ZEROS]]},
     "state[0]: shape (1, 8); expected [8]"),
    ("rows do not match", {"obs": [[0.0] * 4] * 3, "state": [[ZEROS] * 2, [ZEROS] * 2]},
     "state[0]: shape (2, 8); expected [3, 8] (for 3 observations)"),
    ("strings", {"obs": [0.0] * 4, "state": [["a"] * 8, ZEROS]}, "state[0]: expected numbers"),
    ("null", {"obs": [0.0] * 4, "state": [ZEROS, [None] * 8]}, "state[1]: expected numbers"),
    ("nan", '{"obs": [0, 0, 0, 0], "state": [[NaN, 0, 0, 0, 0, 0, 0, 0], '
     + json.dumps(ZEROS) + "]}", "state[0]: NaN or infinite"),
    ("beyond float32", {"obs": [0.0] * 4, "state": [[1e39] * 8, ZEROS]},
     "state[0]: values beyond the range of float32"),
    ("ragged", {"obs": [[0.0] * 4] * 2, "state": [[ZEROS, [0.0]], [ZEROS] * 2]},
     "state[0]: ragged"),
    ("prev_reward it does not read", {"obs": [0.0] * 4, "state": [ZEROS, ZEROS],
                                      "prev_reward": 1.0}, "does not read the previous reward"),
]


@pytest.mark.parametrize("what,body,phrase", BAD_STATE, ids=[b[0] for b in BAD_STATE])
def test_a_bad_state_is_a_422_saying_what_was_expected(lstm_server, what, body, phrase):
    content = body if isinstance(body, str) else json.dumps(body)
    r = lstm_server.client.post("/v1/actions", content=content,
                                headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert phrase in r.json()["error"]
    ok = lstm_server.client.post("/v1/actions", json={"obs": [0.0] * 4})
    assert ok.status_code == 200 and len(ok.json()["state"]) == 2


def test_a_feed_forward_policy_refuses_a_state(server):
    r = server.client.post("/v1/actions", json={"obs": [0.0] * 4, "state": [[0.0]]})
    assert r.status_code == 422 and "feed-forward" in r.json()["error"]
    assert server.client.post("/v1/actions", json={"obs": [0.0] * 4}).json().keys() == \
        {"actions"}


def test_a_recurrent_checkpoint_is_exported_and_served(lstm):
    algo, ckpt, _ = lstm
    obs = random_observations(algo.env_obs_space, algo.action_space, 3, seed=12)
    with serving(ckpt) as s:
        answer = s.client.post("/v1/actions", json={"obs": obs.tolist()}).json()
        actions, ref = algo.compute_actions(obs)
        assert answer["actions"] == np.asarray(actions).tolist()
        _close(answer["state"][0], ref[0])


def test_the_state_codec_takes_the_previous_reward_with_the_state():
    from rl.serve.requests import StateCodec

    codec = StateCodec({"state": {"prev_rewards": "prev_rewards", "tensors": [
        {"input": "state_in_0", "output": "state_out_0", "role": "model", "shape": [2],
         "dtype": "float32", "initial": [0.5, 0.5]},
        {"input": "state_in_1", "output": "state_out_1", "role": "prev_actions", "shape": [],
         "dtype": "float32", "initial": 0.0}]}})
    h, prev, reward = codec.decode(None, None, 3, False)
    assert h.tolist() == [[0.5, 0.5]] * 3 and prev.tolist() == [0.0] * 3
    assert reward.tolist() == [0.0] * 3
    h, prev, reward = codec.decode([[1.0, 2.0], 1], 0.25, 1, True)
    assert h.tolist() == [[1.0, 2.0]] and prev.tolist() == [1.0] and reward.tolist() == [0.25]
    with pytest.raises(RequestError, match="missing prev_reward"):
        codec.decode([[1.0, 2.0], 1], None, 1, True)
    with pytest.raises(RequestError, match="prev_reward without state"):
        codec.decode(None, 1.0, 1, True)
    with pytest.raises(RequestError, match="expected a list of 2 numbers"):
        codec.decode([[[1.0, 2.0]] * 2, [0, 1]], [1.0], 2, False)
    assert codec.encode([np.ones((1, 2)), np.zeros(1)], True) == [[1.0, 1.0], 0.0]


def test_serve_refuses_bad_flags_and_files(tmp_path, capsys):
    from rl.cli import main

    assert main(["serve", str(tmp_path / "missing.onnx")]) == 2
    assert "no such checkpoint or file" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--max-batch", "0"]) == 2
    assert "--max-batch 0: must be at least 1" in capsys.readouterr().err
    lone = tmp_path / "lone.onnx"
    lone.write_bytes(b"")
    assert main(["serve", str(lone)]) == 2
    assert "has no sidecar" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(OBS_SPACES))
def test_the_codec_prepares_json_observations_as_compute_actions_does(name):
    from gymnasium import spaces

    from rl.envs.spaces import flatten_observations

    space = SpaceEnv(obs=name).observation_space
    obs = random_observations(space, spaces.Discrete(3), 12, seed=9)
    want = flatten_observations(space, obs)[0]
    dtype = "uint8" if name == "image" else "float32"
    codec = ObservationCodec({"observation_space": space_to_json(space),
                              "inputs": [{"name": "obs", "dtype": dtype}]})
    batch, single = codec.decode(_jsonable(obs))
    assert not single and batch.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(batch, want.astype(dtype))
    one, single = codec.decode(_jsonable(obs[0] if isinstance(obs, list) else obs[0]))
    assert single
    np.testing.assert_array_equal(one, want[:1].astype(dtype))


def test_the_codec_names_out_of_range_discrete_values():
    from gymnasium import spaces

    codec = ObservationCodec({"observation_space": space_to_json(spaces.Discrete(5, start=2)),
                              "inputs": [{"name": "obs", "dtype": "float32"}]})
    with pytest.raises(RequestError, match=r"7 is out of range; expected an integer in \[2, 6\]"):
        codec.decode(7)
    with pytest.raises(RequestError, match="expected integers"):
        codec.decode(2.5)


def test_the_example_serves_a_checkpoint_and_stops_it(tmp_path):
    import os
    import subprocess
    from pathlib import Path

    from tests.serve.server_process import free_port

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, str(root / "examples" / "serve_policy.py"), "--timesteps", "512",
         "--port", str(free_port())],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr
    assert "action for [0.0, 0.1, 0.02, -0.1]: " in out.stdout, out.stdout
    assert int(out.stdout.split("action for [0.0, 0.1, 0.02, -0.1]: ")[1].split()[0]) in (0, 1)
    assert "rl serve exited 0" in out.stdout
