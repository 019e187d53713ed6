"""Runtime micro-benchmarks: call latency, large-result bandwidth, weight broadcast.

Prints, for the process backend and, when ``import ray`` works, rl's Ray backend (and a
plain Ray actor, the floor under it):

- the median round trip of an empty actor call;
- the bandwidth of a 64 MiB numpy result travelling actor -> driver (``get`` returns a
  usable array; ``+ read`` also touches every byte once on the driver);
- the time to broadcast a 1M-float vector to 2 reader actors through a weights board
  (publish, then both readers poll and hold a copy);
- the latencies tests/runtime/test_runtime.py checks only as behaviour: how far a
  ``get(timeout=0.2)`` overshoots, a ``wait(timeout=0)`` with a call pending, from
  SIGKILL to ``ActorDiedError`` on a pending ``get``, from ``spawn`` to the first answer
  while another thread blocks in ``get``, and ``shutdown()`` with calls in flight;
- the floor under any process actor's round trip on this machine: a raw 20-byte
  ping-pong over a socketpair with a bare Python child (two process wake-ups, no
  pickling, no runtime), measured in the same run.

Run: ``.venv/bin/python benchmarks/runtime.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

from rl.runtime import ActorDiedError, make_runtime

MIB = 1 << 20


class Echo:
    """The benchmark actor."""

    def __init__(self, result_mib: int = 0):
        self.result = np.ones(result_mib * MIB // 8) if result_mib else None
        self.version = 0
        self.weights = None

    def ping(self) -> None:
        return None

    def pid(self) -> int:
        return os.getpid()

    def nap(self, seconds: float) -> None:
        time.sleep(seconds)

    def big(self) -> np.ndarray:
        return self.result

    def sync(self, reader) -> int:
        version, weights = reader.poll(self.version)
        if weights is not None:
            self.version, self.weights = version, weights
        return self.version


def _median_us(fn, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def bench_backend(backend: str, args) -> dict[str, float]:
    """The three figures for one backend of ``make_runtime``."""
    out = {}
    with make_runtime(backend) as rt:
        h = rt.spawn(Echo, 64)
        rt.get(h.call("ping"))
        for _ in range(200):  # warm up both processes
            rt.get(h.call("ping"))
        out["rtt_us"] = _median_us(lambda: rt.get(h.call("ping")), args.calls)

        def big_get():
            return rt.get(h.call("big"))

        big_get()
        gbps, gbps_read = [], []
        for _ in range(args.reps):
            start = time.perf_counter()
            arr = big_get()
            got = time.perf_counter()
            arr.sum()
            read = time.perf_counter()
            gbps.append(arr.nbytes / (got - start) / 1e9)
            gbps_read.append(arr.nbytes / (read - start) / 1e9)
            del arr
        out["result_gb_s"] = statistics.median(gbps)
        out["result_read_gb_s"] = statistics.median(gbps_read)

        size = 1_000_000
        board = rt.weights_board(size)
        reader = board.reader()
        # Half a CPU each: idle between polls, and all three fit a 2-CPU local Ray.
        readers = [rt.spawn(Echo, num_cpus=0.5) for _ in range(2)]
        rt.get([r.call("sync", reader) for r in readers])
        vectors = [np.full(size, i, np.float32) for i in range(2)]
        publish_s, total_s = [], []
        for i in range(args.reps * 4):
            start = time.perf_counter()
            version = board.publish(vectors[i % 2])
            published = time.perf_counter()
            assert rt.get([r.call("sync", reader) for r in readers]) == [version] * 2
            total_s.append(time.perf_counter() - start)
            publish_s.append(published - start)
        out["broadcast_ms"] = statistics.median(total_s) * 1e3
        out["publish_ms"] = statistics.median(publish_s) * 1e3
    return out


def bench_failure_paths(backend: str) -> dict[str, float]:
    """Milliseconds for the timeouts, death detection, spawn and shutdown paths."""
    out = {}
    rt = make_runtime(backend)
    try:
        h = rt.spawn(Echo)
        pid = rt.get(h.call("pid"))
        ref = h.call("nap", 30)
        start = time.perf_counter()
        try:
            rt.get(ref, timeout=0.2)
        except TimeoutError:
            out["get_timeout_overshoot_ms"] = (time.perf_counter() - start - 0.2) * 1e3
        start = time.perf_counter()
        rt.wait([ref], timeout=0)
        out["wait_0_ms"] = (time.perf_counter() - start) * 1e3
        def blocked_get():  # ends with the actor's death below
            try:
                rt.get(ref, timeout=60)
            except ActorDiedError:
                pass

        blocked = threading.Thread(target=blocked_get, daemon=True)
        blocked.start()
        start = time.perf_counter()
        second = rt.spawn(Echo)
        rt.get(second.call("ping"))
        out["spawn_while_waiting_ms"] = (time.perf_counter() - start) * 1e3
        os.kill(pid, signal.SIGKILL)
        start = time.perf_counter()
        try:
            rt.get(ref, timeout=60)
        except ActorDiedError:
            out["death_noticed_ms"] = (time.perf_counter() - start) * 1e3
        blocked.join(60)
        second.call("nap", 30)
        start = time.perf_counter()
    finally:
        rt.shutdown()
    out["shutdown_in_flight_ms"] = (time.perf_counter() - start) * 1e3
    return out


def print_failure_paths(name: str, out: dict[str, float]) -> None:
    print(f"{name:<8} " + "  ".join(f"{k} {v:.1f}" for k, v in out.items()))


def bench_plain_ray(args) -> float:
    """Median round trip of an empty call to a plain Ray actor, in microseconds."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING")
    try:
        h = ray.remote(Echo).remote()
        for _ in range(200):
            ray.get(h.ping.remote())
        return _median_us(lambda: ray.get(h.ping.remote()), args.calls)
    finally:
        ray.shutdown()


_ECHO_CHILD = """
import socket, sys
s = socket.socket(fileno=int(sys.argv[1]))
while (data := s.recv(64)):
    s.send(data)
"""


def bench_socket_floor(args) -> float:
    """Median round trip of a raw socketpair ping-pong with a bare Python child."""
    mine, theirs = socket.socketpair()
    child = subprocess.Popen([sys.executable, "-c", _ECHO_CHILD, str(theirs.fileno())],
                             pass_fds=(theirs.fileno(),))
    theirs.close()
    try:
        def ping():
            mine.send(b"x" * 20)
            mine.recv(64)

        ping()
        return statistics.median(_median_us(ping, args.calls) for _ in range(args.reps))
    finally:
        mine.close()
        child.wait(timeout=10)


def ray_installed() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def print_backend(name: str, out: dict[str, float], base: dict[str, float] | None = None) -> None:
    vs = "" if base is None else f"   ({out['rtt_us'] / base['rtt_us']:.1f}x process)"
    print(f"{name:<8} empty call round trip  median {out['rtt_us']:8.1f} us{vs}")
    print(
        f"{name:<8} 64 MiB result -> driver        {out['result_gb_s']:8.2f} GB/s"
        f"   (+ read once: {out['result_read_gb_s']:.2f} GB/s)"
    )
    print(
        f"{name:<8} 1M-float broadcast to 2 readers {out['broadcast_ms']:7.2f} ms"
        f"   (publish alone: {out['publish_ms']:.2f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    args = parser.parse_args()
    args.calls, args.reps = (500, 3) if args.quick else (5000, 9)

    proc = bench_backend("process", args)
    print_backend("process", proc)
    print_failure_paths("process", bench_failure_paths("process"))
    floor = bench_socket_floor(args)
    print(f"raw socketpair ping-pong         median {floor:8.1f} us   (the floor under a "
          f"process actor's; process = {proc['rtt_us'] / floor:.2f}x it)")
    if not ray_installed():
        print("ray      not installed (pip install 'rl[ray]'); skipped")
        return
    print_backend("ray", bench_backend("ray", args), proc)
    print_failure_paths("ray", bench_failure_paths("ray"))
    plain = bench_plain_ray(args)
    print(f"plain Ray actor round trip       median {plain:8.1f} us   (the floor under rl's)")

if __name__ == "__main__":
    main()
