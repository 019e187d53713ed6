"""``rl serve --backend ray``: a Ray Serve deployment on a local Ray, real HTTP requests.

One server for the module (a local Ray and Serve take seconds to start): PPO trained one
iteration on CartPole, its checkpoint exported by ``rl serve`` itself and deployed with
two replicas; the answers are compared with ``Algorithm.compute_actions``, the errors
with the embedded server's, and after SIGTERM no process of the Ray it started is left.
A recurrent (LSTM) policy's ONNX file served on a second local Ray (a Ray Serve
application owns its cluster's HTTP proxy, so the two cannot share one): its state
carried across requests step by step as ``compute_actions(obs, state)`` carries it, a
bad state refused with a 422, and ``/v1/metadata`` naming the file that was served.
The usage errors are checked without starting anything.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from rl.algorithms.ppo import PPOConfig
from rl.cli import main
from rl.serve.agreement import random_observations
from rl.serve.export import export_policy
from tests.serve.server_process import serving

TOKEN = "s3cret"
BODY_LIMIT = 20_000


def _descendants(pid: int) -> set[int]:
    """The live processes below ``pid`` (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:  # it exited meanwhile
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory):
    config = PPOConfig().environment("CartPole-v1").training(
        train_batch_size=64, minibatch_size=32, num_epochs=1) \
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2) \
        .resources(backend="inline").debugging(seed=0)
    config.normalize_obs = True
    algo = config.build()
    algo.train()
    ckpt = algo.save(str(tmp_path_factory.mktemp("cartpole") / "ckpt"))
    yield algo, ckpt
    algo.stop()


def test_ray_backend_answers_like_compute_actions_and_stops_clean(cartpole):
    algo, ckpt = cartpole
    obs = random_observations(algo.env_obs_space, algo.action_space, 100, seed=5)
    expected = np.asarray(algo.compute_actions(obs)).tolist()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with serving(ckpt, "--backend", "ray", "--replicas", "2", "--max-wait-ms", "20",
                 "--token", TOKEN, "--max-body-bytes", str(BODY_LIMIT),
                 start_timeout_s=600) as server:
        post = server.client.post
        r = post("/v1/actions", json={"obs": obs.tolist()}, headers=auth)
        assert r.status_code == 200, r.text
        assert r.json() == {"actions": expected}
        with ThreadPoolExecutor(8) as pool:  # concurrent singles share @serve.batch calls
            answers = list(pool.map(
                lambda i: post("/v1/actions", json={"obs": obs[i].tolist()},
                               headers=auth).json(), range(40)))
        assert answers == [{"actions": a} for a in expected[:40]]

        pids = set()
        for _ in range(30):  # requests spread over both replicas
            meta = server.client.get("/v1/metadata", headers=auth).json()
            pids.add(meta["pid"])
        assert len(pids) == 2
        assert (meta["algorithm"], meta["max_body_bytes"]) == ("PPO", BODY_LIMIT)
        assert meta["checkpoint"] == ckpt  # and the export rl serve made of it, still there
        assert os.path.isfile(meta["model"]) and os.path.isfile(meta["model"] + ".json")

        bad = post("/v1/actions", json={"obs": [0.1, 0.2]}, headers=auth)
        assert bad.status_code == 422
        assert "expected one observation of shape (4,)" in bad.json()["error"]
        assert post("/v1/actions", content=b"{nope", headers=auth).status_code == 400
        unauthorised = post("/v1/actions", json={"obs": obs[0].tolist()})
        assert unauthorised.status_code == 401 and "token" in unauthorised.json()["error"]
        big = post("/v1/actions", json={"obs": [obs[0].tolist()] * 2000}, headers=auth)
        assert big.status_code == 413 and "limit" in big.json()["error"]
        assert server.client.get("/v1/nothing").status_code == 404

        ray_processes = _descendants(server.proc.pid)
        assert ray_processes  # the local Ray's daemons and workers
        assert server.stop() == 0
    deadline = time.monotonic() + 60  # the raylet ends its workers as it exits
    while (left := {p for p in ray_processes if _alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"Ray processes left after rl serve exited: {sorted(left)}"


@pytest.fixture(scope="module")
def lstm(tmp_path_factory):
    """A recurrent PPO policy (use_lstm, normalize_obs) and its exported ONNX file."""
    config = PPOConfig().environment("CartPole-v1").training(
        train_batch_size=64, minibatch_size=32, num_epochs=1, use_lstm=True,
        lstm_cell_size=8, max_seq_len=4) \
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2) \
        .resources(backend="inline").debugging(seed=0)
    config.normalize_obs = True
    algo = config.build()
    algo.train()
    onnx = str(tmp_path_factory.mktemp("lstm") / "lstm.onnx")
    export_policy(algo, onnx, "onnx")
    yield algo, onnx
    algo.stop()


def test_ray_backend_carries_a_recurrent_state_across_requests(lstm):
    algo, onnx = lstm
    obs = random_observations(algo.env_obs_space, algo.action_space, 24, seed=11)
    with serving(onnx, "--backend", "ray", start_timeout_s=600) as server:
        post = server.client.post
        state, ref = None, None  # one episode, an observation per request
        for t in range(12):
            body = {"obs": obs[t].tolist(), **({} if state is None else {"state": state})}
            r = post("/v1/actions", json=body)
            assert r.status_code == 200, r.text
            action, ref = algo.compute_actions(obs[t], ref)
            assert r.json()["actions"] == int(action)
            state = r.json()["state"]
            assert [np.shape(s) for s in state] == [(8,), (8,)]
            for got, want in zip(state, ref, strict=True):
                np.testing.assert_allclose(got, np.asarray(want, np.float64), atol=1e-5)
        # a list of observations: a state row each, over two steps
        rows, ref = None, None
        for t in (12, 18):
            body = {"obs": obs[t:t + 6].tolist(), **({} if rows is None else {"state": rows})}
            answer = post("/v1/actions", json=body).json()
            actions, ref = algo.compute_actions(obs[t:t + 6], ref)
            assert answer["actions"] == np.asarray(actions).tolist()
            rows = answer["state"]
            for got, want in zip(rows, ref, strict=True):
                np.testing.assert_allclose(got, np.asarray(want, np.float64), atol=1e-5)

        bad = post("/v1/actions", json={"obs": obs[0].tolist(), "state": [[0.0] * 8,
                                                                        [0.0] * 7]})
        assert bad.status_code == 422
        assert "state[1]: shape (7,); expected [8]" in bad.json()["error"]
        meta = server.client.get("/v1/metadata").json()
        # the file rl serve was given, not the replica's deleted temporary copy
        assert meta["model"] == os.path.abspath(onnx)
        assert [i["name"] for i in meta["inputs"]] == ["obs", "state_in_0", "state_in_1"]
        assert server.stop() == 0


@pytest.mark.parametrize("flags, message", [
    (["--replicas", "2"], "--replicas needs --backend ray"),
    (["--address", "ray://head:10001"], "--address needs --backend ray"),
    (["--backend", "ray", "--workers", "2"], "--workers needs --backend inline"),
    (["--backend", "ray", "--replicas", "0"], "--replicas 0: must be at least 1"),
])
def test_backend_flags_are_checked_before_anything_starts(tmp_path, capsys, flags, message):
    missing = str(tmp_path / "never-read.onnx")  # the flags are checked before the file
    assert main(["serve", missing, *flags]) == 2
    assert message in capsys.readouterr().err
