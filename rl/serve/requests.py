"""``rl serve`` request validation: JSON observations -> the graph's input batch.

``ObservationCodec`` is built from an exported file's sidecar (``rl.serve.export``):
the env's observation space as JSON, the prepared input's dtype and, for Dict
observations with an ``action_mask`` key, the mask's columns. ``decode(obs)`` takes the
``obs`` field of one request (one observation, or a list of them) and returns the
prepared batch ``[rows, *shape]`` exactly as ``rl.envs.flatten_observations`` builds it
(``gymnasium.spaces.flatten``: Box ravelled, Discrete/MultiDiscrete one-hot, Dict keys
in the space's order), or raises ``RequestError`` saying what was expected: a wrong
shape, a non-numeric value, NaN/inf, a Discrete value outside its range, an action mask
that allows nothing. Only numpy is used: a serving process imports neither torch nor
gymnasium. Every request is checked on its own before it joins a batch, so a bad one
never reaches (or spoils) the others.

``StateCodec`` does the same for a recurrent export's ``state`` and ``prev_reward``
fields (the sidecar's ``state``), and turns the graph's ``state_out`` rows back into the
response's ``state``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ObservationCodec", "RequestError", "StateCodec"]


class RequestError(Exception):
    """A request the server answers with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _invalid(message: str) -> RequestError:
    return RequestError(422, message)


def _describe(space: dict[str, Any]) -> str:
    kind = space["type"]
    if kind == "Dict":
        return "an object with keys " + ", ".join(repr(k) for k in space["spaces"])
    if kind == "Tuple":
        return f"a list of {len(space['spaces'])} entries (one per sub-space)"
    if kind == "Discrete":
        return f"an integer in [{space['start']}, {space['start'] + space['n'] - 1}]"
    return f"numbers of shape {tuple(space['shape'])}"


def _numbers(value: Any, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except ValueError:  # ragged nesting (numpy 2 refuses it)
        raise _invalid(f"{where}: ragged lists; expected a rectangular array of numbers") \
            from None
    if arr.dtype.kind not in "biuf":
        got = {"U": "strings", "S": "strings", "O": "null, objects or mixed values"}.get(
            arr.dtype.kind, f"{arr.dtype} values")
        raise _invalid(f"{where}: expected numbers, got {got}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise _invalid(f"{where}: NaN or infinite values; expected finite numbers")
    return arr


def _integers(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.dtype.kind == "f" and not (arr == np.round(arr)).all():
        raise _invalid(f"{where}: expected integers, got {arr.ravel()[:4].tolist()}")
    return arr.astype(np.int64)


class _Leaf:
    """One Box/Discrete/MultiDiscrete/MultiBinary (sub-)space."""

    def __init__(self, space: dict[str, Any]):
        self.space = space
        self.kind = space["type"]
        self.shape = tuple(space["shape"])
        if self.kind not in ("Box", "Discrete", "MultiDiscrete", "MultiBinary"):
            raise ValueError(f"observation space type {self.kind!r} cannot be served; "
                             "supported: Box, Discrete, MultiDiscrete, MultiBinary, Dict, Tuple")

    def check(self, value: Any, where: str) -> np.ndarray:
        """One observation of this space as an array (not flattened)."""
        arr = _numbers(value, where)
        if arr.shape != self.shape:
            raise _invalid(f"{where}: shape {arr.shape}; expected {_describe(self.space)}")
        if self.kind == "Discrete":
            arr = _integers(arr, where)
            lo, n = self.space["start"], self.space["n"]
            if not lo <= int(arr) < lo + n:
                raise _invalid(f"{where}: {int(arr)} is out of range; expected "
                               f"{_describe(self.space)}")
        elif self.kind == "MultiDiscrete":
            arr = _integers(arr, where)
            lo = np.asarray(self.space["start"]).reshape(self.shape)
            hi = lo + np.asarray(self.space["nvec"]).reshape(self.shape)
            if ((arr < lo) | (arr >= hi)).any():
                raise _invalid(f"{where}: values out of range; expected start <= x < start + "
                               f"nvec (start {lo.tolist()}, nvec {self.space['nvec']})")
        elif self.kind == "MultiBinary":
            arr = _integers(arr, where)
            if ((arr != 0) & (arr != 1)).any():
                raise _invalid(f"{where}: expected 0s and 1s")
        return arr

    def flatten(self, arr: np.ndarray) -> np.ndarray:
        if self.kind == "Discrete":
            out = np.zeros(self.space["n"], np.float64)
            out[int(arr) - self.space["start"]] = 1
            return out
        if self.kind == "MultiDiscrete":
            nvec = np.ravel(self.space["nvec"])
            offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]])
            out = np.zeros(int(nvec.sum()), np.float64)
            out[offsets + (arr - np.asarray(self.space["start"]).reshape(self.shape)).ravel()] = 1
            return out
        return np.ravel(arr)


def _node(space: dict[str, Any]):
    if space["type"] == "Dict":
        return ("dict", {k: _node(s) for k, s in space["spaces"].items()}, space)
    if space["type"] == "Tuple":
        return ("tuple", [_node(s) for s in space["spaces"]], space)
    return ("leaf", _Leaf(space), space)


def _flatten(node, value: Any, where: str) -> np.ndarray:
    kind, children, space = node
    if kind == "leaf":
        return children.flatten(children.check(value, where))
    if kind == "dict":
        if not isinstance(value, dict):
            raise _invalid(f"{where}: expected {_describe(space)}")
        missing = [k for k in children if k not in value]
        extra = [k for k in value if k not in children]
        if missing or extra:
            raise _invalid(f"{where}: " + "; ".join(
                filter(None, [missing and f"missing keys {missing}",
                              extra and f"unknown keys {extra}"]))
                + f"; expected {_describe(space)}")
        return np.concatenate([_flatten(c, value[k], f"{where}[{k!r}]")
                               for k, c in children.items()])
    if not isinstance(value, list) or len(value) != len(children):
        raise _invalid(f"{where}: expected {_describe(space)}")
    return np.concatenate([_flatten(c, v, f"{where}[{i}]")
                           for i, (c, v) in enumerate(zip(children, value))])


class ObservationCodec:
    """The ``obs`` of a request -> the prepared input batch; see the module docstring.

    Args:
        sidecar: the exported file's JSON sidecar, as a dict.
    """

    def __init__(self, sidecar: dict[str, Any]):
        self.space = sidecar["observation_space"]
        self.input = sidecar["inputs"][0]
        self.dtype = np.dtype(self.input["dtype"])
        self.root = _node(self.space)
        layout = sidecar.get("observation_layout") or {}
        self.mask = layout.get("action_mask")
        # Box observations of rank 1 or 3 reach the model as they are (needs_flatten).
        self.raw = self.space["type"] == "Box" and len(self.space["shape"]) in (1, 3)

    def decode(self, obs: Any) -> tuple[np.ndarray, bool]:
        """``(batch, single)``: the prepared rows and whether ``obs`` was one observation."""
        single, items = self._split(obs)
        if self.raw:  # _split checked the numbers and the shape: the array is the batch
            batch = items
        else:
            batch = np.stack([_flatten(self.root, x, f"obs[{i}]" if not single else "obs")
                              for i, x in enumerate(items)])
        if self.dtype.kind in "iu":
            info = np.iinfo(self.dtype)
            if (batch != np.round(batch)).any() or batch.min() < info.min \
                    or batch.max() > info.max:
                raise _invalid(f"obs: expected integers in [{info.min}, {info.max}] "
                               f"({self.dtype} input)")
        if self.mask is not None:
            allowed = batch[:, self.mask[0]:self.mask[1]] != 0
            dead = np.flatnonzero(~allowed.any(axis=1))
            if dead.size:
                where = "obs" if single else f"obs[{int(dead[0])}]"
                raise _invalid(f"{where}['action_mask'] allows no action; at least one entry "
                               "must be non-zero")
        return np.ascontiguousarray(batch, self.dtype), single

    def _split(self, obs: Any) -> tuple[bool, Any]:
        """``(single, items)``: a list of single observations (a checked array ``[n,
        *shape]`` for Box observations that are not flattened)."""
        kind = self.space["type"]
        if kind == "Dict":
            if isinstance(obs, dict):
                return True, [obs]
            if isinstance(obs, list) and obs:
                return False, obs
        elif kind == "Tuple":
            if isinstance(obs, list) and obs:
                n = len(self.space["spaces"])
                is_batch = all(isinstance(x, list) and len(x) == n for x in obs) and \
                    not self._fits_one(obs)
                return (False, obs) if is_batch else (True, [obs])
        else:
            shape = tuple(self.space["shape"])
            arr = _numbers(obs, "obs")
            if arr.shape == shape:
                return True, arr[None] if self.raw else [obs]
            if arr.ndim == len(shape) + 1 and arr.shape[1:] == shape and len(arr):
                return False, arr if self.raw else list(arr)
            raise _invalid(f"obs: shape {arr.shape}; expected one observation of shape "
                           f"{shape} or a non-empty list of them")
        raise _invalid(f"obs: expected one observation ({_describe(self.space)}) or a "
                       "non-empty list of them")

    def _fits_one(self, obs: list) -> bool:
        try:
            _flatten(self.root, obs, "obs")
        except RequestError:
            return False
        return True


class StateCodec:
    """The ``state`` (and ``prev_reward``) of a request to a recurrent export -> the
    graph's state inputs, and its ``state_out`` outputs back to JSON.

    A request's ``state`` is a list with one entry per state tensor of the sidecar's
    ``state.tensors``, in order: of the tensor's shape for one observation, ``[n,
    *shape]`` for a list of ``n``; missing (or null), every row starts from the
    sidecar's initial state. ``prev_reward`` (only for a policy exported with
    ``lstm_use_prev_reward``, and required with ``state``): a number for one
    observation, a list of ``n``; without ``state`` it is 0.

    Args:
        sidecar: the exported file's JSON sidecar, with its ``state``.
    """

    def __init__(self, sidecar: dict[str, Any]):
        spec = sidecar["state"]
        self.tensors = spec["tensors"]
        self.shapes = [tuple(t["shape"]) for t in self.tensors]
        self.dtypes = [np.dtype(t["dtype"]) for t in self.tensors]
        self.initial = [np.asarray(t["initial"], d) for t, d in zip(self.tensors, self.dtypes)]
        self.prev_reward = spec.get("prev_rewards") is not None

    def expected(self, single: bool) -> str:
        shapes = ", ".join(str(list(s) if single else ["n", *s]) for s in self.shapes)
        return f"a list of {len(self.shapes)} arrays of shapes {shapes}"

    def decode(self, state: Any, prev_reward: Any, rows: int, single: bool
               ) -> list[np.ndarray]:
        """The state inputs ``[rows, *shape]`` (then ``prev_rewards [rows]``)."""
        what = "one observation" if single else f"{rows} observations"
        if state is None:
            if prev_reward is not None:
                raise _invalid("prev_reward without state: an episode's first step (no "
                               "state) has no previous reward; send the state the last "
                               "response returned with it")
            out = [np.repeat(s[None], rows, axis=0) for s in self.initial]
            return out + ([np.zeros(rows, np.float32)] if self.prev_reward else [])
        if not isinstance(state, list) or len(state) != len(self.shapes):
            raise _invalid(f"state: expected {self.expected(single)} (for {what}: the "
                           "state the last response returned)")
        out = []
        for i, (value, shape, dtype) in enumerate(zip(state, self.shapes, self.dtypes)):
            arr = _numbers(value, f"state[{i}]")
            want = shape if single else (rows, *shape)
            if arr.shape != want:
                raise _invalid(f"state[{i}]: shape {arr.shape}; expected {list(want)} (for "
                               f"{what}); the state is {self.expected(single)}")
            arr = np.ascontiguousarray((arr[None] if single else arr).astype(dtype))
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise _invalid(f"state[{i}]: values beyond the range of {dtype}; expected "
                               "finite numbers")
            out.append(arr)
        if not self.prev_reward:
            if prev_reward is not None:
                raise _invalid("prev_reward: this policy does not read the previous reward "
                               "(exported without lstm_use_prev_reward)")
            return out
        if prev_reward is None:
            raise _invalid("missing prev_reward: this policy reads the reward of the "
                           "previous action; send it with the state (a number for one "
                           "observation, a list of one per observation)")
        reward = _numbers(prev_reward, "prev_reward")
        if reward.shape != (() if single else (rows,)):
            raise _invalid(f"prev_reward: shape {reward.shape}; expected "
                           + ("a number" if single else f"a list of {rows} numbers"))
        return out + [reward.astype(np.float32).reshape(rows)]

    def encode(self, states: list[np.ndarray], single: bool) -> list:
        """``state_out`` rows as the response's ``state`` (the next request's)."""
        return [s[0].tolist() if single else s.tolist() for s in states]
