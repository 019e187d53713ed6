"""The actor process of the process runtime: how it is started, and the loop it runs.

Each actor is one OS process started by ``multiprocessing`` (``ForkServerActorProcess``
or ``SpawnActorProcess``), entering ``actor_main``::

    actor_main(conn, cfg)
      init_process: name rl:<name>, SIGINT ignored, one torch thread, a thread that
                    watches the driver's pidfd and exits (after sweeping the driver's
                    segments) the moment the driver dies, however it dies
      serve(conn):  recv frame ─▶ Init: construct the instance
                                  Call: run the method ─▶ Result | Failure ─▶ Outbox
                                  None (stop) or EOF: answer what is queued, return

The actor sends without blocking and keeps reading calls while its replies wait
(``Outbox``), so a driver that issues thousands of calls before reading any answer
cannot deadlock against it. Frames are ``rl.runtime.wire``'s.

**No main module in the actor.** ``multiprocessing`` normally makes every child import
the driver's ``__main__`` (by path or by module name) before it unpickles the process
object, which is why its documentation asks for an ``if __name__ == "__main__":``
guard. Actors do not need it: the process target lives in this module, and the classes,
functions and arguments a driver sends travel by value with cloudpickle when they come
from ``__main__``. So actor processes are launched with the main-module entries
removed from the preparation data, and a driver fed through stdin (``python -``), run
with ``python -c``, or a script without the guard all work. The launchers are the
standard library's own ``Popen._launch``, re-bound to a view of ``multiprocessing.spawn``
whose ``get_preparation_data`` leaves the main module out: nothing else changes, nothing
global is patched, and other users of ``multiprocessing`` in the same program are
untouched.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import select
import signal
import socket
import struct
import sys
import threading
import types
from collections import deque
from dataclasses import dataclass
from multiprocessing import popen_forkserver, popen_spawn_posix, spawn
from multiprocessing.context import ForkServerProcess, SpawnProcess
from multiprocessing.process import BaseProcess
from typing import Any

from rl.runtime import blocks, shared, shm
from rl.runtime.wire import (
    KEY,
    PUT_CACHE,
    SHM_THRESHOLD,
    Failure,
    Init,
    Result,
    decode,
    encode,
    failure,
)

__all__ = [
    "ChildConfig",
    "ForkServerActorProcess",
    "Outbox",
    "SpawnActorProcess",
    "actor_main",
    "actor_process_class",
    "init_process",
    "serve",
]


# ----------------------------------------------------------------------------- launching


class _SpawnWithoutMain(types.ModuleType):
    """``multiprocessing.spawn`` as the launchers see it, minus the driver's main module."""

    def __getattr__(self, name: str) -> Any:
        return getattr(spawn, name)

    @staticmethod
    def get_preparation_data(name: str) -> dict[str, Any]:
        data = spawn.get_preparation_data(name)
        data.pop("init_main_from_name", None)
        data.pop("init_main_from_path", None)
        return data


_SPAWN_WITHOUT_MAIN = _SpawnWithoutMain("multiprocessing.spawn")


def _popen_without_main(popen: type) -> type:
    """A subclass of a stdlib ``Popen`` whose children skip the main-module import."""
    launch = popen._launch
    if "spawn" not in launch.__code__.co_names:
        # A Python whose launcher no longer reads multiprocessing.spawn: keep its
        # behaviour (drivers then need the __main__ guard, as with plain multiprocessing).
        return popen
    scope = dict(vars(sys.modules[popen.__module__]), spawn=_SPAWN_WITHOUT_MAIN)
    rebound = types.FunctionType(launch.__code__, scope, launch.__name__,
                                 launch.__defaults__, launch.__closure__)
    return type(popen.__name__, (popen,), {"_launch": rebound, "__module__": __name__})


_ForkServerPopen = _popen_without_main(popen_forkserver.Popen)
_SpawnPopen = _popen_without_main(popen_spawn_posix.Popen)


class ForkServerActorProcess(ForkServerProcess):
    """A forkserver process whose child does not import the driver's ``__main__``."""

    @staticmethod
    def _Popen(process_obj):
        return _ForkServerPopen(process_obj)


class SpawnActorProcess(SpawnProcess):
    """A spawned process whose child does not import the driver's ``__main__``."""

    @staticmethod
    def _Popen(process_obj):
        return _SpawnPopen(process_obj)


def actor_process_class(start_method: str) -> type[BaseProcess]:
    """The process class for ``start_method`` (``forkserver`` or ``spawn``)."""
    return {"forkserver": ForkServerActorProcess, "spawn": SpawnActorProcess}[start_method]


# --------------------------------------------------------------------------- the process


@dataclass(slots=True)
class ChildConfig:
    """What an actor process needs to know before its first frame."""

    name: str
    driver_pid: int
    prefix: str
    num_gpus: float


def actor_main(conn, cfg: ChildConfig) -> None:
    """Entry point of an actor process: init, then the loop."""
    driver = init_process(cfg)
    shared.use_sharer(shared.shm_sharer(cfg.prefix))
    blocks.use_blocks(cfg.prefix)
    stopped = False
    try:
        stopped = serve(conn, cfg.prefix)
    finally:
        # EOF without a stop frame means the driver is dying: its sockets close a moment
        # before its pidfd turns readable, so wait for that moment rather than race it.
        if select.select([driver], [], [], 0 if stopped else 2.0)[0]:
            shm.sweep(shm.driver_prefix(cfg.driver_pid))


def init_process(cfg: ChildConfig) -> int:
    """Name the process, leave Ctrl-C to the driver, one torch thread, watch the driver.

    Returns a pidfd that becomes readable when the driver exits.
    """
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    if cfg.num_gpus == 0:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    with contextlib.suppress(OSError, AttributeError):
        # PR_SET_NAME (15) sets /proc/PID/comm (15 bytes), what ps and top show.
        ctypes.CDLL(None, use_errno=True).prctl(15, f"rl:{cfg.name}".encode()[:15], 0, 0, 0)
    mp.current_process().name = cfg.name
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    try:
        driver = os.pidfd_open(cfg.driver_pid)
    except ProcessLookupError:
        shm.sweep(shm.driver_prefix(cfg.driver_pid))
        os._exit(1)
    threading.Thread(
        target=_watch_driver, args=(driver, cfg.driver_pid), name="rl-watch-driver", daemon=True
    ).start()
    return driver


def _watch_driver(pidfd: int, driver_pid: int) -> None:
    # Blocks without a timeout: the pidfd turns readable exactly when the driver exits,
    # however it exits (SIGKILL included), while the main thread may be busy in a method.
    select.select([pidfd], [], [])
    shm.sweep(shm.driver_prefix(driver_pid))
    os._exit(1)


# ------------------------------------------------------------------------------ the loop


class Outbox:
    """The actor's sending side. It never blocks, so the actor always keeps reading.

    If the driver issues many calls without reading results, both socket buffers could
    fill, the actor blocked writing a result and the driver blocked writing a call. So
    replies are sent with ``MSG_DONTWAIT`` and whatever does not fit waits here until the
    socket is writable again; the driver's sends then always make progress.
    """

    # multiprocessing.Connection's framing (a 4-byte big-endian length), so the driver
    # reads these with recv_bytes. Frames are at most SHM_THRESHOLD bytes, far below the
    # 2 GiB where Connection switches to a longer header.
    _HEADER = struct.Struct("!i")

    def __init__(self, conn):
        self.fd = conn.fileno()
        self._sock = socket.socket(fileno=os.dup(self.fd))
        self._queue: deque[memoryview] = deque()
        self.partial = False
        """The first queued frame is half sent: the driver may be blocked reading it."""

    def __bool__(self) -> bool:
        return bool(self._queue)

    def put(self, frame: bytes) -> None:
        self._queue.append(memoryview(self._HEADER.pack(len(frame)) + frame))
        if len(self._queue) == 1:
            self.flush()

    def flush(self, *, block: bool = False) -> None:
        flags = 0 if block else socket.MSG_DONTWAIT
        while self._queue:
            head = self._queue[0]
            try:
                sent = self._sock.send(head, flags)
            except BlockingIOError:
                return
            if sent < len(head):
                self._queue[0] = head[sent:]
                self.partial = True
                continue
            self._queue.popleft()
            self.partial = False


def serve(conn, prefix: str) -> bool:
    """The actor loop: one frame in, one frame out, until ``None`` or EOF.

    Returns:
        True if told to stop, False at EOF (the driver is gone).
    """
    outbox = Outbox(conn)
    inbox: deque[bytes] = deque()
    instance: Any = None
    broken: Failure | None = None
    while True:
        try:
            # Never start a method while a reply is half sent (the driver would wait for
            # its tail that long), and keep reading meanwhile so the driver never blocks.
            while outbox.partial or (outbox and not inbox):
                readable, writable, _ = select.select([outbox.fd], [outbox.fd], [])
                if writable:
                    outbox.flush()
                if readable:
                    inbox.append(conn.recv_bytes())
            frame = inbox.popleft() if inbox else conn.recv_bytes()
        except (EOFError, OSError):
            return False
        key = KEY.unpack_from(frame)[0]
        try:
            msg = decode(frame)
            if msg is None:
                with contextlib.suppress(OSError):
                    outbox.flush(block=True)  # answers to calls queued before the stop
                return True
            if type(msg) is Init:
                try:
                    instance = msg.cls(*msg.args, **msg.kwargs)
                except Exception as exc:
                    broken = failure(exc, f"constructing {msg.cls.__name__} failed: ")
                continue
            for put_key in msg.free:
                PUT_CACHE.pop(put_key, None)
            if broken is not None:
                reply = broken
            else:
                reply = Result(getattr(instance, msg.method)(*msg.args, **msg.kwargs))
        except Exception as exc:
            if key == 0:  # the Init frame
                broken = failure(exc, "unpickling the actor's class or arguments failed: ")
                continue
            reply = failure(exc)
        try:
            out, _ = encode(key, reply, prefix, SHM_THRESHOLD)
        except Exception as exc:
            out, _ = encode(key, failure(exc, "the result could not be pickled: "), prefix,
                            SHM_THRESHOLD)
        try:
            outbox.put(out)
        except OSError:
            return False  # the driver is gone
