"""Shared-memory primitives of the process runtime: the object store's segments and the
weights board.

This module owns every file the runtime creates in ``/dev/shm``, and the lifetime rules
of both kinds of object in the object store (see ``rl.runtime.base``): *handed-over*
objects (the large arrays of a call's arguments or result) and *held* ones (``put`` and
``share`` values). Nothing here knows about actors; ``rl.runtime.process`` builds on it.

**Names.** Every segment is named ``rl_<driver pid>_<session>_<creator pid>_<n>``. The
``rl_<driver pid>_`` part is what makes cleanup certain: whoever outlives a session can
remove all of its segments by prefix (``sweep``), and a new runtime removes the segments
of sessions whose driver pid is no longer alive (``sweep_stale``).

**Handed over: the receiver unlinks.** A sender copies a large array into a fresh
segment (``export_array``) and sends only its ``SegmentArray`` descriptor (name, dtype,
shape). The receiver maps the segment and unlinks it at once (``take_array``); on Linux
the mapping stays valid after the unlink and the memory is freed when the last mapping
goes, so the received array lives exactly as long as the numpy object that views it, with
no copy. A transported segment is therefore named in ``/dev/shm`` only between
``export_array`` and ``take_array``. If the receiver never gets the message (it died, or the sender died
between create and send), the session sweep removes the orphan: the driver sweeps its
session prefix at ``shutdown()``, and every actor sweeps the driver's prefix when it sees
the driver die, so a SIGKILLed driver leaks nothing while any of its actors lives.

**Held: the holder unlinks.** A value stored with ``Runtime.put`` or ``share`` may be
read many times: readers map its segments read-only without unlinking
(``map_held_array``), and its holder unlinks them. ``put`` values belong to the driver,
which unlinks them when the ``ObjectRef`` is dropped or at shutdown. Values an actor
shares (``rl.runtime.shared``) are named under ``held_prefix`` of the session,
``rl_<driver pid>_<session>_s<creator pid>_<n>``, outside the creator's own names (which
the driver sweeps when that actor dies): they outlive the actor, and whoever holds the
handle last unlinks them; the session sweep covers them too.

Segments are written with ``os.write`` on a plain ``os.open`` file rather than
``multiprocessing.shared_memory``: its resource tracker (3.11) unlinks segments it did not
create and warns about ones the receiver already unlinked, which is exactly the ownership
hand-over we want. ``os.write`` also avoids the writer's page faults on a fresh mapping
(about 2x faster than mmap + copy for 64 MiB here).

**Weights board.** ``ShmWeightsBoard`` is one segment: a 64-byte header whose first 8
bytes are the version (uint64), then ``size`` float32 values. The writer publishes under
an exclusive ``flock`` on the segment; readers copy under a shared ``flock``. Why this is
never torn: the vector and its version change only while the exclusive lock is held, and
a reader copies both while it holds a shared lock, which excludes the writer. The kernel's
lock operations are full memory barriers on every CPU, so unlike a seqlock written from
Python (whose correctness would rest on x86's store ordering) this holds on any
architecture. Readers never spin: a reader that meets the writer blocks in the kernel for
the duration of one copy (about a millisecond for 1M floats). An unchanged version is
detected without any lock by peeking at the header; the peek is only a hint, the version
returned is the one read under the lock. Locks die with their process, so a reader killed
mid-copy cannot wedge the writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import mmap
import os
from dataclasses import dataclass

import numpy as np

from rl.runtime.base import BoardReader, WeightsBoard

__all__ = [
    "SHM_DIR",
    "SegmentArray",
    "ShmBoardReader",
    "ShmWeightsBoard",
    "driver_prefix",
    "export_array",
    "held_prefix",
    "list_segments",
    "map_held_array",
    "read_bytes",
    "sweep",
    "sweep_stale",
    "take_array",
    "unlink",
    "write_bytes",
]

SHM_DIR = "/dev/shm"
_ROOT = "rl_"
_counter = itertools.count()


def driver_prefix(driver_pid: int | None = None) -> str:
    """The prefix shared by every segment of every session of one driver process."""
    return f"{_ROOT}{driver_pid if driver_pid is not None else os.getpid()}_"


def held_prefix(session_prefix: str) -> str:
    """The prefix of the segments an actor of the session ``session_prefix`` shares:
    not the actor's own ``<session_prefix><pid>_`` names, which are swept when it dies,
    since what it shared lives on in the driver's hands."""
    return f"{session_prefix}s"


def _new_name(prefix: str) -> str:
    # The creator pid keeps names unique across the actors of one session without any
    # coordination; the counter keeps them unique within a process.
    return f"{prefix}{os.getpid()}_{next(_counter)}"


def _path(name: str) -> str:
    return f"{SHM_DIR}/{name}"


def unlink(name: str) -> None:
    """Remove a segment's name; a missing segment is not an error."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_path(name))


def list_segments(prefix: str) -> list[str]:
    """Names in ``/dev/shm`` that start with ``prefix``."""
    return [n for n in os.listdir(SHM_DIR) if n.startswith(prefix)]


def sweep(prefix: str) -> int:
    """Unlink every segment whose name starts with ``prefix``; returns how many."""
    names = list_segments(prefix)
    for name in names:
        unlink(name)
    return len(names)


def sweep_stale() -> int:
    """Unlink the segments of drivers that are no longer alive; returns how many.

    Covers the one case the actors cannot: a driver SIGKILLed while it had no live actor.
    """
    removed = 0
    for name in list_segments(_ROOT):
        pid_text = name[len(_ROOT) :].split("_", 1)[0]
        if not pid_text.isdigit():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            unlink(name)
            removed += 1
        except PermissionError:
            pass  # alive, owned by someone else
    return removed


def write_bytes(prefix: str, data: memoryview | bytes) -> str:
    """Create a new segment holding ``data``; returns its name."""
    name = _new_name(prefix)
    fd = os.open(_path(name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:])
    except BaseException:
        unlink(name)
        raise
    finally:
        os.close(fd)
    return name


def _map(name: str, nbytes: int, *, take: bool, writable: bool) -> mmap.mmap:
    fd = os.open(_path(name), os.O_RDWR if writable else os.O_RDONLY)
    try:
        access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
        return mmap.mmap(fd, nbytes, access=access)
    finally:
        os.close(fd)
        if take:
            unlink(name)


def read_bytes(name: str, nbytes: int) -> memoryview:
    """Map a segment written by ``write_bytes`` and unlink it (the receiver owns it)."""
    return memoryview(_map(name, nbytes, take=True, writable=False))


@dataclass(slots=True, frozen=True)
class SegmentArray:
    """Descriptor of an array held in a segment: all that crosses the pipe."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]


def export_array(array: np.ndarray, prefix: str) -> SegmentArray:
    """Copy ``array`` into a new segment named under ``prefix``.

    Args:
        array: any non-object dtype, any layout (non-contiguous arrays are made
            C-contiguous first), at least one byte.
        prefix: the session prefix, e.g. ``"rl_4242_0_"``.
    """
    flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    return SegmentArray(write_bytes(prefix, flat), array.dtype, array.shape)


def take_array(name: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Map a segment as a writable array without copying, and unlink it (receiver owns)."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    return np.ndarray(shape, dtype, buffer=_map(name, nbytes, take=True, writable=True))


def map_held_array(name: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Map a held segment (a put, or a shared value) read-only; its holder unlinks it."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    return np.ndarray(shape, dtype, buffer=_map(name, nbytes, take=False, writable=False))


_HEADER = 64  # bytes; the version is the first 8, the rest keeps the data 64-byte aligned


class ShmWeightsBoard(WeightsBoard):
    """A flat float32 vector plus a version in one segment; one writer, many readers.

    See the module docstring for why readers never see a torn vector.

    Args:
        size: number of float32 values.
        prefix: segment name prefix; defaults to this process's driver prefix so that
            a sweep of the driver's segments also removes the board.
    """

    def __init__(self, size: int, *, prefix: str | None = None):
        if size <= 0:
            raise ValueError(f"a weights board needs size >= 1, got {size}")
        self.size = int(size)
        self._name = _new_name(prefix if prefix is not None else driver_prefix() + "board_")
        nbytes = _HEADER + 4 * self.size
        self._fd = os.open(_path(self._name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        os.ftruncate(self._fd, nbytes)
        self._mm: mmap.mmap | None = mmap.mmap(self._fd, nbytes)
        self._version = np.ndarray((1,), np.uint64, buffer=self._mm)
        self._data = np.ndarray((self.size,), np.float32, buffer=self._mm, offset=_HEADER)

    @property
    def name(self) -> str:
        """The segment's name in ``/dev/shm``."""
        return self._name

    def __reduce__(self):
        raise TypeError("a weights board stays with its owner; pass board.reader() to actors")

    def publish(self, vector: np.ndarray, version: int | None = None) -> int:
        if self._mm is None:
            raise RuntimeError(f"weights board {self._name} is closed")
        values = np.asarray(vector).reshape(-1)
        if values.shape[0] != self.size:
            raise ValueError(
                f"publish expects {self.size} values, got {values.shape[0]} "
                f"(shape {np.shape(vector)})"
            )
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            new = self._next_version(int(self._version[0]), version)
            self._data[:] = values
            self._version[0] = new
            return new
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def reader(self) -> ShmBoardReader:
        return ShmBoardReader(self._name, self.size)

    @property
    def version(self) -> int:
        return 0 if self._mm is None else int(self._version[0])

    def close(self) -> None:
        if self._mm is None:
            return
        # numpy views hold exports of the mapping; drop them before closing it.
        del self._version, self._data
        self._mm.close()
        self._mm = None
        os.close(self._fd)
        unlink(self._name)

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()


class ShmBoardReader(BoardReader):
    """Reader of a ``ShmWeightsBoard``; pickles as (name, size) and maps lazily."""

    def __init__(self, name: str, size: int):
        self.name = name
        self.size = size
        self._fd = -1
        self._mm: mmap.mmap | None = None

    def __getstate__(self):
        return {"name": self.name, "size": self.size}

    def __setstate__(self, state):
        self.__init__(state["name"], state["size"])

    def _open(self) -> None:
        try:
            self._fd = os.open(_path(self.name), os.O_RDONLY)
        except FileNotFoundError:
            raise RuntimeError(
                f"weights board {self.name} no longer exists (closed by its owner)"
            ) from None
        self._mm = mmap.mmap(self._fd, _HEADER + 4 * self.size, access=mmap.ACCESS_READ)
        self._version = np.ndarray((1,), np.uint64, buffer=self._mm)
        self._data = np.ndarray((self.size,), np.float32, buffer=self._mm, offset=_HEADER)

    def poll(self, last_version: int) -> tuple[int, np.ndarray | None]:
        if self._mm is None:
            self._open()
        if int(self._version[0]) <= last_version:  # lock-free hint, see module docstring
            return last_version, None
        fcntl.flock(self._fd, fcntl.LOCK_SH)
        try:
            version = int(self._version[0])
            vector = self._data.copy()
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        if version <= last_version:
            return last_version, None
        return version, vector

    def close(self) -> None:
        """Unmap the board in this process (the owner still owns the segment)."""
        if self._mm is None:
            return
        del self._version, self._data
        self._mm.close()
        self._mm = None
        os.close(self._fd)

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()
