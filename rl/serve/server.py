"""``rl serve``'s HTTP service: a Starlette app over one onnxruntime session.

Endpoints (JSON in, JSON out; errors are ``{"error": "..."}`` with a 4xx status):

* ``POST /v1/actions`` ``{"obs": ...}``: one observation -> ``{"actions": action}``,
  a list of them -> ``{"actions": [...]}``. A recurrent export also takes ``"state"``
  (missing: the initial state) and, with ``lstm_use_prev_reward``, ``"prev_reward"``,
  and answers ``{"actions": ..., "state": [...]}``: the state to send with the next
  observation of the same episode (``rl.serve.requests.StateCodec``).
* ``GET /healthz``: ``{"status": "ok"}`` (no token needed, for probes).
* ``GET /v1/metadata``: the sidecar's spaces, algorithm, checkpoint and input/output
  names, the serving rl version, and this process's batching counters
  (``requests_received`` valid requests, ``requests_run``, ``batches_run``,
  ``rows_run``) and ``torch_imported``; for a recurrent export also ``state`` (the
  sidecar's: each state tensor's names, shape, dtype and initial value).

Batching: each request is decoded and validated on its own (``rl.serve.requests``)
and only then joins an asyncio queue; ``Batcher`` takes the first waiting request,
gathers more until ``max_batch`` rows or ``max_wait_ms`` have passed, runs the graph
once (in a thread, so the event loop keeps accepting requests) and answers each
request's future with its own rows (of every input: a recurrent request's state rows
join the batch beside its observations, and its future gets its rows of every output). Bodies are read up to ``max_body_bytes`` and parsed
with ``json`` only: nothing received is ever unpickled. This module imports numpy,
onnxruntime and Starlette, never torch.

``create_app`` builds the app in-process (``rl serve --workers 1``); ``app_from_env``
is the factory uvicorn's worker processes import (``--workers N``), reading the same
options from ``RL_SERVE_OPTIONS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from rl.serve.requests import ObservationCodec, RequestError, StateCodec

__all__ = ["DEFAULT_MAX_BODY_BYTES", "OPTIONS_ENV", "Batcher", "Policy", "app_from_env",
           "create_app"]

DEFAULT_MAX_BODY_BYTES = 1 << 20
OPTIONS_ENV = "RL_SERVE_OPTIONS"


class Policy:
    """An exported ONNX file and its sidecar, ready to run batches.

    Raises:
        ValueError: the file or its ``FILE.json`` sidecar is missing or not a
            feed-forward ONNX export.
    """

    def __init__(self, path: str):
        sidecar = path + ".json"
        if not os.path.isfile(path):
            raise ValueError(f"{path}: no such file")
        if not os.path.isfile(sidecar):
            raise ValueError(f"{path} has no sidecar {sidecar}; serve a file written by "
                             "rl export --format onnx (or give the checkpoint)")
        with open(sidecar) as f:
            self.meta = json.load(f)
        if self.meta.get("format") != "onnx":
            raise ValueError(f"{path} is a {self.meta.get('format')} export; rl serve runs "
                             "ONNX files: rl export CHECKPOINT --format onnx -o FILE.onnx")
        self.state = StateCodec(self.meta) if self.meta.get("state") else None
        if self.state is None and len(self.meta["inputs"]) != 1:
            raise ValueError(f"{path} has inputs {[i['name'] for i in self.meta['inputs']]} "
                             "and no state in its sidecar; rl serve runs the graphs rl export "
                             "writes")
        import onnxruntime as ort

        self.path = os.path.abspath(path)
        self.codec = ObservationCodec(self.meta)
        self.input_names = [i["name"] for i in self.meta["inputs"]]
        # actions, then (recurrent) the state outputs
        self.output_names = ["actions"] + ([] if self.state is None else
                                           [t["output"] for t in self.state.tensors])
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The actions for a prepared batch of a feed-forward policy (the graph's first
        output)."""
        return self.run_inputs([batch])[0]

    def run_inputs(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """The actions (then, recurrent, the state outputs) for the graph's inputs in
        order (``obs``, then the state and ``prev_rewards``)."""
        return self.session.run(self.output_names, dict(zip(self.input_names, inputs)))


class Batcher:
    """Gathers validated requests into one graph call; see the module docstring."""

    def __init__(self, run, max_batch: int, max_wait_s: float):
        self.run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.queue: asyncio.Queue = asyncio.Queue()
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="rl-serve-onnx")
        self.requests_received = self.requests_run = self.batches_run = self.rows_run = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.pool.shutdown(wait=True)

    async def submit(self, rows: list[np.ndarray]) -> list[np.ndarray]:
        """The outputs for ``rows`` (the graph's inputs, all of the same length),
        computed in some batch with other requests' rows."""
        future = asyncio.get_running_loop().create_future()
        self.requests_received += 1
        await self.queue.put((rows, future))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        held = None  # a request that did not fit the last batch
        while True:
            first = held or await self.queue.get()
            held = None
            items, size = [first], len(first[0][0])
            deadline = loop.time() + self.max_wait_s
            while size < self.max_batch:
                try:
                    item = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self.queue.get(), left)
                    except TimeoutError:
                        break
                if size + len(item[0][0]) > self.max_batch:
                    held = item
                    break
                items.append(item)
                size += len(item[0][0])
            await self._run(loop, items)

    async def _run(self, loop, items) -> None:
        batch = items[0][0] if len(items) == 1 else \
            [np.concatenate(parts) for parts in zip(*(r for r, _ in items))]
        try:
            outputs = await loop.run_in_executor(self.pool, self.run, batch)
        except Exception as e:  # the graph failed on rows that passed validation
            for _, future in items:
                if not future.done():
                    future.set_exception(e)
            return
        self.batches_run += 1
        self.rows_run += len(batch[0])
        self.requests_run += len(items)
        start = 0
        for rows, future in items:
            stop = start + len(rows[0])
            if not future.done():  # its client may have gone
                future.set_result([out[start:stop] for out in outputs])
            start = stop


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise RequestError(413, f"the body is {int(length)} bytes; the limit is {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(body: bytes) -> Any:
    """The ``obs`` of a request body (see ``_parse_payload``)."""
    return _parse_payload(body)["obs"]


def _parse_payload(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise RequestError(400, f"the body is not JSON ({type(e).__name__}: "
                           f"{str(e)[:120]}); expected {{\"obs\": [...]}}") from None
    if not isinstance(payload, dict):
        raise RequestError(400, "the body must be a JSON object {\"obs\": [...]}")
    if "obs" not in payload:
        raise RequestError(400, "missing field 'obs'; expected {\"obs\": [...]} (one "
                           "observation or a list of them)")
    return payload


def create_app(model: str, *, max_batch: int = 64, max_wait_ms: float = 2.0,
               token: str | None = None,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               batcher: type[Batcher] = Batcher,
               served_path: str | None = None) -> Starlette:
    """The Starlette app serving the ONNX file ``model``; see the module docstring.

    ``served_path``: the file ``/v1/metadata`` names as ``model`` (default: ``model``'s
    absolute path); ``rl.serve.ray_serve`` gives the driver's file, as a replica loads a
    temporary copy.

    ``batcher`` gathers the validated requests into graph calls: built as
    ``batcher(run, max_batch, max_wait_s)`` when the app starts, with ``Batcher``'s
    ``start``, ``stop``, ``submit`` and counters (``rl.serve.ray_serve`` passes one over
    Ray Serve's ``@serve.batch``).

    Raises:
        ValueError: ``model`` is not a servable ONNX export, or a limit is not positive.
    """
    from rl import __version__

    if max_batch < 1 or max_wait_ms < 0 or max_body_bytes < 1:
        raise ValueError("max_batch and max_body_bytes must be positive and max_wait_ms "
                         "non-negative")
    policy = Policy(model)
    model_path = policy.path if served_path is None else os.path.abspath(served_path)
    state: dict[str, Batcher] = {}
    expected = None if token is None else f"Bearer {token}".encode()

    def authorised(request: Request) -> bool:
        if expected is None:
            return True
        return hmac.compare_digest(request.headers.get("authorization", "").encode(), expected)

    def unauthorised() -> JSONResponse:
        return _error(401, "missing or wrong token: send the header 'Authorization: Bearer "
                      "TOKEN' with the token rl serve was started with",
                      {"WWW-Authenticate": "Bearer"})

    async def actions(request: Request) -> JSONResponse:
        if not authorised(request):
            return unauthorised()
        try:
            payload = _parse_payload(await _read_body(request, max_body_bytes))
            rows, single = policy.codec.decode(payload["obs"])
            inputs = [rows]
            if policy.state is not None:
                inputs += policy.state.decode(payload.get("state"),
                                              payload.get("prev_reward"), len(rows), single)
            elif payload.get("state") is not None or payload.get("prev_reward") is not None:
                raise RequestError(422, "this policy is feed-forward: it takes no 'state' "
                                   "or 'prev_reward'; send {\"obs\": [...]}")
        except RequestError as e:
            return _error(e.status, e.message)
        out = await state["batcher"].submit(inputs)
        body = {"actions": out[0][0].tolist() if single else out[0].tolist()}
        if policy.state is not None:
            body["state"] = policy.state.encode(out[1:], single)
        return JSONResponse(body)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def metadata(request: Request) -> JSONResponse:
        if not authorised(request):
            return unauthorised()
        m, b = policy.meta, state["batcher"]
        return JSONResponse({
            "model": model_path, "algorithm": m["algorithm"], "env": m.get("env"),
            "checkpoint": m.get("checkpoint"), "rl_version": __version__,
            "exported_with_rl_version": m.get("rl_version"), "stochastic": m.get("stochastic"),
            "observation_space": m["observation_space"], "action_space": m["action_space"],
            "observation_layout": m.get("observation_layout"),
            "inputs": m["inputs"], "outputs": m["outputs"],
            "max_batch": max_batch, "max_wait_ms": max_wait_ms,
            "max_body_bytes": max_body_bytes, "pid": os.getpid(),
            "requests_received": b.requests_received, "requests_run": b.requests_run, "batches_run": b.batches_run,
            "rows_run": b.rows_run, "torch_imported": "torch" in sys.modules,
            **({} if policy.state is None else {"state": m["state"]})})

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}; "
                      "endpoints: POST /v1/actions, GET /healthz, GET /v1/metadata")

    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"{type(exc).__name__}: {exc}")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        gatherer = batcher(policy.run_inputs, max_batch, max_wait_ms / 1000)
        gatherer.start()
        state["batcher"] = gatherer
        try:
            yield
        finally:
            await gatherer.stop()

    return Starlette(routes=[Route("/v1/actions", actions, methods=["POST"]),
                             Route("/healthz", healthz, methods=["GET"]),
                             Route("/v1/metadata", metadata, methods=["GET"])],
                     exception_handlers={HTTPException: http_error, Exception: server_error},
                     lifespan=lifespan)


def app_from_env() -> Starlette:
    """``create_app`` with the options ``rl serve`` put in ``RL_SERVE_OPTIONS`` (JSON)."""
    options = json.loads(os.environ[OPTIONS_ENV])
    return create_app(options.pop("model"), **options)
