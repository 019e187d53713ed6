"""A real two-node Ray cluster on this machine, and PPO's workers spread over it.

The test starts a head node and a second node that joins it (``ray start --block``, one
CPU each, so that two rollout workers of one CPU each must land on different nodes),
trains PPO against the head's address through the public API and through
``rl train --address``, and stops both nodes however the test ends.

Each node runs with its own temp dir as its working directory; stopping a node ends
its ``ray start`` process and then any process still working in that directory (Ray's
agents), so nothing of the cluster outlives the test and nothing else is touched.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_ray, wait_gone

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_in(directory: Path) -> list[int]:
    """Pids of the processes whose working directory is ``directory``."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/cwd") == str(directory):
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


class Node:
    """One ``ray start --block`` process and everything it started."""

    def __init__(self, root: Path, name: str, env: dict[str, str], *args: str):
        self.dir = root / name
        self.dir.mkdir()
        self.log_path = root / f"{name}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [RAY, "start", "--block", "--num-cpus", "1", "--temp-dir", str(self.dir),
             "--object-store-memory", str(200 << 20), "--disable-usage-stats", *args],
            cwd=self.dir, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        left = processes_in(self.dir)
        if wait_gone(left, 10.0):
            for pid in processes_in(self.dir):
                os.kill(pid, signal.SIGKILL)
        self.log.close()


def wait_for_nodes(address: str, env: dict[str, str], count: int, nodes: list[Node],
                   timeout: float = 90.0) -> None:
    """Wait until ``count`` nodes are alive in the cluster; fail at once if a node's
    ``ray start`` exits (its log says why)."""
    probe = textwrap.dedent(
        f"""
        import ray, time
        ray.init(address={address!r}, logging_level="ERROR")
        while sum(n["Alive"] for n in ray.nodes()) < {count}:
            time.sleep(0.5)
        """
    )
    waiter = subprocess.Popen([sys.executable, "-c", probe], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    try:
        while waiter.poll() is None:
            for node in nodes:
                if node.proc.poll() is not None:
                    pytest.fail(f"the {node.dir.name} node exited:\n"
                                f"{node.log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"fewer than {count} Ray nodes up after {timeout} s")
            time.sleep(0.2)
        assert waiter.returncode == 0, waiter.stderr.read()[-3000:]
    finally:
        if waiter.poll() is None:
            waiter.kill()
        waiter.wait()


DRIVER = textwrap.dedent(
    """
    import json, sys
    from rl import PPOConfig

    cfg = (PPOConfig().environment("CartPole-v1")
           .env_runners(num_env_runners=2, num_envs_per_env_runner=2)
           .training(train_batch_size=128, minibatch_size=64, num_epochs=1)
           .resources(backend="ray", ray_address=sys.argv[1]).debugging(seed=0))
    with cfg.build() as algo:
        results = [algo.train() for _ in range(2)]
        nodes = [w.node_id for w in algo.workers.workers]
    print(json.dumps({"nodes": nodes, "steps": results[-1]["env_steps_total"],
                      "healthy": results[-1]["workers/healthy"]}))
    """
)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp dir with a short path: Ray puts unix sockets under each node's temp dir,
    and a socket path may not exceed 107 bytes (pytest's ``tmp_path`` is too long)."""
    path = Path(tempfile.mkdtemp(prefix="rl-ray-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_ppo_workers_spread_over_two_nodes(short_tmp):
    require_ray()
    tmp_path = short_tmp
    port = free_port()
    address = f"127.0.0.1:{port}"
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    # Token authentication, with a token of this test's own, for every process of the
    # cluster and its drivers (Ray's default; a token in ~/.ray is not ours to use).
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
           "PYTHONPATH": str(REPO)}
    nodes = []
    try:
        nodes.append(Node(tmp_path, "head", env, "--head", "--node-ip-address", "127.0.0.1",
                          "--port", str(port), "--include-dashboard", "false",
                          "--ray-client-server-port", str(free_port()),
                          "--dashboard-agent-listen-port", str(free_port())))
        wait_for_nodes(address, env, 1, nodes)
        nodes.append(Node(tmp_path, "worker", env, "--address", address,
                          "--node-ip-address", "127.0.0.1",
                          "--dashboard-agent-listen-port", str(free_port())))
        wait_for_nodes(address, env, 2, nodes)

        out = subprocess.run([sys.executable, "-c", DRIVER, address], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        facts = json.loads(out.stdout.strip().splitlines()[-1])
        assert len(set(facts["nodes"])) == 2, facts  # one worker per one-CPU node
        assert facts["steps"] == 256 and facts["healthy"] == 2

        cli = subprocess.run(
            [sys.executable, "-m", "rl.cli", "train", "--algo", "ppo", "--env", "CartPole-v1",
             "--backend", "ray", "--address", address, "--num-env-runners", "2",
             "--stop-iters", "2", "--no-eval", "--json", "--logdir", str(tmp_path / "runs")],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert cli.returncode == 0, cli.stderr[-3000:]
        assert json.loads(cli.stdout.strip().splitlines()[-1])["training_iteration"] == 2
        # The driver left; the cluster it joined is still up.
        wait_for_nodes(address, env, 2, nodes)
        assert all(node.proc.poll() is None for node in nodes)
    finally:
        for node in reversed(nodes):
            node.stop()
    for node in nodes:
        assert processes_in(node.dir) == [], f"processes of the {node.dir.name} node survived"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
