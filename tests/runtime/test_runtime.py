"""Behaviour of the runtime backends: every test runs on every backend where it applies.

``runtime`` is every backend (inline, process, ray); tests that need actors in processes
of their own (timeouts, signals, threads) use ``actor_runtime`` (process, ray); the
process backend's own machinery (shared memory, sockets, forkserver) uses
``process_runtime``. Ray-only behaviour is in ``test_ray.py``.
"""

from __future__ import annotations

import gc
import mmap
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from rl.runtime import (
    ActorDiedError,
    GetTimeoutError,
    RemoteError,
    make_runtime,
    shm,
)

REPO = Path(__file__).resolve().parents[2]


class Worker:
    """A module-level actor class (pickled by reference)."""

    def __init__(self, offset: int = 0):
        self.offset = offset
        self.log: list[int] = []

    def add(self, x):
        return x + self.offset

    def append(self, i: int) -> int:
        self.log.append(i)
        return len(self.log)

    def history(self) -> list[int]:
        return list(self.log)

    def echo(self, x):
        return x

    def boom(self, message: str):
        raise ValueError(message)

    def sleep(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    def block(self, path: str, value=None):
        """Answer only once ``path`` exists (the test's release; no timing involved)."""
        while not os.path.exists(path):
            time.sleep(0.01)
        return value

    def pid(self) -> int:
        return os.getpid()

    def backing(self, x) -> dict:
        """How each array in ``x`` reached the actor."""
        return {k: type(v.base).__name__ for k, v in x.items()}

    def writable(self, x: np.ndarray) -> bool:
        return x.flags.writeable

    def ident(self, x) -> int:
        return id(x)

    def total(self, x) -> float:
        return float(np.sum(x["w"])) + x["bias"]

    def put_cache_size(self) -> int:
        from rl.runtime import wire

        return len(wire.PUT_CACHE)

    def unpicklable(self):
        return threading.Lock()

    def orphan_segment_then_die(self, prefix: str) -> None:
        """Create a segment as if to send it, then die before sending."""
        shm.export_array(np.ones(1 << 16), prefix)
        os._exit(3)

    def process_facts(self) -> dict:
        import multiprocessing

        import torch

        with open(f"/proc/{os.getpid()}/comm") as f:
            comm = f.read().strip()
        return {
            "comm": comm,
            "mp_name": multiprocessing.current_process().name,
            "torch_threads": torch.get_num_threads(),
            "sigint": signal.getsignal(signal.SIGINT),
        }

    def poll_board(self, reader, last: int):
        return reader.poll(last)


# ---------------------------------------------------------------------- both backends


def test_call_get_keeps_order(runtime):
    h = runtime.spawn(Worker, 10)
    refs = [h.call("append", i) for i in range(50)]
    assert runtime.get(refs) == list(range(1, 51))
    assert runtime.get(h.call("history")) == list(range(50))
    assert runtime.get(h.call("add", 5)) == 15
    assert runtime.get(h.call("add", x=1)) == 11


def test_names_and_resources_are_recorded(runtime):
    a = runtime.spawn(Worker)
    b = runtime.spawn(Worker, num_cpus=2, num_gpus=0, name="learner", resources={"x": 1})

    class Other:
        pass

    c, d = runtime.spawn(Other), runtime.spawn(Worker)
    assert (a.name, c.name, d.name) == ("Worker-1", "Other-1", "Worker-2")
    assert b.name == "learner"
    assert (b.num_cpus, b.num_gpus, b.resources) == (2, 0, {"x": 1})


def test_remote_error_carries_traceback_and_actor_stays_usable(runtime):
    h = runtime.spawn(Worker)
    with pytest.raises(RemoteError) as info:
        runtime.get(h.call("boom", "bad input 42"))
    err = info.value
    assert err.actor_name == h.name
    assert err.remote_type == "ValueError"
    assert "bad input 42" in err.message
    assert "in boom" in err.remote_traceback  # the remote frame, not ours
    assert isinstance(err.__cause__, ValueError)
    assert runtime.get(h.call("add", 1)) == 1


def test_constructor_error_surfaces_on_get(runtime):
    class Broken:
        def __init__(self):
            raise RuntimeError("no config")

        def ping(self):
            return "pong"

    h = runtime.spawn(Broken)
    for _ in range(2):
        with pytest.raises(RemoteError, match="constructing Broken failed: no config") as info:
            runtime.get(h.call("ping"))
        assert "__init__" in info.value.remote_traceback


def test_local_classes_closures_and_lambdas(runtime):
    scale = 3

    class Local:  # defined inside the test, like a class in a __main__ script
        def __init__(self, fn):
            self.fn = fn

        def apply(self, x):
            return self.fn(x) * scale

        def make_adder(self, k):
            return lambda v: v + k

    h = runtime.spawn(Local, lambda x: x + 1)
    assert runtime.get(h.call("apply", 1)) == 6
    adder = runtime.get(h.call("make_adder", 10))
    assert adder(5) == 15


def test_large_arrays_nested_round_trip(runtime):
    h = runtime.spawn(Worker)
    rng = np.random.default_rng(0)
    big = rng.standard_normal((512, 300)).astype(np.float32)  # 600 KiB
    batch = {
        "obs": big,
        "nested": [big[:, :7].T, (np.arange(200_000, dtype=np.int64), "tag")],
        "small": np.arange(3),
        "records": np.zeros(70_000, dtype=[("a", "<f4"), ("b", "<i2")]),
    }
    out = runtime.get(h.call("echo", batch))
    np.testing.assert_array_equal(out["obs"], big)
    np.testing.assert_array_equal(out["nested"][0], big[:, :7].T)
    np.testing.assert_array_equal(out["nested"][1][0], np.arange(200_000))
    assert out["nested"][1][1] == "tag"
    assert out["records"].dtype == batch["records"].dtype
    np.testing.assert_array_equal(out["small"], np.arange(3))
    if runtime.name == "ray":
        assert not out["obs"].flags.writeable  # a zero-copy view of Ray's object store
    else:
        out["obs"][0, 0] = 1.0  # results are the caller's to modify


def test_put_is_resolved_in_every_actor(runtime):
    w = np.arange(100_000, dtype=np.float64)
    ref = runtime.put({"w": w, "bias": 0.5})
    actors = [runtime.spawn(Worker) for _ in range(3)]
    totals = runtime.get([a.call("total", ref) for a in actors])
    assert totals == [float(w.sum()) + 0.5] * 3
    if runtime.name == "ray":
        # Each call resolves the ref to a view of the node's one stored copy.
        assert not runtime.get(actors[0].call("writable", runtime.put(w)))
    else:
        # The same ref again is the actor's cached value, not a new copy.
        assert len(set(runtime.get([actors[0].call("ident", ref) for _ in range(3)]))) == 1
    nested = runtime.get(actors[1].call("echo", {"inside": [ref]}))
    np.testing.assert_array_equal(nested["inside"][0]["w"], w)
    np.testing.assert_array_equal(runtime.get(ref)["w"], w)


def test_call_ref_as_argument_is_refused(runtime):
    h = runtime.spawn(Worker)
    ref = h.call("add", 1)
    with pytest.raises(TypeError, match="rt.get"):
        runtime.get(h.call("echo", ref))


def test_wait_returns_ready_in_input_order(runtime):
    h = runtime.spawn(Worker)
    refs = [h.call("add", i) for i in range(4)]
    runtime.get(refs)
    ready, pending = runtime.wait(refs, num_returns=2, timeout=5)
    assert ready == refs[:2] and pending == refs[2:]
    ready, pending = runtime.wait(refs, num_returns=4, timeout=0)
    assert ready == refs and pending == []
    with pytest.raises(ValueError, match="num_returns"):
        runtime.wait(refs, num_returns=5)


def test_kill_makes_later_gets_fail(runtime):
    h = runtime.spawn(Worker)
    done = h.call("add", 1)
    assert runtime.get(done) == 1
    assert h.is_alive()
    h.kill()
    h.kill()  # idempotent
    assert not h.is_alive()
    with pytest.raises(ActorDiedError) as info:
        runtime.get(h.call("add", 1))
    assert info.value.actor_name == h.name
    assert runtime.get(done) == 1  # an answer already received stays


def test_weights_board_publish_and_poll(runtime):
    board = runtime.weights_board(1000)
    h = runtime.spawn(Worker)
    reader = board.reader()
    assert runtime.get(h.call("poll_board", reader, 0)) == (0, None)
    assert board.publish(np.full(1000, 7.0, np.float32)) == 1
    version, vec = runtime.get(h.call("poll_board", reader, 0))
    assert version == 1 and vec.shape == (1000,) and np.all(vec == 7.0)
    assert runtime.get(h.call("poll_board", reader, 1)) == (1, None)
    board.publish(np.arange(1000, dtype=np.float32))
    version, vec = runtime.get(h.call("poll_board", reader, 1))
    assert version == 2 == board.version
    np.testing.assert_array_equal(vec, np.arange(1000))
    with pytest.raises(ValueError, match="1000 values"):
        board.publish(np.zeros(10, np.float32))
    # A restored run continues its saved numbering: readers see the jump as new.
    assert board.publish(np.full(1000, 3.0, np.float32), version=10) == 10 == board.version
    version, vec = runtime.get(h.call("poll_board", reader, 2))
    assert version == 10 and np.all(vec == 3.0)
    with pytest.raises(ValueError, match="not newer than the board's 10"):
        board.publish(np.zeros(1000, np.float32), version=10)
    assert board.publish(np.zeros(1000, np.float32)) == 11


# ---------------------------------------------------------------------- process only


def test_large_arrays_travel_through_shared_memory(process_runtime):
    rt = process_runtime
    h = rt.spawn(Worker)
    big = np.ones(1 << 17)  # 1 MiB
    backing = rt.get(h.call("backing", {"big": big, "small": np.ones(8)}))
    assert backing["big"] == "mmap" and backing["small"] != "mmap"
    out = rt.get(h.call("echo", big))
    assert isinstance(out.base, mmap.mmap) and out.flags.writeable
    assert not rt.get(h.call("writable", rt.put(big)))  # put values are shared: read-only
    assert shm.list_segments(rt.prefix) == []  # receivers unlinked what they mapped


def test_put_segments_are_freed_with_the_ref(process_runtime):
    rt = process_runtime
    h = rt.spawn(Worker)
    ref = rt.put({"w": np.ones(1 << 17), "bias": 1.0})
    assert rt.get(h.call("total", ref)) == float(1 << 17) + 1.0
    assert len(shm.list_segments(rt.prefix)) == 1  # the driver owns the put's segment
    assert rt.get(h.call("put_cache_size")) == 1
    del ref
    gc.collect()
    assert rt.get(h.call("put_cache_size")) == 0  # the next call told the actor
    assert shm.list_segments(rt.prefix) == []


def _explode():
    raise RuntimeError("cannot be rebuilt here")


class Bomb:
    """Pickles fine, fails to unpickle."""

    def __reduce__(self):
        return _explode, ()


def test_arguments_that_fail_to_unpickle_in_the_actor(actor_runtime):
    rt = actor_runtime
    h = rt.spawn(Worker)
    with pytest.raises(RemoteError, match="cannot be rebuilt here"):
        rt.get(h.call("echo", Bomb()))
    assert rt.get(h.call("add", 4)) == 4
    broken = rt.spawn(Worker, Bomb())
    with pytest.raises(RemoteError, match="unpickling the actor's class or arguments failed"):
        rt.get(broken.call("add", 1))


def test_unpicklable_result_is_a_remote_error(actor_runtime):
    h = actor_runtime.spawn(Worker)
    with pytest.raises(RemoteError, match="could not be pickled|cannot pickle"):
        actor_runtime.get(h.call("unpicklable"))
    assert actor_runtime.get(h.call("add", 2)) == 2


def test_many_calls_without_reading_do_not_deadlock(process_runtime):
    # Enough unread calls and answers to fill both socket buffers several times over.
    h = process_runtime.spawn(Worker)
    refs = [h.call("add", i) for i in range(5000)]
    assert process_runtime.get(refs, timeout=20) == list(range(5000))


def test_get_timeout(actor_runtime, tmp_path):
    # How long the timeout overshoots is measured in benchmarks/runtime.py.
    h = actor_runtime.spawn(Worker)
    actor_runtime.get(h.call("add", 0), timeout=30)  # started
    release = str(tmp_path / "release")
    ref = h.call("block", release, 1.0)
    with pytest.raises(GetTimeoutError):
        actor_runtime.get(ref, timeout=0.2)  # only the timeout can end this get
    assert isinstance(GetTimeoutError(), TimeoutError)
    assert actor_runtime.wait([ref], timeout=0) == ([], [ref])  # still running
    open(release, "w").close()
    assert actor_runtime.get(ref, timeout=30) == 1.0


def test_wait_semantics_with_slow_calls(actor_runtime, tmp_path):
    # The slow call answers only when the test releases it, so each wait below that
    # returns with it pending returned on its timeout (latencies: benchmarks/runtime.py).
    rt = actor_runtime
    slow, fast = rt.spawn(Worker), rt.spawn(Worker)
    rt.get([slow.call("add", 0), fast.call("add", 0)], timeout=30)  # both started
    release = str(tmp_path / "release")
    fast_release = str(tmp_path / "fast_release")
    refs = [slow.call("block", release), fast.call("sleep", 0.0), fast.call("block", fast_release)]
    ready, pending = rt.wait(refs, num_returns=1, timeout=30)
    assert ready == [refs[1]] and pending == [refs[0], refs[2]]
    assert rt.wait(refs, num_returns=2, timeout=0.1) == ([refs[1]], [refs[0], refs[2]])
    open(fast_release, "w").close()
    ready, pending = rt.wait(refs, num_returns=2, timeout=30)
    assert ready == refs[1:] and pending == [refs[0]]
    ready, pending = rt.wait(refs, num_returns=3, timeout=0)
    assert ready == refs[1:] and pending == [refs[0]]
    ready, pending = rt.wait(refs, num_returns=3, timeout=0.1)
    assert len(ready) == 2
    open(release, "w").close()
    ready, _ = rt.wait(refs, num_returns=3)
    assert ready == refs


def test_sigkill_fails_pending_and_later_gets(actor_runtime, tmp_path):
    # The pending call never answers by itself and each get has a timeout: only the
    # death being noticed can raise ActorDiedError (how fast: benchmarks/runtime.py).
    rt = actor_runtime
    h = rt.spawn(Worker)
    pid = rt.get(h.call("pid"), timeout=30)
    pending = [h.call("block", str(tmp_path / "never")), h.call("add", 1)]
    killer = threading.Timer(0.2, os.kill, (pid, signal.SIGKILL))
    killer.start()
    for ref in pending:
        with pytest.raises(ActorDiedError) as info:
            rt.get(ref, timeout=60)
        if rt.name == "process":
            assert info.value.exitcode == -signal.SIGKILL
        else:  # Ray reports no exit code; its exit report names the process
            assert f"pid {pid}" in str(info.value)
        assert h.name in str(info.value)
    with pytest.raises(ActorDiedError):
        rt.get(h.call("add", 1), timeout=1)
    assert not h.is_alive()


def test_gets_from_many_threads(actor_runtime):
    rt = actor_runtime
    slow, fast = rt.spawn(Worker), rt.spawn(Worker, 1)
    rt.get([slow.call("add", 0), fast.call("add", 0)], timeout=30)  # both started
    slow_ref = slow.call("sleep", 0.3)
    results: dict[str, object] = {}

    def learner():  # blocks on a slow ref while the main thread pumps fast ones
        results["slow"] = rt.get(slow_ref)

    def sampler(k: int):
        results[f"s{k}"] = [rt.get(fast.call("add", i)) for i in range(200)]

    threads = [threading.Thread(target=learner)] + [
        threading.Thread(target=sampler, args=(k,)) for k in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results["slow"] == 0.3
    for k in range(3):
        assert results[f"s{k}"] == [i + 1 for i in range(200)]


def test_spawn_while_another_thread_waits(actor_runtime, tmp_path):
    rt = actor_runtime
    first = rt.spawn(Worker)
    release = str(tmp_path / "release")
    blocker = first.call("block", release, "first")
    entering, results = threading.Event(), []

    def waiter_get():
        entering.set()
        results.append(rt.get(blocker, timeout=60))

    waiter = threading.Thread(target=waiter_get)
    waiter.start()
    assert entering.wait(30)
    second = rt.spawn(Worker, 7)  # the waiting thread must start polling this actor too
    # The new actor answers while the other thread is still blocked in its get.
    assert rt.get(second.call("add", 0), timeout=60) == 7
    assert waiter.is_alive() and results == []
    open(release, "w").close()
    waiter.join(30)
    assert results == ["first"]


def test_shutdown_with_calls_in_flight(actor_runtime, wait_gone, tmp_path):
    # The stuck calls never answer: shutdown returns only by stopping the actors
    # (how long it takes: benchmarks/runtime.py).
    rt = actor_runtime
    actors = [rt.spawn(Worker) for _ in range(2)]
    pids = rt.get([a.call("pid") for a in actors], timeout=30)
    quick = actors[0].call("sleep", 0.1)
    stuck = [a.call("block", str(tmp_path / "never")) for a in actors]
    errors, entering = [], threading.Event()

    def blocked_get():  # a thread pumping in get() while shutdown takes over
        entering.set()
        try:
            rt.get(stuck[1], timeout=120)
        except ActorDiedError as exc:
            errors.append(exc)

    waiter = threading.Thread(target=blocked_get)
    waiter.start()
    assert entering.wait(30)
    rt.shutdown()
    waiter.join(30)
    assert len(errors) == 1 and "shut down" in str(errors[0])
    assert rt.get(quick) == 0.1  # queued before the stop sentinel: answered
    for ref in stuck:
        with pytest.raises(ActorDiedError):
            rt.get(ref)
    assert wait_gone(pids, 5.0) == []
    if rt.name == "process":
        assert shm.list_segments(rt.prefix) == []
    with pytest.raises(ActorDiedError):
        rt.get(actors[0].call("add", 1))


def test_actor_crash_leaves_no_segment(process_runtime):
    rt = process_runtime
    h = rt.spawn(Worker)
    with pytest.raises(ActorDiedError) as info:
        rt.get(h.call("orphan_segment_then_die", rt.prefix), timeout=5)
    assert info.value.exitcode == 3
    assert shm.list_segments(rt.prefix) == []


def test_spawn_start_method():
    with make_runtime("process", start_method="spawn") as rt:
        h = rt.spawn(Worker, 1)
        assert rt.get(h.call("add", np.ones(1 << 15)), timeout=30).sum() == 2 << 15
        os.kill(h.pid, signal.SIGKILL)
        with pytest.raises(ActorDiedError) as info:
            rt.get(h.call("add", 1), timeout=5)
        assert info.value.exitcode == -signal.SIGKILL
    assert shm.list_segments(rt.prefix) == []
    with pytest.raises(ValueError, match="fork"):
        make_runtime("process", start_method="fork")


def test_child_process_hygiene(actor_runtime):
    rt = actor_runtime
    h = rt.spawn(Worker, name="Probe-1")
    facts = rt.get(h.call("process_facts"), timeout=30)
    if rt.name == "process":  # Ray titles its workers itself (ray::<class>.<method>)
        assert facts["comm"] == "rl:Probe-1"
    assert facts["mp_name"] == "Probe-1"
    assert facts["torch_threads"] == 1
    assert facts["sigint"] == signal.SIG_IGN
    os.kill(rt.get(h.call("pid")), signal.SIGINT)  # the driver handles Ctrl-C, not actors
    assert rt.get(h.call("add", 3), timeout=5) == 3


def test_weights_board_is_never_torn():
    size = 1 << 18  # 1 MiB vectors: a copy takes long enough to be caught mid-write

    class Writer:
        def __init__(self, prefix):
            self.board = shm.ShmWeightsBoard(size, prefix=prefix)

        def reader(self):
            return self.board.reader()

        def run(self, seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                self.board.publish(np.full(size, self.board.version + 1, np.float32))
            return self.board.version

    class Reader:
        def run(self, reader, seconds):
            last, reads, torn, backwards = 0, 0, 0, 0
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                version, vec = reader.poll(last)
                if vec is None:
                    continue
                reads += 1
                torn += int(vec.min() != vec.max() or vec[0] != version)
                backwards += int(version <= last)
                last = version
            return {"reads": reads, "torn": torn, "backwards": backwards, "last": last}

    with make_runtime("process") as rt:
        writer = rt.spawn(Writer, rt.prefix)
        reader = rt.get(writer.call("reader"))
        readers = [rt.spawn(Reader) for _ in range(2)]
        rt.get([r.call("run", reader, 0) for r in readers])  # both are up
        results = [r.call("run", reader, 1.5) for r in readers]
        final = rt.get(writer.call("run", 1.0), timeout=30)
        for stats in rt.get(results, timeout=30):
            assert stats["torn"] == 0 and stats["backwards"] == 0, stats
            assert stats["reads"] >= 10, stats  # they did race the writer
            assert stats["last"] <= final
    assert shm.list_segments(rt.prefix) == []  # the actor-owned board went with the session


# ------------------------------------------------------------- driver death, Ctrl-C

DRIVER = textwrap.dedent(
    """
    import os, time
    import numpy as np
    from rl.runtime import make_runtime

    class Napper:
        def pid(self):
            return os.getpid()

        def nap(self, seconds):
            time.sleep(seconds)

        def big(self):
            return np.ones(1 << 20)

    rt = make_runtime("process", shutdown_timeout=0.5)
    actors = [rt.spawn(Napper) for _ in range(2)]
    pids = rt.get([a.call("pid") for a in actors])
    keep = rt.put(np.ones(1 << 18))   # a driver-owned segment
    board = rt.weights_board(1 << 16)
    unread = actors[0].call("big")    # a result segment nobody reads
    for a in actors:
        a.call("nap", 60)
    time.sleep(0.3)
    print(os.getpid(), *pids, flush=True)
    time.sleep(60)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_driver_death_takes_actors_and_segments(sig, pid_alive, wait_gone):
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = driver.stdout.readline()
        assert line, driver.stderr.read()
        driver_pid, *actor_pids = map(int, line.split())
        prefix = shm.driver_prefix(driver_pid)
        assert len(shm.list_segments(prefix)) >= 3
        assert all(pid_alive(p) for p in actor_pids)
        os.kill(driver_pid, sig)
        driver.wait(10)
        assert wait_gone(actor_pids, 5.0) == []
        assert shm.list_segments(prefix) == []
    finally:
        driver.kill()
        driver.wait()


# ------------------------------------------------------------- drivers without a main guard

UNGUARDED_DRIVER = textwrap.dedent(
    """
    from rl.runtime import make_runtime

    class Scaler:
        def __init__(self, k):
            self.k = k

        def apply(self, fn, x):
            return fn(x) * self.k

    def triple(x):
        return 3 * x

    print("driver body", flush=True)
    for method in ("forkserver", "spawn"):
        with make_runtime("process", start_method=method) as rt:
            actor = rt.spawn(Scaler, 2)
            print(method, rt.get(actor.call("apply", triple, 1), timeout=60), flush=True)
    """
)


@pytest.mark.parametrize("how", ["stdin", "script"])
def test_drivers_need_no_main_guard(how, tmp_path):
    """Actors never import the driver's __main__: stdin and unguarded scripts work."""
    if how == "stdin":
        cmd, stdin = [sys.executable, "-"], UNGUARDED_DRIVER
    else:
        script = tmp_path / "driver.py"
        script.write_text(UNGUARDED_DRIVER)
        cmd, stdin = [sys.executable, str(script)], None
    out = subprocess.run(cmd, input=stdin, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # The body ran once: no child re-ran the script.
    assert out.stdout.splitlines() == ["driver body", "forkserver 6", "spawn 6"], out.stderr


def test_a_stale_pump_mark_of_this_thread_does_not_block_it(process_runtime):
    """Ctrl-C right after a pump can leave the calling thread marked as the pumper."""
    rt = process_runtime
    h = rt.spawn(Worker)
    rt._pumper = threading.get_ident()  # what an exception between pump and reset leaves
    assert rt.get(h.call("add", 2), timeout=10) == 2
    rt._pumper = threading.get_ident()
    rt.shutdown()  # takes over at once instead of waiting for a pumper that is not there
