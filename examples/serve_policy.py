"""Train PPO on CartPole briefly, serve the checkpoint with ``rl serve`` and ask it for
one action over HTTP, then stop the server with SIGTERM. Needs the ``rl[serve]`` extra::

    python examples/serve_policy.py [--timesteps 4096] [--port 8000]

``rl serve`` exports the checkpoint to ONNX first (in a child process, into a temporary
directory) and serves that file through onnxruntime; the serving process never imports
torch. The same from a shell: ``rl serve CHECKPOINT --port 8000``.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time

import httpx


def train(timesteps: int, folder: str) -> str:
    from rl import PPOConfig

    config = (PPOConfig().environment("CartPole-v1")
              .env_runners(num_env_runners=0, num_envs_per_env_runner=4)
              .resources(backend="inline").debugging(seed=0))
    with config.build() as algo:
        algo.fit(stop={"env_steps_total": timesteps})
        return algo.save(f"{folder}/checkpoint")


def wait_until_up(client: httpx.Client, server: subprocess.Popen, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"rl serve exited {server.returncode}")
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    sys.exit(f"rl serve did not come up in {timeout_s} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timesteps", type=int, default=4096)
    p.add_argument("--port", type=int, default=8000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = train(args.timesteps, folder)
        server = subprocess.Popen([sys.executable, "-m", "rl.cli", "serve", checkpoint,
                                   "--port", str(args.port)])
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=30) as client:
                wait_until_up(client, server)
                obs = [0.0, 0.1, 0.02, -0.1]
                answer = client.post("/v1/actions", json={"obs": obs}).json()
                print(f"action for {obs}: {answer['actions']}")
        finally:
            server.send_signal(signal.SIGTERM)  # drains in-flight requests, exits 0
            print(f"rl serve exited {server.wait(timeout=60)}")


if __name__ == "__main__":
    main()
