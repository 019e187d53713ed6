"""What code inside an actor may ask of the backend it runs on, without naming it.

``reachable_host()``: the address at which other actors, possibly on other nodes, reach
this process (for example learner rank 0 hosting the ``torch.distributed`` rendezvous).
The process and inline backends run on one machine: ``127.0.0.1``. The Ray actor box
installs its node's IP (``use_host``) when the actor starts.
"""

from __future__ import annotations

__all__ = ["reachable_host", "use_host"]

_host = "127.0.0.1"


def use_host(host: str) -> None:
    """Install this process's reachable address (backends call it at actor start)."""
    global _host
    _host = host


def reachable_host() -> str:
    return _host
