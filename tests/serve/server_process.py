"""Test helper: ``rl serve`` in a subprocess on a free loopback port, always stopped.

``serving(model, *flags)`` starts ``python -m rl.cli serve MODEL --port P FLAGS``, waits
for ``GET /healthz`` and yields a ``Server`` (its process, base URL, an httpx client);
on the way out it sends SIGTERM, then kills the process if it has not exited.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

START_TIMEOUT_S = 120  # a checkpoint is exported first (torch import + export + check)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running ``rl serve``: its process, base URL and a client bound to it."""

    proc: subprocess.Popen
    url: str
    client: httpx.Client

    def stop(self) -> int:
        """SIGTERM, wait for the drain; the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


@contextlib.contextmanager
def serving(model: str, *flags: str, start_timeout_s: float = START_TIMEOUT_S):
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rl.cli", "serve", model, "--port",
                             str(port), *flags], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=url, timeout=30)
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"rl serve exited {proc.returncode}:\n{proc.stdout.read()}")
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"rl serve did not answer /healthz in {start_timeout_s} s")
            time.sleep(0.1)
        yield Server(proc, url, client)
    finally:
        client.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
