"""Ctrl-C and SIGTERM during training: abandon the iteration only where that is safe.

A signal that raises wherever the main thread happens to be can stop the learner half
way through an optimizer step (some parameters updated, others not) or leave the
driver's counters ahead of what the learner trained on; a checkpoint written then would
be torn. So while ``fit()`` runs, ``INTERRUPTS`` owns SIGINT and SIGTERM:

* while the driver waits for workers (``abandonable()``, around every wait in
  ``WorkerSet``), the signal raises at once and the iteration is abandoned: nothing of
  it has reached the learner or the counters yet;
* anywhere else (a learner update, bookkeeping, a periodic save) it is recorded and
  raised at the next safe point: the next wait for workers, or the end of the
  iteration (``check()``), so the checkpoint holds whole updates only;
* a second signal before the first took effect raises at once (``forced``): the user
  insists, and no checkpoint is written.

Outside ``fit()`` (a notebook calling ``train()``) nothing is installed, these hooks do
nothing, and Ctrl-C behaves as Python's default.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["INTERRUPTS", "Interrupts", "Terminated"]


class Terminated(Exception):
    """SIGTERM arrived during training (the CLI exits 143)."""


class Interrupts:
    """Deferred SIGINT/SIGTERM; see the module docstring.

    Attributes:
        forced: the last signal was a second one and raised mid-update.
    """

    def __init__(self) -> None:
        self.pending: BaseException | None = None
        self.forced = False
        self._abandonable = 0

    def _handler(self, signum: int, frame) -> None:
        exc = KeyboardInterrupt() if signum == signal.SIGINT else Terminated()
        if self._abandonable:
            self.pending = None
            raise exc
        if self.pending is not None:
            self.pending, self.forced = None, True
            raise exc
        self.pending = exc

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Own SIGINT and SIGTERM for the duration (main thread only; else a no-op)."""
        try:
            previous = {s: signal.signal(s, self._handler) for s in (signal.SIGINT,
                                                                     signal.SIGTERM)}
        except ValueError:  # not the main thread: leave the signals alone
            yield
            return
        self.pending, self.forced = None, False
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextmanager
    def abandonable(self) -> Iterator[None]:
        """A stretch (waiting for workers) where a signal may raise at once."""
        self.check()
        self._abandonable += 1
        try:
            yield
        finally:
            self._abandonable -= 1

    def check(self) -> None:
        """Raise a signal that arrived since the last safe point."""
        if self.pending is not None:
            exc, self.pending = self.pending, None
            raise exc


INTERRUPTS = Interrupts()
"""The process's one instance (signal handlers are per process)."""
