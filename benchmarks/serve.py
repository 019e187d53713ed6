"""``rl serve`` under load on loopback: the CartPole PPO policy, against Ray Serve.

One run: PPO trains one iteration on CartPole (normalize_obs), the policy is exported to
ONNX, then

* ``rl serve FILE`` starts in a subprocess; the time from its start to the first
  answered ``POST /v1/actions`` is reported;
* ``--requests`` single-observation requests (after a warm-up) at concurrency 1, 16 and
  64: requests/s, p50 and p99 latency and transport errors (a dropped connection:
  counted, not timed);
* the load generator is as cheap as it can be, so that on a small machine the server,
  not the client, sets the rates: every request is encoded to HTTP/1.1 bytes once
  before the clock runs, and ``concurrency`` persistent (kept-alive) connections are
  driven by bare asyncio streams (no HTTP client library, no JSON decoding of the
  answers: a status and ``{"actions":`` prefix check), in ``--client-procs`` processes
  of their own (1; the connections of a level split between them), started together;
* rl serve's CPU time per request, from ``/proc``, and the client processes';
* the same load, with the same client, against a Ray Serve deployment of the same ONNX
  file (onnxruntime in the replica, ``@serve.batch`` with rl serve's default 64 rows /
  2 ms) on Ray's HTTP proxy, when ``ray[serve]`` is installed; the ratio of requests/s
  at concurrency 16.

The machine's load average is printed before and after: the figures are only as quiet
as the machine.

    python benchmarks/serve.py [--requests 20000] [--concurrency 1 16 64]
                               [--client-procs P] [--quick] [--no-ray]

``--quick`` is a smoke run (500 requests at concurrency 1 and 16).

The full run (``--requests 20000 --client-procs 2``, 2026-12-08, the 2-core dev machine
otherwise idle: load average 1.7 before, 6.0 after with Ray's processes), ray 2.60.0,
one replica:

    first answer 0.66 s after rl serve started (an exported file)
    rl serve server CPU per request: 0.80 / 0.42 / 0.25 ms at concurrency 1 / 16 / 64
    server      conc    req/s   p50 ms   p99 ms  errors
    rl serve       1      326     3.01     4.23       0
    rl serve      16     2963     4.67    12.88       0
    rl serve      64     6326     8.99    31.66       0
    Ray Serve      1       84    11.50    20.39       0
    Ray Serve     16      199    78.59   139.41       0
    Ray Serve     64      241   261.81   426.94       0
    rl serve / Ray Serve requests/s at concurrency 16: 14.88x

An earlier smoke run (``--quick``) with this client, on 2 CPU cores shared with five
other jobs (load average 3.1 before, 3.6 after), uvicorn with uvloop + httptools, ray 2.60.0, one replica, one client process:

    first answer 0.72 s after rl serve started (an exported file)
    rl serve at concurrency 1: server CPU 0.61 ms/request, the client's 0.24 ms/request
    rl serve at concurrency 16: server CPU 0.43 ms/request, the client's 0.04 ms/request
    Ray Serve at concurrency 1: the client's 0.20 ms/request
    Ray Serve at concurrency 16: the client's 0.13 ms/request
    server      conc    req/s   p50 ms   p99 ms  errors
    rl serve       1      332     2.86     6.28       0
    rl serve      16     2122     6.71    34.11       0
    Ray Serve      1      103     9.18    13.83       0
    Ray Serve     16      253    55.31   150.93       0
    rl serve / Ray Serve requests/s at concurrency 16: 8.40x

``--quick --no-ray --client-procs 2``: rl serve 330 / 3,240 req/s at concurrency 1 / 16.
500 requests are too few for a steady p99. The earlier client (httpx ``AsyncClient``,
in the driver) spent 1.2 to 2.6 ms of CPU a request, three to four times the server's,
and measured rl serve at 250 to 350 req/s at concurrency 16 (1.4x to 1.9x Ray Serve):
the client's rate, not the server's. At concurrency 1, ``--max-wait-ms`` (2 ms) is most
of rl serve's latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

RAY_PORT = 18_400


def export_cartpole(folder: str) -> str:
    from rl import PPOConfig
    from rl.serve import export_policy

    config = PPOConfig().environment("CartPole-v1").env_runners(
        num_env_runners=0, num_envs_per_env_runner=4).resources(backend="inline") \
        .debugging(seed=0)
    config.normalize_obs = True
    algo = config.build()
    try:
        algo.train()
        path = os.path.join(folder, "cartpole.onnx")
        export_policy(algo, path, "onnx")
    finally:
        algo.stop()
    return path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_rl(path: str) -> tuple[subprocess.Popen, str, float]:
    """``rl serve``: the process, its URL, seconds from start to the first answer."""
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "rl.cli", "serve", path, "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with httpx.Client(base_url=url) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"rl serve exited {proc.returncode}")
            try:
                if client.post("/v1/actions", json={"obs": [0.0] * 4}).status_code == 200:
                    return proc, url + "/v1/actions", time.perf_counter() - start
            except httpx.TransportError:
                time.sleep(0.005)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_ray(path: str) -> str:
    """A Ray Serve deployment of the same ONNX file; its URL."""
    import ray
    from ray import serve

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": RAY_PORT})

    @serve.deployment(max_ongoing_requests=256)
    class OnnxPolicy:
        def __init__(self, model: str):
            import onnxruntime as ort

            self.session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])

        @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002)
        async def act(self, rows: list[list[float]]) -> list[int]:
            batch = np.asarray(rows, np.float32)
            return self.session.run(None, {"obs": batch})[0].tolist()

        async def __call__(self, request) -> dict:
            return {"actions": await self.act((await request.json())["obs"])}

    serve.run(OnnxPolicy.bind(path), route_prefix="/v1/actions")
    return f"http://127.0.0.1:{RAY_PORT}/v1/actions"


def request_bytes(url: str, obs: np.ndarray) -> list[bytes]:
    """One complete HTTP/1.1 POST per observation, encoded once before the clock runs."""
    rest = url.split("://", 1)[1]
    host, path = rest.split("/", 1)
    out = []
    for row in obs:
        body = json.dumps({"obs": row.tolist()}).encode()
        out.append(f"POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
                   f"application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                   + body)
    return out


async def exchange(reader, writer, data: bytes) -> tuple[int, bytes]:
    """Send one prepared request on a kept-alive connection; the status and body."""
    writer.write(data)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    headers = head.lower()
    at = headers.find(b"content-length:")
    if at >= 0:
        length = int(headers[at + 15:headers.index(b"\r\n", at)])
        return status, await reader.readexactly(length)
    body = b""  # chunked
    while (size := int((await reader.readuntil(b"\r\n"))[:-2], 16)) > 0:
        body += (await reader.readexactly(size + 2))[:-2]
    await reader.readuntil(b"\r\n")
    return status, body


async def run_connections(url: str, requests: int, connections: int,
                          data: list[bytes]) -> tuple[list[float], float, float, int]:
    """``requests`` POSTs over ``connections`` persistent connections (one asyncio task
    each, taking the next request as it is free): latencies, start and end (monotonic
    clock, comparable across processes) and transport errors (counted, not timed)."""
    host, port = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    latencies: list[float] = []
    errors = 0
    todo = iter(range(requests))

    async def connection():
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        for i in todo:
            t = time.monotonic()
            try:
                status, body = await exchange(reader, writer, data[i % len(data)])
            except (OSError, asyncio.IncompleteReadError):  # dropped: reconnect
                errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, int(port))
                continue
            latencies.append(time.monotonic() - t)
            if status != 200 or not body.startswith(b'{"actions":'):
                raise RuntimeError(f"{url}: {status} {body[:200]!r}")
        writer.close()

    start = time.monotonic()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return latencies, start, time.monotonic(), errors


def client_process(url: str, requests: int, warm: int, connections: int,
                   obs: np.ndarray, barrier, results) -> None:
    """One load-generator process: a warm-up, then (all processes together) its share."""
    try:
        data = request_bytes(url, obs)
        asyncio.run(run_connections(url, warm, connections, data))
        barrier.wait()
        cpu = time.process_time()
        latencies, start, end, errors = asyncio.run(run_connections(url, requests,
                                                                    connections, data))
        results.put((latencies, start, end, errors, time.process_time() - cpu, None))
    except BaseException as e:  # noqa: BLE001 - reported to the driver, which raises
        barrier.abort()
        results.put(([], 0.0, 0.0, 0, 0.0, f"{type(e).__name__}: {e}"))


def load(url: str, requests: int, concurrency: int, obs: np.ndarray,
         procs: int = 1) -> dict:
    """``requests`` POSTs over ``concurrency`` connections from ``procs`` client
    processes (after a warm-up): req/s, p50, p99, errors and the clients' CPU time."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs = max(1, min(procs, concurrency))
    conns = [concurrency // procs + (k < concurrency % procs) for k in range(procs)]
    share = [requests * c // concurrency for c in conns]
    share[0] += requests - sum(share)
    warm = [max(1, max(200, requests // 10) * c // concurrency) for c in conns]
    barrier, results = ctx.Barrier(procs), ctx.Queue()
    workers = [ctx.Process(target=client_process, args=(url, n, w, c, obs, barrier, results))
               for n, w, c in zip(share, warm, conns, strict=True)]
    for w in workers:
        w.start()
    got = [results.get() for _ in workers]
    for w in workers:
        w.join()
    failed = [g[5] for g in got if g[5]]
    if failed:
        raise RuntimeError(f"{url}: a client process failed: {failed[0]}")
    latencies = [x for g in got for x in g[0]]
    elapsed = max(g[2] for g in got) - min(g[1] for g in got)
    ms = np.asarray(latencies) * 1000
    return {"rps": len(latencies) / elapsed, "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)), "errors": sum(g[3] for g in got),
            "client_cpu_ms": sum(g[4] for g in got) / requests * 1000,
            "sent": requests + sum(warm)}


def measure(name: str, url: str, args, obs: np.ndarray, pid: int | None) -> dict[int, dict]:
    """Every concurrency level against ``url``; with ``pid`` (a local server process)
    its CPU time per request too."""
    rows = {}
    for c in args.concurrency:
        cpu = cpu_seconds(pid) if pid else None
        r = rows[c] = load(url, args.requests, c, obs, args.client_procs)
        server = "" if pid is None else \
            f"server CPU {(cpu_seconds(pid) - cpu) / r['sent'] * 1000:.2f} ms/request, "
        print(f"{name} at concurrency {c}: {server}the client's {r['client_cpu_ms']:.2f} "
              "ms/request", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--client-procs", type=int, default=1, metavar="P",
                   help="load-generator processes, the connections of a level split "
                   "between them (1)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 500 requests at "
                   "concurrency 1 and 16")
    p.add_argument("--no-ray", action="store_true", help="measure rl serve alone")
    args = p.parse_args()
    if args.quick:
        args.requests, args.concurrency = 500, [1, 16]
    print(f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    rng = np.random.default_rng(0)
    obs = rng.uniform(-0.2, 0.2, (1000, 4)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = export_cartpole(folder)
        proc, url, first = start_rl(path)
        results: dict[str, dict[int, dict]] = {}
        try:
            print(f"first answer {first:.2f} s after rl serve started (an exported file)")
            results["rl serve"] = measure("rl serve", url, args, obs, proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=60)
        print(f"rl serve exit status after SIGTERM: {rc}")
        if not args.no_ray:
            try:
                ray_url = start_ray(path)
            except ImportError as e:
                print(f"Ray Serve not measured: {e}")
            else:
                try:  # its replica is a Ray worker process: client CPU only
                    results["Ray Serve"] = measure("Ray Serve", ray_url, args, obs, None)
                finally:
                    import ray
                    from ray import serve

                    serve.shutdown()
                    ray.shutdown()
    print(f"{'server':<10} {'conc':>5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, rows in results.items():
        for c, r in rows.items():
            print(f"{name:<10} {c:>5} {r['rps']:>8.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} "
                  f"{r['errors']:>7}")
    if "Ray Serve" in results and 16 in results["Ray Serve"]:
        ratio = results["rl serve"][16]["rps"] / results["Ray Serve"][16]["rps"]
        print(f"rl serve / Ray Serve requests/s at concurrency 16: {ratio:.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
