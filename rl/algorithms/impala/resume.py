"""What an IMPALA checkpoint holds beyond the base algorithm's, and how it is packed.

IMPALA has experience in flight when a checkpoint is taken: fragments the workers
already sampled (their saved env state is past them), the partial train batch the
driver is filling, and batches queued for the learner. A checkpoint keeps all of
them, plus the weights on the board (which may be older than the learner's when
``broadcast_interval > 1``) with its version and the version -> learner-update map,
so that a resumed run trains on exactly what the original would have. On the inline
backend that makes resume exact. Elsewhere the learner thread is paused while the
checkpoint is written (every batch is in the saved queue or in the saved weights), the
thread's timing after the resume differs anyway, and only a fragment whose worker
failed or timed out during the save is missing (logged).

Everything is stored as JSON (scalars, lists, structure) plus flat arrays under
``/``-separated keys, loaded without pickle.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rl.algorithms.impala.queue import QueuedBatch

__all__ = ["pack_state", "unpack_state"]


def _pack_value(value: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    """JSON description of ``value``; its arrays go into ``arrays`` under ``key``."""
    if isinstance(value, np.ndarray):
        arrays[key] = value
        return {"array": True}
    if isinstance(value, dict):
        return {"dict": {k: _pack_value(v, f"{key}/{k}", arrays) for k, v in value.items()}}
    if isinstance(value, tuple) and any(isinstance(v, np.ndarray) for v in value):
        return {"tuple": [_pack_value(v, f"{key}/{i}", arrays) for i, v in enumerate(value)]}
    if isinstance(value, np.generic):
        return {"json": value.item()}
    return {"json": value}


def _unpack_value(spec: dict[str, Any], key: str, arrays: dict[str, np.ndarray]) -> Any:
    if "array" in spec:
        return arrays[key]
    if "dict" in spec:
        return {k: _unpack_value(v, f"{key}/{k}", arrays) for k, v in spec["dict"].items()}
    if "tuple" in spec:
        return tuple(_unpack_value(v, f"{key}/{i}", arrays) for i, v in enumerate(spec["tuple"]))
    return spec["json"]


def pack_state(*, board: np.ndarray, board_version: int, updates_at: dict[str, int],
               pending: list[dict[str, np.ndarray]], pending_versions: list[int],
               queued: list[QueuedBatch],
               in_flight: list[tuple[int, dict[str, Any]]] | None,
               ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The driver-side IMPALA state as ``(json, arrays)``."""
    arrays: dict[str, np.ndarray] = {"board": np.asarray(board)}
    state: dict[str, Any] = {
        "board_version": int(board_version),
        "updates_at": dict(updates_at),
        "pending": _pack_value(_list_to_dict(pending), "pending", arrays),
        "pending_versions": [int(v) for v in pending_versions],
        "queued": [{"fragments": _pack_value(_list_to_dict(b.fragments), f"queued/{j}", arrays),
                    "env_steps": int(b.env_steps),
                    "versions": [int(v) for v in b.behaviour_versions]}
                   for j, b in enumerate(queued)],
        "in_flight": None if in_flight is None else [
            {"worker": int(index), "result": _pack_value(result, f"in_flight/{j}", arrays)}
            for j, (index, result) in enumerate(in_flight)],
    }
    return state, arrays


def unpack_state(state: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """``pack_state``'s keyword arguments back from its output."""
    in_flight = state.get("in_flight")
    return {
        "board": arrays["board"],
        "board_version": int(state["board_version"]),
        "updates_at": state["updates_at"],
        "pending": _dict_to_list(_unpack_value(state["pending"], "pending", arrays)),
        "pending_versions": list(state["pending_versions"]),
        "queued": [QueuedBatch(_dict_to_list(_unpack_value(q["fragments"], f"queued/{j}", arrays)),
                               q["env_steps"], list(q["versions"]))
                   for j, q in enumerate(state["queued"])],
        "in_flight": None if in_flight is None else [
            (int(item["worker"]), _unpack_value(item["result"], f"in_flight/{j}", arrays))
            for j, item in enumerate(in_flight)],
    }


def _list_to_dict(items: list[Any]) -> dict[str, Any]:
    return {str(i): item for i, item in enumerate(items)}


def _dict_to_list(items: dict[str, Any]) -> list[Any]:
    return [items[str(i)] for i in range(len(items))]
