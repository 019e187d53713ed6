"""The learner process: one rank of a ``torch.distributed`` group, run as a runtime actor.

``LearnerGroup`` spawns one ``LearnerActor`` per rank through the runtime, so learner
processes work on every backend (inline for a single learner, local processes, Ray)::

    driver (LearnerGroup)                       LearnerActor, rank r of N
    ─────────────────────                       ─────────────────────────
    spawn(LearnerActor, num_cpus, num_gpus) ──▶ threads = num_cpus, GPU r, seed, build learner
    call("device") on every rank           ──▶ "cpu" | "cuda:i"   (construction errors here)
    call("rendezvous") on rank 0           ──▶ tcp://<rank 0's node IP>:<free port>
    call("join", address)                  ──▶ init_process_group (gloo | nccl), wrap in DDP
    call("update", shard_r, **hyper)       ──▶ learner.update: DDP averages every gradient
    call("update_fragments", pieces_r)     ──▶ resolve shared fragments, stack, update
    call("get_weights") on rank 0          ──▶ flat float32 vector, published by the driver
    call("leave") on every rank            ──▶ destroy_process_group

A group of one needs no collectives and joins no process group, so a single learner
process (or the inline backend's learner) trains exactly as the driver's learner does.
"""

from __future__ import annotations

import datetime
import socket
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from rl.data import SampleBatch
from rl.learner.learner import Learner
from rl.runtime import context, shared

__all__ = ["COLLECTIVE_TIMEOUT_S", "DistributedModule", "LearnerActor", "free_port",
           "process_group_backend", "wrap_module"]

COLLECTIVE_TIMEOUT_S = 300.0
"""How long a rank waits in a rendezvous or collective for its peers before it raises.

Ranks run in lockstep (one collective per minibatch), so a peer that is minutes late is
stuck, not slow; a dead peer is noticed far sooner, by its closed connections."""


class DistributedModule(DistributedDataParallel):
    """DDP that reads as the module it wraps.

    Losses call only ``module(obs)`` (the model contract; through DDP, which
    all-reduces the gradients during backward); other attributes read as the inner
    module's. State
    dicts are the inner module's, so checkpoints and flat weights do not depend on the
    number of learners.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":  # not set yet (inside DDP's __init__)
                raise
            return getattr(self.module, name)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)


def wrap_module(module: torch.nn.Module, device: torch.device) -> DistributedModule:
    """``module`` (already on ``device``) in DDP over the default process group."""
    # DDP copies rank 0's parameters and buffers to every rank here, and rank 0's
    # buffers again before each forward (a no-op for rl's models, which have none).
    ids = None
    if device.type == "cuda":
        ids = [torch.cuda.current_device() if device.index is None else device.index]
    return DistributedModule(module, device_ids=ids)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago (rank 0 binds it next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def process_group_backend(devices: list[str]) -> str:
    """``nccl`` when every rank has a CUDA device of its own, else ``gloo``.

    NCCL refuses two ranks on one GPU (fractional ``num_gpus_per_learner``); gloo
    all-reduces CUDA tensors too, through the host.
    """
    if all(d.startswith("cuda") for d in devices) and len(set(devices)) == len(devices):
        return "nccl"
    return "gloo"


def _to_cpu(obj: Any) -> Any:
    """Tensors moved to the CPU, in nested dicts/lists (state to hand to the driver)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


class LearnerActor:
    """One learner rank. Construct through ``Runtime.spawn``; see the module docstring.

    Args:
        learner_factory: builds the ``Learner`` (called once, here, after seeding).
        rank, world_size: this rank and the group's size.
        seed: torch seed before the learner is built, the driver's seed, so that every
            rank (and a driver learner with the same seed) starts from the same weights.
        num_threads: torch intra-op threads (the learner's ``num_cpus``); ``None``
            leaves them (the inline backend shares the driver's process).
        use_gpu: the learner was given a GPU: make GPU ``rank mod visible GPUs`` the
            current device, which is where ``device=auto|cuda`` then puts the module.
    """

    def __init__(self, learner_factory: Callable[[], Learner], *, rank: int, world_size: int,
                 seed: int, num_threads: int | None, use_gpu: bool):
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        if use_gpu and torch.cuda.is_available():
            torch.cuda.set_device(rank % torch.cuda.device_count())
        torch.manual_seed(seed)
        self.rank = rank
        self.world_size = world_size
        self.learner = learner_factory()
        self.joined = False

    def device(self) -> str:
        """This rank's device, with its index for CUDA (``cuda`` alone means current)."""
        device = self.learner.device
        if device.type == "cuda" and device.index is None:
            return f"cuda:{torch.cuda.current_device()}"
        return str(device)

    def rendezvous(self) -> str:
        """``tcp://host:port`` for the group's rendezvous, hosted by this rank: its
        address as the other ranks reach it (another node's on a Ray cluster)."""
        host = context.reachable_host()
        return f"tcp://{host}:{free_port(host)}"

    def join(self, init_method: str, backend: str) -> None:
        """Enter the process group (blocks until every rank has called it) and wrap the
        module in DDP."""
        dist.init_process_group(backend, init_method=init_method, rank=self.rank,
                                world_size=self.world_size,
                                timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S))
        self.joined = True
        self.learner.distribute(self.world_size)

    def update(self, batch: SampleBatch, **hyper: Any) -> dict[str, Any]:
        return self.learner.update(batch, **hyper)

    def update_fragments(self, pieces: list[tuple[Any, int, int]],
                         **hyper: Any) -> dict[str, Any]:
        """One update on this rank's share of a batch of time-major worker fragments.

        Args:
            pieces: ``(fragment, start, stop)``: env columns ``start:stop`` of a
                fragment given as a ``Shared`` handle (``rl.runtime.shared``), read
                here straight from the object store, or as the fragment itself.
        """
        values = [{k: v[:, start:stop] for k, v in shared.resolve(f).items()}
                  for f, start, stop in pieces]
        return self.learner.update_fragments(values, **hyper)

    def get_weights(self) -> np.ndarray:
        return self.learner.get_weights()

    def set_weights(self, vector: np.ndarray) -> None:
        self.learner.set_weights(vector)

    def state(self) -> dict[str, Any]:
        return _to_cpu(self.learner.state())

    def load_state(self, state: dict[str, Any]) -> None:
        self.learner.load_state(state)

    def leave(self) -> None:
        """Destroy the process group (the actor is killed next). Idempotent."""
        if self.joined:
            self.joined = False
            dist.destroy_process_group()
