"""Reusable fragment blocks: a process-backend worker writes its fragments' columns
straight into shared memory it allocated once, and ships only a handle.

A fragment's columns are written step by step while the worker samples; on the plain
path they are fresh arrays that the wire then copies into fresh ``/dev/shm`` segments
(``rl.runtime.wire``), and the driver copies them again into its train batch. With
blocks, each worker owns a small ring (``BlockRing``, at most ``RING_SIZE``) of
fragment-sized segments, allocated the first time they are needed and reused after;
the worker writes a fragment's columns into a free block, and the result carries a
``BlockHandle`` (segment name, generation, column layout): a few hundred bytes. The
driver maps each block once per process (the mapping is cached by name) and reads the
columns as read-only views, so the only copy left on the way to the learner is the
train batch's own concatenation.

**Hand-back protocol.** A block's 64-byte header holds its generation (uint64) and its
state (``FREE`` or ``HELD``), and changes only under an exclusive ``flock`` of the
segment (the kernel's lock operations are full memory barriers, as for the weights
board in ``rl.runtime.shm``):

1. the worker takes a block only if it is ``FREE``: it bumps the generation, marks it
   ``HELD`` and writes the fragment's columns;
2. the handle it returns names that generation; ``resolve()`` gives the columns only
   while the block still holds that generation (a stale handle raises);
3. whoever read the columns last calls ``release()`` (a ``Shared`` handle: the drop
   paths of ``rl.rollout.worker_set`` and ``shared.release_all`` release it too); the
   block turns ``FREE`` only if it still holds the handle's generation, so a second
   release, or one of an older handle, changes nothing.

A worker therefore never overwrites a block that someone may still read: with no free
block it samples into fresh arrays, exactly the plain path. A handle never released
only costs its block.

**Names and cleanup.** Blocks are named as the worker's own segments
(``rl_<driver pid>_<session>_<worker pid>_<n>``, ``rl.runtime.shm``): the driver sweeps
them when the worker dies (a SIGKILL included) and the session's at shutdown. Views the
driver already mapped stay valid after the unlink; releasing a handle of an unlinked
block drops the driver's mapping (the memory goes with the last view).

Only the process backend installs a ring (``use_blocks``, in its actor loop); inline
and Ray workers keep the plain path, and so do fragments under ``SHM_THRESHOLD`` bytes
(they travel inside the result's pickle, which is cheaper than a mapping).
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
from dataclasses import dataclass

import numpy as np

from rl.runtime import shm
from rl.runtime.shared import Shared

__all__ = ["RING_SIZE", "BlockHandle", "BlockRing", "Layout", "block_ring", "layout_of",
           "use_blocks"]

RING_SIZE = 3
"""Blocks per worker: one being written, one the driver reads, one spare."""

FREE, HELD = 0, 1
_HEADER = 64  # generation (uint64), state (uint64), padding to keep columns aligned
_ALIGN = 64

Layout = tuple[tuple[str, str, tuple[int, ...], int], ...]
"""A block's columns: ``(name, dtype string, shape, byte offset)`` each."""


def layout_of(columns: dict[str, np.ndarray]) -> tuple[Layout, int]:
    """The layout of a block that holds ``columns``, and the block's size in bytes."""
    out, offset = [], _HEADER
    for name, array in columns.items():
        out.append((name, array.dtype.str, tuple(array.shape), offset))
        offset += -(-array.nbytes // _ALIGN) * _ALIGN
    return tuple(out), offset


def _views(buf: mmap.mmap, layout: Layout, *, writable: bool) -> dict[str, np.ndarray]:
    views = {}
    for name, dtype, shape, offset in layout:
        view = np.ndarray(shape, np.dtype(dtype), buffer=buf, offset=offset)
        view.flags.writeable = writable
        views[name] = view
    return views


class _Mapped:
    """One block mapped in one process: its fd (for the lock) and its mapping."""

    __slots__ = ("fd", "mm", "header")

    def __init__(self, fd: int, mm: mmap.mmap):
        self.fd, self.mm = fd, mm
        self.header = np.ndarray((2,), np.uint64, buffer=mm)

    @contextlib.contextmanager
    def locked(self, op: int = fcntl.LOCK_EX):
        fcntl.flock(self.fd, op)
        try:
            yield self.header
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.fd)  # the mapping goes with the last view of it


_MAPPED: dict[str, _Mapped] = {}
"""Reader side: block name -> its mapping in this process, made once."""


def _mapped(name: str, nbytes: int) -> _Mapped:
    block = _MAPPED.get(name)
    if block is None:
        try:
            fd = os.open(f"{shm.SHM_DIR}/{name}", os.O_RDWR)
        except FileNotFoundError:
            raise RuntimeError(
                f"fragment block {name} no longer exists: its worker died (or the runtime "
                "shut down) before this handle was first resolved") from None
        block = _MAPPED[name] = _Mapped(fd, mmap.mmap(fd, nbytes))
    return block


@dataclass(slots=True, frozen=True)
class BlockHandle(Shared):
    """A fragment's columns in generation ``generation`` of the block ``name``."""

    name: str
    generation: int
    nbytes: int
    layout: Layout

    def resolve(self) -> dict[str, np.ndarray]:
        """The columns, as read-only views of the block (mapped once per process)."""
        block = _mapped(self.name, self.nbytes)
        with block.locked(fcntl.LOCK_SH) as header:
            generation, state = int(header[0]), int(header[1])
        if generation != self.generation or state != HELD:
            raise RuntimeError(
                f"fragment block {self.name} was handed back (it holds generation "
                f"{generation}, this handle {self.generation}): resolve a handle before "
                "releasing it")
        return _views(block.mm, self.layout, writable=False)

    def release(self) -> None:
        """Hand the block back to its worker, if it still holds this generation."""
        block = _MAPPED.get(self.name)
        if block is None:
            with contextlib.suppress(RuntimeError):
                block = _mapped(self.name, self.nbytes)
        if block is None:
            return  # unlinked before anyone here mapped it: nothing left to hand back
        with block.locked() as header:
            if int(header[0]) == self.generation and int(header[1]) == HELD:
                header[1] = FREE
        if os.fstat(block.fd).st_nlink == 0:  # its worker is gone: forget the mapping
            _MAPPED.pop(self.name, None)
            block.close()

    def __reduce__(self):
        return BlockHandle, (self.name, self.generation, self.nbytes, self.layout)


class BlockRing:
    """A worker's blocks, all of one layout (its fragments' columns).

    Args:
        prefix: the session prefix; blocks are named as this process's own segments.
        size: at most this many blocks.
    """

    def __init__(self, prefix: str, size: int = RING_SIZE):
        if size < 1:
            raise ValueError(f"a block ring needs size >= 1, got {size}")
        self.prefix, self.size = prefix, size
        self.layout: Layout | None = None
        self.nbytes = 0
        self.blocks: list[tuple[str, _Mapped]] = []
        self._next = 0

    def names(self) -> list[str]:
        """The segment names of the blocks made so far."""
        return [name for name, _ in self.blocks]

    def acquire(self, layout: Layout, nbytes: int) -> tuple[BlockHandle, dict] | None:
        """A free block of ``layout`` (``layout_of`` the fragment's columns), marked
        held: its handle and writable views of its columns. ``None`` when every block
        is held, or ``layout`` is not the ring's (a ring keeps the layout it started
        with, since a held block may still be read)."""
        if self.layout is None:
            self.layout, self.nbytes = layout, nbytes
        elif layout != self.layout:
            return None
        for _ in range(len(self.blocks)):
            name, block = self.blocks[self._next]
            self._next = (self._next + 1) % len(self.blocks)
            with block.locked() as header:
                if int(header[1]) == FREE:
                    header[0] += 1
                    header[1] = HELD
                    return self._handle(name, block, int(header[0]))
        if len(self.blocks) < self.size:
            name, block = self._create()
            self.blocks.append((name, block))
            with block.locked() as header:
                header[0], header[1] = 1, HELD
            return self._handle(name, block, 1)
        return None

    def _handle(self, name: str, block: _Mapped, generation: int):
        return (BlockHandle(name, generation, self.nbytes, self.layout),
                _views(block.mm, self.layout, writable=True))

    def _create(self) -> tuple[str, _Mapped]:
        name = shm._new_name(self.prefix)
        fd = os.open(f"{shm.SHM_DIR}/{name}", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, self.nbytes)
            return name, _Mapped(fd, mmap.mmap(fd, self.nbytes))
        except BaseException:
            os.close(fd)
            shm.unlink(name)
            raise

    def close(self) -> None:
        """Unlink every block (readers' mappings stay valid) and forget them."""
        for name, block in self.blocks:
            shm.unlink(name)
            block.close()
        self.blocks, self._next = [], 0
        self.layout = None


_ring: BlockRing | None = None


def use_blocks(prefix: str | None) -> None:
    """Give this process a block ring under the session ``prefix`` (the process
    backend's actor loop), or none (``None``: the plain path)."""
    global _ring
    if _ring is not None:
        _ring.close()
    _ring = None if prefix is None else BlockRing(prefix)


def block_ring() -> BlockRing | None:
    """This process's block ring, if its backend installed one."""
    return _ring
