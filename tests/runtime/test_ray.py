"""The Ray backend beyond the shared behaviour suite: resources, zero-copy results, a
local Ray's life cycle, the missing-extra error, and every algorithm on Ray.

The shared suite (``test_runtime.py``) runs on Ray through the ``runtime`` and
``actor_runtime`` fixtures; the two-node cluster run is in ``test_ray_cluster.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from rl import ConfigError, DQNConfig, IMPALAConfig, PPOConfig
from rl.checkpoint import load_state
from rl.cli import main as cli_main
from tests.conftest import open_runtime, require_ray, wait_gone

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def rt(ray_session):
    """A Ray runtime joined to the session's local Ray; cleanup checked after."""
    yield from open_runtime("ray", shutdown_timeout=1.0)


class Probe:
    """A module-level actor class."""

    def __init__(self, size: int = 0):
        self.batch = {"obs": np.arange(size, dtype=np.float32).reshape(-1, 4)} if size else {}

    def sample(self) -> dict:
        return self.batch

    def ping(self) -> str:
        return "pong"


def test_capabilities_of_a_joined_ray(rt):
    # The session's Ray was started by this program (the fixture), so the runtime joined
    # it: as far as it can tell, other nodes may be there.
    assert rt.capabilities.schedules_gpus and rt.capabilities.is_cluster
    assert not rt.capabilities.actors_in_driver


# ---------------------------------------------------------------------- the object store


def test_results_are_zero_copy_read_only_views(rt):
    h = rt.spawn(Probe, 1 << 18)  # a 1 MiB column: stored in the object store, not inline
    out = rt.get(h.call("sample"))
    obs = out["obs"]
    np.testing.assert_array_equal(obs.reshape(-1), np.arange(1 << 18, dtype=np.float32))
    assert not obs.flags.writeable and not obs.flags.owndata
    with pytest.raises(ValueError, match="read-only"):
        obs[0, 0] = 1.0
    mine = np.array(obs)  # the documented way to modify a result
    mine[0, 0] = 1.0


# ---------------------------------------------------------------------------- resources


def test_custom_resources_are_honoured(rt):
    # The session's Ray has one unit of "x": a second holder waits until the first goes.
    first = rt.spawn(Probe, resources={"x": 1})
    assert rt.get(first.call("ping"), timeout=30) == "pong"
    second = rt.spawn(Probe, resources={"x": 1})
    waiting = second.call("ping")
    ready, _ = rt.wait([waiting], timeout=1.0)
    assert ready == []
    first.kill()
    assert rt.get(waiting, timeout=30) == "pong"


def test_cpus_are_honoured(rt):
    hog = rt.spawn(Probe, num_cpus=100)  # more than the session's Ray has: never placed
    ready, _ = rt.wait([hog.call("ping")], timeout=1.0)
    assert ready == []


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` in the process tree."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


LOCAL_RAY = textwrap.dedent(
    """
    import json, os, sys
    import ray
    from rl.runtime import UnschedulableError, make_runtime

    class Probe:
        def pid(self):
            return os.getpid()

    rt = make_runtime("ray", num_cpus=2, resources={"y": 1})
    a = rt.spawn(Probe, num_cpus=1.5)
    b = rt.spawn(Probe, num_cpus=0.5, resources={"y": 1})
    try:
        rt.spawn(Probe, num_cpus=0.5)
        error = None
    except UnschedulableError as exc:
        error = str(exc)
    pids = rt.get([a.call("pid"), b.call("pid")], timeout=60)
    print(json.dumps({"error": error, "actors": pids}), flush=True)
    sys.stdin.readline()  # the test looks at the process tree meanwhile
    rt.shutdown()
    print(json.dumps({"initialized": ray.is_initialized()}), flush=True)
    """
)


def test_local_ray_is_started_checked_and_stopped():
    """Without an address the runtime starts a local Ray with the resources asked for,
    refuses an actor that does not fit, and leaves no process after shutdown()."""
    require_ray()
    driver = subprocess.Popen([sys.executable, "-c", LOCAL_RAY], cwd=REPO, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        line = driver.stdout.readline()
        assert line, driver.stderr.read()
        facts = json.loads(line)
        tree = descendants(driver.pid)
        out, err = driver.communicate("go\n", timeout=60)
        assert driver.returncode == 0, err
    finally:
        driver.kill()
        driver.wait()
    assert "it needs CPU=0.5" in facts["error"] and "0 of 2 free" in facts["error"]
    assert "held by Probe-1, Probe-2" in facts["error"]
    assert set(facts["actors"]) <= set(tree)  # the actors ran under our Ray
    assert len(tree) >= 3  # gcs, raylet, workers
    assert json.loads(out.strip().splitlines()[-1]) == {"initialized": False}
    assert wait_gone(tree, 10.0) == [], "Ray processes survived shutdown()"


def test_ctrl_c_on_ray_checkpoints_and_ends_every_process(tmp_path):
    """Ctrl-C in a terminal reaches the whole process group: the driver, and the local
    Ray it started. `rl train` still checkpoints, leaves no process and exits 130."""
    require_ray()
    driver = subprocess.Popen(
        [sys.executable, "-m", "rl.cli", "train", "--algo", "ppo", "--env", "CartPole-v1",
         "--backend", "ray", "--num-env-runners", "2", "--stop-timesteps", "100000000",
         "--logdir", str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not any(len(p.read_text().splitlines()) >= 2
                      for p in tmp_path.glob("*/result.jsonl")):
            assert driver.poll() is None, driver.communicate()
            assert time.monotonic() < deadline, "no result within 120 s"
            time.sleep(0.05)
        tree = descendants(driver.pid)
        os.killpg(driver.pid, signal.SIGINT)
        _, err = driver.communicate(timeout=30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    assert driver.returncode == 130, err
    checkpoint = err.strip().splitlines()[-1].split("checkpoint: ")[-1]
    assert load_state(checkpoint)["iteration"] >= 2
    assert wait_gone(tree, 10.0) == [], "processes survived Ctrl-C"


# ---------------------------------------------------------------------- missing extra


def test_backend_ray_without_ray_fails_before_anything_starts(monkeypatch, capsys):
    import rl.algorithms.algorithm
    import rl.config

    monkeypatch.setattr(rl.config, "ray_installed", lambda: False)

    def no_runtime(*args, **kwargs):
        raise AssertionError("a runtime was started")

    monkeypatch.setattr(rl.algorithms.algorithm, "make_runtime", no_runtime)
    with pytest.raises(ConfigError, match=r"pip install 'rl\[ray\]'"):
        PPOConfig().environment("CartPole-v1").resources(backend="ray").build()
    code = cli_main(["train", "--algo", "ppo", "--env", "CartPole-v1", "--backend", "ray"])
    assert code == 2
    err = capsys.readouterr().err
    assert "rl[ray]" in err and "Traceback" not in err


# ---------------------------------------------------------------------- algorithms on Ray


def ppo(backend: str, **kw) -> PPOConfig:
    return (PPOConfig().environment("CartPole-v1").resources(backend=backend)
            .env_runners(num_env_runners=2, num_envs_per_env_runner=2)
            .training(train_batch_size=128, minibatch_size=64, num_epochs=2)
            .debugging(seed=0).set(**kw))


def test_ppo_on_ray_matches_the_process_backend(ray_session):
    """Same seeds, same fragments, same updates: the backend changes nothing."""

    def run(backend: str):
        with ppo(backend).build() as algo:
            results = [algo.train() for _ in range(2)]
            return results, algo.learner_group.get_weights()

    (ray_results, ray_weights), (proc_results, proc_weights) = run("ray"), run("process")
    for a, b in zip(ray_results, proc_results):
        for key in ("env_steps_total", "episodes_total", "episode_return_mean",
                    "learner/policy_loss", "learner/vf_loss"):
            assert a[key] == b[key], key
    np.testing.assert_array_equal(ray_weights, proc_weights)
    assert ray_results[-1]["workers/healthy"] == 2


def test_dqn_on_ray(ray_session):
    cfg = DQNConfig().environment("CartPole-v1").set(
        backend="ray", num_env_runners=2, num_envs_per_env_runner=2,
        rollout_fragment_length=4, model_hiddens=[16], train_batch_size=8,
        replay_buffer_capacity=1000, num_steps_sampled_before_learning_starts=16,
        min_sample_timesteps_per_iteration=40, training_intensity=0.5,
        epsilon_timesteps=200, prioritized_replay=True, seed=0)
    with cfg.build() as algo:
        results = [algo.train() for _ in range(3)]
    assert results[-1]["env_steps_total"] >= 120
    assert np.isfinite(results[-1]["learner/loss"])


@pytest.mark.parametrize("learners", [0, 2])
def test_impala_on_ray(ray_session, learners):
    cfg = (IMPALAConfig().environment("CartPole-v1").resources(backend="ray")
           .env_runners(num_env_runners=2 - learners // 2, num_envs_per_env_runner=2,
                        rollout_fragment_length=10)
           .training(train_batch_size=40, lr=1e-3, model_hiddens=[16])
           .learners(num_learners=learners).debugging(seed=0))
    seen: list[type] = []
    with cfg.build() as algo:
        update = algo.learner_group.update_fragments

        def spy(fragments, columns, **hyper):
            seen.extend(type(f).__name__ for f in fragments)
            return update(fragments, columns, **hyper)

        algo.learner_group.update_fragments = spy
        results = [algo.train() for _ in range(3)]
        for _ in range(100):  # the concurrent learner may lag a few iterations
            if results[-1]["learner/num_updates"] >= 2 and "learner/policy_loss" in results[-1]:
                break
            results.append(algo.train())
    assert results[-1]["learner/num_updates"] >= 2
    assert np.isfinite(results[-1]["learner/policy_loss"])
    # Learner actors read the fragments from Ray's object store; the driver moved refs.
    assert set(seen) == ({"RayShared"} if learners else {"dict"})


@pytest.mark.parametrize("learners", [1, 2])
def test_learner_actors_on_ray(ray_session, learners):
    """The learner group spawns its ranks through the runtime: Ray actors here, joined
    in a gloo group when there are two."""
    with ppo("ray", num_learners=learners, num_env_runners=1).build() as algo:
        results = [algo.train() for _ in range(2)]
        names = [a.name for a in algo.learner_group.actors]
        assert all(a.node_id for a in algo.learner_group.actors)
        # Rank 0 hosts the rendezvous at its node's IP, which ranks on other nodes reach.
        address = algo.learner_group.actors[0].call("rendezvous")
        import ray

        assert algo.runtime.get(address).startswith(f"tcp://{ray.util.get_node_ip_address()}:")
    assert names == [f"Learner-{r}" for r in range(learners)]
    assert np.isfinite(results[-1]["learner/policy_loss"])


def test_worker_killed_on_ray_is_replaced(ray_session):
    with ppo("ray").build() as algo:
        algo.train()
        victim = algo.workers.workers[0]
        os.kill(victim.pid, 9)
        result = algo.train()
        result = algo.train()
    assert result["workers/restarts"] == 1 and result["workers/healthy"] == 2


# ---------------------------------------------------------------------------- learning


@pytest.mark.learning
def test_ppo_cartpole_learns_on_ray(ray_session):
    """The tuned PPO CartPole example, on Ray with 2 workers: 475 within 150k steps."""
    from rl.experiment import fit, load_example

    example = load_example(str(REPO / "tuned_examples" / "ppo" / "cartpole.yaml"))
    example.config.set(backend="ray", num_env_runners=2, seed=0)
    example.stop.env_steps_total = 150_000
    with example.config.build() as algo:
        result, _ = fit(algo, example.stop, checkpoint_at_end=False)
    assert result["episode_return_mean"] >= 475, result
    assert result["env_steps_total"] <= 150_000 + 1024
