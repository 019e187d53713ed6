"""``rl serve --backend ray``: the same HTTP service as a Ray Serve deployment.

::

    client --HTTP--> Ray Serve proxy (--host/--port) --ASGI--> replica 1 .. N
                                                               create_app(...)
                                                               validate (rl.serve.requests)
                                                               ServeBatcher: @serve.batch
                                                               onnxruntime session

Each of the ``--replicas`` replicas runs the app ``rl.serve.server.create_app`` builds
(the same endpoints, validation, error JSON, token and body limit as the embedded
server) as the deployment's ASGI ingress; only the gathering of requests into graph
calls differs: ``ServeBatcher`` hands every validated observation to a ``@serve.batch``
function (``--max-batch`` observations, ``--max-wait-ms``), which runs onnxruntime in a
thread. The ONNX file and its sidecar travel inside the deployment (as bytes), so a
replica on another node needs rl and onnxruntime installed, not the driver's files; it
writes them to a temporary directory of its own while it loads them (removed once
loaded). ``/v1/metadata``'s ``model`` is the file ``rl serve`` was given (a checkpoint's
export on the driver, as with the embedded server); its counters and ``pid`` are the
answering replica's.

``serve_on_ray`` joins ``address``'s cluster or starts a local Ray, starts Serve's HTTP
proxy on ``host:port``, deploys the app and blocks until SIGTERM or SIGINT (Ctrl-C); then
it deletes the application, shuts Serve down when no other application is left on it,
shuts down the Ray it started and returns 0, as the embedded server exits 0 after either.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["APP_NAME", "ServeBatcher", "serve_on_ray"]

APP_NAME = "rl-serve"
"""The Ray Serve application (and deployment) name ``rl serve --backend ray`` uses."""


class ServeBatcher:
    """``rl.serve.server.Batcher``'s interface over Ray Serve's ``@serve.batch``.

    Every row of a request is one item of the batch queue, so ``max_batch`` counts
    observations, as the embedded ``Batcher`` does; the rows of one request may run in
    different graph calls.
    """

    def __init__(self, run, max_batch: int, max_wait_s: float):
        from ray import serve

        self.run = run
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="rl-serve-onnx")
        self.requests_received = self.requests_run = self.batches_run = self.rows_run = 0

        @serve.batch(max_batch_size=max_batch, batch_wait_timeout_s=max_wait_s)
        async def run_rows(rows: list[tuple[np.ndarray, ...]]) -> list[list[np.ndarray]]:
            # one item per observation: its row of every graph input (obs, then state)
            batch = [np.stack(parts) for parts in zip(*rows)]
            outputs = await asyncio.get_running_loop().run_in_executor(self.pool, self.run,
                                                                       batch)
            self.batches_run += 1
            self.rows_run += len(rows)
            return [[out[i] for out in outputs] for i in range(len(rows))]

        self._run_rows = run_rows

    def start(self) -> None:
        """Nothing to start: Ray Serve's queue starts with the first item."""

    async def stop(self) -> None:
        self.pool.shutdown(wait=True)

    async def submit(self, rows: list[np.ndarray]) -> list[np.ndarray]:
        """The outputs for ``rows`` (the graph's inputs, all of the same length),
        computed row by row in batches with other requests' rows."""
        self.requests_received += 1
        per_row = await asyncio.gather(*(self._run_rows(tuple(inp[i] for inp in rows))
                                         for i in range(len(rows[0]))))
        self.requests_run += 1
        return [np.stack(outs) for outs in zip(*per_row)]


def _builder(files: dict[str, bytes], options: dict, served_path: str):
    """The ASGI app builder a replica calls: writes the files, builds the app (whose
    ``/v1/metadata`` names ``served_path``, the driver's file, as its model)."""

    def build():
        import shutil
        import tempfile

        from rl.serve.server import create_app

        folder = tempfile.mkdtemp(prefix="rl-serve-replica-")
        try:
            for name, data in files.items():
                with open(os.path.join(folder, name), "wb") as f:
                    f.write(data)
            return create_app(os.path.join(folder, "policy.onnx"), batcher=ServeBatcher,
                              served_path=served_path, **options)
        finally:  # the app holds the session and the sidecar: the files have done their part
            shutil.rmtree(folder, ignore_errors=True)

    return build


def _application(model: str, options: dict, replicas: int):
    from ray import serve

    files = {}
    for name, path in (("policy.onnx", model), ("policy.onnx.json", model + ".json")):
        with open(path, "rb") as f:
            files[name] = f.read()
    # Ray Serve's default (5 requests in a replica at once) would cap every batch at 5
    # single-observation requests; let a replica hold several full batches.
    ongoing = max(256, 4 * options["max_batch"])
    deployment = serve.deployment(serve.ingress(_builder(files, options, os.path.abspath(model)))(), name=APP_NAME,
                                  num_replicas=replicas, max_ongoing_requests=ongoing)
    return deployment.bind()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def serve_on_ray(model: str, options: dict, *, host: str, port: int, replicas: int,
                 address: str | None) -> int:
    """Deploy the ONNX file ``model`` on Ray Serve and block; see the module docstring.

    Args:
        model: an exported ONNX file with its ``FILE.json`` sidecar.
        options: ``create_app``'s keyword arguments (``max_batch``, ``max_wait_ms``,
            ``token``, ``max_body_bytes``).
        host, port: where Serve's HTTP proxy listens.
        replicas: the deployment's number of replicas.
        address: a Ray cluster's address; ``None`` starts a local Ray (with at least one
            CPU per replica).

    Returns:
        0, once SIGTERM or SIGINT (Ctrl-C) stopped it.
    """
    import ray
    from ray import serve

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    started = not ray.is_initialized()
    try:
        if started and address:
            ray.init(address=address, log_to_driver=False)
        elif started:
            ray.init(address="local", num_cpus=max(_cores(), replicas),
                     include_dashboard=False, log_to_driver=False)
        # After ray.init: Ray's core installs its own SIGTERM handler (it aborts).
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            serve.start(http_options={"host": host, "port": port})
            if not stop.is_set():
                serve.run(_application(model, options, replicas), name=APP_NAME,
                          route_prefix="/")
                print(f"rl serve: serving {model} on http://{host}:{port} (Ray Serve, "
                      f"{replicas} replica{'s' * (replicas != 1)}); Ctrl-C or SIGTERM stops",
                      file=sys.stderr, flush=True)
            while not stop.wait(1.0):  # a timed wait: signals reach the main thread
                pass
        finally:
            _undeploy(serve)
            for s, handler in previous.items():
                signal.signal(s, handler)
    finally:
        if started:
            ray.shutdown()
    print("rl serve: stopped", file=sys.stderr, flush=True)
    return 0


def _undeploy(serve) -> None:
    """Delete rl serve's application; shut Serve down when nothing else runs on it."""
    try:
        serve.delete(APP_NAME)
        if not serve.status().applications:
            serve.shutdown()
    except Exception as e:  # the cluster may be gone already; nothing left to stop
        print(f"rl serve: stopping Ray Serve: {type(e).__name__}: {e}", file=sys.stderr)
